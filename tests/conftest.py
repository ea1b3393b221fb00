"""What every layer of the suite shares."""

from __future__ import annotations

import gc

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once every test module is imported, move what is alive (mostly modules: moto, botocore's
    models, Pulumi's AWS provider) out of the garbage collector's view: it stays alive anyway,
    and each full collection walked all of it again, pytest's five at the end of the session
    included (about 5% of the non-e2e layer's CPU time)."""
    gc.freeze()
