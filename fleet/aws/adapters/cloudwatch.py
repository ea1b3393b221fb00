"""CloudWatch: the fleet's metrics (one call per cycle)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Metrics:
    """Fleet metrics in one namespace, dimensioned by fleet; one PutMetricData per ``put``."""

    def __init__(self, client: Any, *, namespace: str, fleet: str) -> None:
        self.client = client
        self.namespace = namespace
        self.fleet = fleet

    def put(self, values: Mapping[str, float], *, unit: str = "Count") -> None:
        data = [
            {
                "MetricName": name,
                "Dimensions": [{"Name": "Fleet", "Value": self.fleet}],
                "Value": float(value),
                "Unit": unit,
            }
            for name, value in sorted(values.items())
        ]
        for start in range(0, len(data), 1000):
            self.client.put_metric_data(
                Namespace=self.namespace, MetricData=data[start : start + 1000]
            )
