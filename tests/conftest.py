"""What every layer of the suite shares."""

from __future__ import annotations

import gc

import pytest

# The suite allocates a lot that lives for a whole test (moto's backends, botocore's clients,
# Pulumi's resources and outputs): with the default thresholds (700, 10, 10) the collector
# ran about 8,000 times per test process and walked the whole heap often, about a quarter of
# the CPU time of the integration and Pulumi tests. Young collections every 100,000
# allocations instead of 700: the same garbage is collected, later and in fewer passes (peak
# memory per test process about 0.8 GB instead of 0.5 GB).
GC_THRESHOLDS = (100_000, 50, 10)


def pytest_configure(config: pytest.Config) -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once every test module is imported, move what is alive (mostly modules: moto, botocore's
    models, Pulumi's AWS provider) out of the garbage collector's view: it stays alive anyway,
    and each full collection walked all of it again."""
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """At the end pytest collects five times in a row so that finalizers of leftover garbage
    run (and their unraisable exceptions are reported): one full collection here does that,
    then what is still alive is frozen, so those five passes no longer walk the whole heap
    again (they cost about 2 s of CPU per test process)."""
    gc.collect()
    gc.freeze()
