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


@pytest.fixture(scope="session", autouse=True)
def botocore_speed() -> None:
    """botocore's per-process speed-ups for every test that makes sessions and clients
    (tests/fakes/botocore_client_speed.py: the same clients, made faster)."""
    from tests.fakes import botocore_client_speed

    botocore_client_speed.install()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once every test module is imported, move what is alive (mostly modules: moto, botocore's
    models, Pulumi's AWS provider) out of the garbage collector's view: it stays alive anyway,
    and each full collection walked all of it again."""
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """At the end pytest collects five times in a row so that finalizers of leftover garbage
    run and their unraisable exceptions are reported. By then a test process holds about a
    million objects of garbage in cycles (moto's worlds, Pulumi's graphs), and the first of
    those passes took 0.7-1.3 s, on the layer's critical path. What is alive is frozen
    instead, so the passes find nothing to walk: the process exits next and the system takes
    its memory back. A finalizer that raises during the session is still reported at the test
    whose garbage collection ran it (pytest looks before and after every test)."""
    gc.freeze()
