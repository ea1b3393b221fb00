"""serve keeps the jobs webhooks announced in a file: a restart loses no queued job."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from fleet.core.ledger import JobEvent, JobRecord, JobState
from fleet.core.webhook import QueuedDelivery, parse_workflow_job_event
from fleet.errors import FleetError
from fleet.local.scale_set import StateFile
from fleet.local.serve.autoscaler import Autoscaler
from fleet.local.serve.intake import Intake
from fleet.local.serve.jobs_file import JobsFile, default_path
from fleet.local.serve.reconciler import ServeOptions
from fleet.local.serve.webhook_server import WebhookServer
from tests.fakes.payloads import SECRET, signed, workflow_job
from tests.unit.local.test_serve import (
    LABELS,
    MemoryFleet,
    MemoryGitHub,
    _on_github,
    _queued,
    wall_now,
)

pytestmark = pytest.mark.unit


def _delivery(delivery_id: str, action: str, job_id: int, **fields) -> QueuedDelivery:
    payload = workflow_job(action, job_id=job_id, labels=list(LABELS), **fields)
    return QueuedDelivery(delivery_id, JobEvent.from_webhook(parse_workflow_job_event(payload)))


def _filled_intake() -> Intake:
    intake = Intake()
    intake.accept(_delivery("d-1", "queued", 1))
    intake.accept(_delivery("d-2", "queued", 2))
    intake.accept(_delivery("d-3", "in_progress", 2, runner_name="f-runner-04"))
    intake.accept(_delivery("d-4", "completed", 3, conclusion="success"))
    return intake


def test_a_snapshot_read_back_holds_the_same_jobs_and_deliveries():
    original = _filled_intake()
    copy = Intake()
    # Through JSON, as the file holds it.
    assert copy.restore(json.loads(json.dumps(original.snapshot()))) == 3
    assert copy.last_news() == original.last_news()
    assert copy.queued() == 1
    assert copy.busy_runner_names() == {"f-runner-04"}
    assert not copy.accept(_delivery("d-2", "queued", 2)), "a delivery seen before the restart"
    assert copy.accept(_delivery("d-5", "queued", 5))


def test_a_restored_snapshot_joins_what_the_intake_heard_since():
    snapshot = _filled_intake().snapshot()  # job 1 queued
    newer = Intake()
    newer.accept(_delivery("d-9", "completed", 1, conclusion="success"))
    newer.restore(snapshot)
    states = {record.job_id: record.state for record in newer.records()}
    assert states[1] is JobState.COMPLETED, "an older state in the file does not win"
    assert states[2] is JobState.IN_PROGRESS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a job intake snapshot"),
        ({"format": 2, "jobs": [], "deliveries": []}, "not a job intake snapshot of format 1"),
        ({"format": 1, "jobs": {}, "deliveries": []}, "a list of jobs"),
        ({"format": 1, "jobs": [{"record": {}}], "deliveries": []}, "job 0 .* not readable"),
        ({"format": 1, "jobs": ["x"], "deliveries": []}, "job 0 .* not readable"),
        ({"format": 1, "jobs": [], "deliveries": [1]}, "delivery ids .* strings"),
    ],
)
def test_what_is_not_a_snapshot_is_refused_and_changes_nothing(data, message):
    intake = _filled_intake()
    before = intake.snapshot()
    with pytest.raises(ValueError, match=message):
        intake.restore(data)
    assert intake.snapshot() == before


def test_a_snapshot_time_without_a_zone_is_refused():
    snapshot = _filled_intake().snapshot()
    snapshot["jobs"][0]["heard"] = "2026-11-24T10:00:00"
    with pytest.raises(ValueError, match="without a time zone"):
        Intake().restore(snapshot)


def test_the_jobs_file_is_replaced_whole_and_readable_by_root_only(tmp_path):
    jobs = JobsFile(tmp_path / "fleet-a" / "serve-jobs.json")
    assert jobs.load() is None
    jobs.save({"format": 1, "jobs": [], "deliveries": ["a"]})
    jobs.save({"format": 1, "jobs": [], "deliveries": ["a", "b"]})
    assert jobs.load() == {"format": 1, "jobs": [], "deliveries": ["a", "b"]}
    assert stat.S_IMODE(jobs.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(jobs.path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in jobs.path.parent.iterdir()) == ["serve-jobs.json"]


def test_a_jobs_file_that_cannot_be_written_leaves_the_old_one(tmp_path):
    jobs = JobsFile(tmp_path / "serve-jobs.json")
    jobs.save({"format": 1, "jobs": [], "deliveries": ["a"]})
    with pytest.raises(TypeError):
        jobs.save({"format": 1, "jobs": [object()], "deliveries": []})  # not JSON
    assert jobs.load() == {"format": 1, "jobs": [], "deliveries": ["a"]}
    assert [p.name for p in tmp_path.iterdir()] == ["serve-jobs.json"]


def test_a_garbled_jobs_file_is_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "serve-jobs.json"
    path.write_text('{"format": 1, "jobs": [')
    with pytest.raises(FleetError, match="is not JSON") as caught:
        JobsFile(path).load()
    assert "move it aside" in caught.value.hint
    path.write_text('{"format": 7}')
    with pytest.raises(FleetError, match="holds no job intake") as caught:
        Autoscaler(MemoryFleet(now=wall_now), ServeOptions(), print, jobs_file=JobsFile(path))
    assert path.read_text() == '{"format": 7}', "the file is left for the user to look at"


def test_files_that_cannot_be_read_say_which_and_what_to_do(tmp_path):
    """The jobs file and the scale-set state are read the same way (read_private)."""
    unreadable = tmp_path / "a-directory"
    unreadable.mkdir()
    with pytest.raises(FleetError, match=r"cannot read serve's job file .*a-directory") as caught:
        JobsFile(unreadable).load()
    assert "--jobs-file" in caught.value.hint
    with pytest.raises(FleetError, match="cannot read the fleet's scale-set state") as caught:
        StateFile(unreadable).load()
    assert "run as root" in caught.value.hint
    assert StateFile(tmp_path / "missing.json").load() is None


def test_down_removes_the_jobs_file_and_only_an_empty_directory(tmp_path):
    jobs = JobsFile(default_path("fleet-a", tmp_path))
    jobs.save({"format": 1, "jobs": [], "deliveries": []})
    assert jobs.remove() is True
    assert not jobs.path.parent.exists()
    assert jobs.remove() is False
    other = JobsFile(default_path("fleet-b", tmp_path))
    other.save({"format": 1, "jobs": [], "deliveries": []})
    (other.path.parent / "notes.txt").write_text("not serve's")
    assert other.remove() is True
    assert (other.path.parent / "notes.txt").exists()


def _post_queued(server: WebhookServer, job_id: int, delivery: str) -> int:
    headers, body = signed(
        workflow_job("queued", job_id=job_id, labels=list(LABELS)), delivery=delivery
    )
    url = f"http://127.0.0.1:{server.port}/"
    return requests.post(url, data=body, headers=headers, timeout=5).status_code


def _serving(autoscaler: Autoscaler) -> WebhookServer:
    server = WebhookServer(
        "127.0.0.1",
        0,
        secret=SECRET,
        labels=LABELS,
        intake=autoscaler.intake,
        report=lambda _m: None,
    )
    server.start()
    return server


def test_a_job_queued_before_a_restart_gets_a_host_after_it(tmp_path):
    """The webhook is answered 202 only once the job is in the file; a new serve reading
    the file launches a host for it without any new event from GitHub."""
    path = tmp_path / "serve-jobs.json"
    options = ServeOptions(idle=0, interval=0, once=True)
    before = Autoscaler(MemoryFleet(now=wall_now), options, print, jobs_file=JobsFile(path))
    server = _serving(before)
    try:
        assert _post_queued(server, 41, "delivery-41") == 202
        saved = json.loads(path.read_text())
        assert [job["record"]["job_id"] for job in saved["jobs"]] == [41]
    finally:
        server.stop()  # serve stops before any cycle took the job

    fleet = MemoryFleet(now=wall_now)
    after = Autoscaler(fleet, options, print, jobs_file=JobsFile(path))
    assert after.restored == 1
    assert after.run() == 0
    assert len(after.cycles[-1].launched) == 1, "a host for the job queued before the restart"
    server = _serving(after)
    try:
        assert _post_queued(server, 41, "delivery-41") == 202  # GitHub redelivering it
        assert after.intake.queued() == 1, "the redelivery is recognised as seen"
    finally:
        server.stop()


def test_a_webhook_that_cannot_be_saved_is_answered_503(tmp_path):
    path = tmp_path / "serve-jobs.json"
    autoscaler = Autoscaler(
        MemoryFleet(now=wall_now), ServeOptions(idle=0), print, jobs_file=JobsFile(path)
    )

    def disk_full(_snapshot):
        raise OSError(28, "No space left on device")

    autoscaler.intake.persist = disk_full
    server = _serving(autoscaler)
    try:
        assert _post_queued(server, 42, "delivery-42") == 503
    finally:
        server.stop()
    assert json.loads(path.read_text())["jobs"] == [], "the file kept what it had"


def test_serve_refuses_at_start_a_jobs_file_it_cannot_use(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with pytest.raises(FleetError, match=r"serve's job file .*: Not a directory") as caught:
        Autoscaler(
            MemoryFleet(now=wall_now),
            ServeOptions(),
            print,
            jobs_file=JobsFile(blocked / "serve-jobs.json"),
        )
    assert "--jobs-file" in caught.value.hint


def test_snapshot_times_keep_their_zone():
    intake = _filled_intake()
    heard = [datetime.fromisoformat(job["heard"]) for job in intake.snapshot()["jobs"]]
    assert all(
        moment.tzinfo is not None and moment.utcoffset() == UTC.utcoffset(None) for moment in heard
    )


def test_serve_refuses_at_start_a_jobs_file_it_cannot_write():
    # /proc takes no new directories, even from root.
    unwritable = JobsFile(Path("/proc/fleet-jobs-test/serve-jobs.json"))
    with pytest.raises(FleetError, match="cannot write serve's job file") as caught:
        Autoscaler(MemoryFleet(now=wall_now), ServeOptions(), print, jobs_file=unwritable)
    assert "--jobs-file" in caught.value.hint


def test_a_jobs_file_that_fails_during_look_ups_is_a_cycle_problem_not_a_crash(tmp_path):
    """The look-ups change the intake in memory; the save that ends the cycle reports the
    file's trouble, and the loop goes on."""
    github = MemoryGitHub()
    fleet = MemoryFleet(now=wall_now)
    options = ServeOptions(
        idle=0, interval=0, max_cycles=2, port=0, webhook_secret="s", stale_after=60.0
    )
    autoscaler = Autoscaler(
        fleet, options, print, jobs=github, jobs_file=JobsFile(tmp_path / "serve-jobs.json")
    )
    autoscaler.start_webhooks = lambda: None  # type: ignore[method-assign]
    long_ago = datetime.now(UTC) - timedelta(minutes=5)  # silent past --stale-after
    record = JobRecord.from_event(_queued(41)).to_dict()
    job = {"record": record, "heard": long_ago.isoformat()}
    autoscaler.intake.restore({"format": 1, "jobs": [job], "deliveries": []})
    github.jobs[41] = _on_github(41, "completed")

    def disk_full(_snapshot):
        raise OSError(28, "No space left on device")

    autoscaler.intake.persist = disk_full
    assert autoscaler.run() == 1, "the last cycle had a problem"
    assert autoscaler.cycle_count == 2
    assert github.lookups == [41] and autoscaler.intake.queued() == 0
    assert all("cannot save the jobs file" in c.errors[-1] for c in autoscaler.cycles)


def test_a_snapshot_after_changes_holds_the_changes():
    """Entries are reused between snapshots only for jobs that did not change."""
    moments = {"now": datetime(2026, 11, 24, 12, 0, tzinfo=UTC)}
    intake = Intake(clock=lambda: moments["now"])
    intake.accept(_delivery("d-1", "queued", 1))
    intake.accept(_delivery("d-2", "queued", 2))
    first = intake.snapshot()
    moments["now"] += timedelta(minutes=3)
    intake.accept(_delivery("d-3", "in_progress", 1, runner_name="f-runner-01"))
    # Looked up on GitHub with no news: only the time it was last heard of moves.
    intake.merge(_delivery("x", "queued", 2).job)
    intake.drop(2)
    intake.accept(_delivery("d-4", "queued", 3))
    second = intake.snapshot()
    states = {job["record"]["job_id"]: job["record"]["state"] for job in second["jobs"]}
    assert states == {1: "in_progress", 3: "queued"}
    assert first["jobs"][0]["record"]["state"] == "queued", "an earlier snapshot is unchanged"
    # The copy reads the same clock: on the real one the job, heard "long ago", is pruned.
    copy = Intake(clock=lambda: moments["now"])
    copy.restore(second)
    assert copy.busy_runner_names() == {"f-runner-01"}
    heard = {job["record"]["job_id"]: job["heard"] for job in second["jobs"]}
    assert heard[1] == moments["now"].isoformat()


def test_a_job_merged_without_news_is_saved_with_its_new_time():
    moments = {"now": datetime(2026, 11, 24, 12, 0, tzinfo=UTC)}
    intake = Intake(clock=lambda: moments["now"])
    intake.accept(_delivery("d-1", "queued", 1))
    intake.snapshot()
    moments["now"] += timedelta(minutes=10)
    intake.merge(_delivery("x", "queued", 1).job)
    assert intake.snapshot()["jobs"][0]["heard"] == moments["now"].isoformat()
