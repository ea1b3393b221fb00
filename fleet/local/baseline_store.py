"""The local fleet's performance baseline and benchmark history, in a directory on this
machine (``/var/lib/fleet/NAME/benchmarks`` by default; ``down`` leaves it, so a fleet
brought up again is compared with what it did before). Layout: ``fleet.core.baseline_store``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.core.baseline_store import BASELINE, HISTORY, THRESHOLDS, history_name, next_number
from fleet.core.benchmarks import Baseline, BenchmarkFormatError
from fleet.errors import FleetError
from fleet.local.serve.jobs_file import DEFAULT_DIRECTORY


def default_directory(fleet: str, directory: Path = DEFAULT_DIRECTORY) -> Path:
    return directory / fleet / "benchmarks"


class LocalBaselineStore:
    def __init__(self, directory: Path, fleet: str) -> None:
        self.directory = directory
        self.fleet = fleet
        self.location = str(directory)

    def _read_json(self, name: str) -> Any | None:
        path = self.directory / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FleetError(f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise FleetError(
                f"{path} is not JSON ({exc})",
                hint="fix it, or move it aside: a missing baseline is made again at the "
                "next validation",
            ) from exc

    def _write(self, name: str, text: str) -> Path:
        """Write ``name`` whole (a temporary file renamed into place)."""
        path = self.directory / name
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def load_baseline(self) -> Baseline | None:
        data = self._read_json(BASELINE)
        if data is None:
            return None
        try:
            return Baseline.from_dict(data)
        except BenchmarkFormatError as exc:
            raise FleetError(f"{self.directory / BASELINE}: {exc}") from exc

    def save_baseline(self, baseline: Baseline) -> None:
        self._write(BASELINE, json.dumps(baseline.to_dict(), indent=2) + "\n")

    def load_thresholds(self) -> Mapping[str, Any] | None:
        return self._read_json(THRESHOLDS)

    def record(self, runner: str, document: Mapping[str, Any], when: datetime) -> str:
        folder = self.directory / HISTORY / self.fleet
        existing = [p.name for p in folder.glob("*.json")] if folder.is_dir() else []
        name = history_name(self.fleet, next_number(existing), when, runner)
        return str(self._write(name, json.dumps(document, indent=2) + "\n"))
