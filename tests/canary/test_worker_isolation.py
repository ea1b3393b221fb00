"""Parallel xdist workers of one job each get their own containers and their own data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from canary_env import DIST_ENV
from canary_postgres import PostgresContainer, WorkerDatabase, connect

PEER_WAIT_SECONDS = 240


def test_the_suite_runs_with_work_stealing() -> None:
    """Workers steal queued tests from each other (`--dist=worksteal`), each with its own
    database: long and short tests mixed still finish together."""
    _worker_count()
    assert os.environ.get(DIST_ENV) == "worksteal", f"{DIST_ENV}={os.environ.get(DIST_ENV)}"


def _worker_count() -> int:
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    assert count >= 2, (
        "this check proves parallel workers are isolated: run the canary with `pytest -n auto`"
    )
    return count


def _all_records(run_dir: Path, count: int) -> list[WorkerDatabase]:
    """Wait until every worker of the run has recorded its database (workers start unevenly)."""
    records = run_dir / "canary-workers"
    deadline = time.monotonic() + PEER_WAIT_SECONDS
    while True:
        found = sorted(records.glob("gw*.json"))
        if len(found) >= count:
            return [WorkerDatabase(**json.loads(p.read_text())) for p in found]
        assert time.monotonic() < deadline, (
            f"only {[p.stem for p in found]} of {count} workers started a database "
            f"within {PEER_WAIT_SECONDS} s"
        )
        time.sleep(0.2)


def test_parallel_workers_get_distinct_containers(
    worker_database: tuple[WorkerDatabase, PostgresContainer], run_dir: Path
) -> None:
    """Each xdist worker started its own PostgreSQL: distinct container ids and ports."""
    own, _ = worker_database
    records = _all_records(run_dir, _worker_count())
    assert own in records
    assert len({r.worker for r in records}) == len(records)
    assert len({r.container_id for r in records}) == len(records)
    assert len({(r.host, r.port) for r in records}) == len(records)


def test_a_worker_sees_only_its_own_rows(
    worker_database: tuple[WorkerDatabase, PostgresContainer], run_dir: Path
) -> None:
    """Once every worker has written its row, this worker's database holds only its own."""
    own, container = worker_database
    _all_records(run_dir, _worker_count())  # every worker has inserted by now
    with connect(container) as conn:
        rows = conn.execute("SELECT worker FROM owner").fetchall()
    assert rows == [(own.worker,)]
