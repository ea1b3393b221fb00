"""The workflows under .github/workflows, checked for what they will do before GitHub runs them.

Users copy the example and validation workflows into their repositories, where they run on
self-hosted runners; these tests read each file (PyYAML, plus the raw text where comments
matter) and assert what a reviewer would: the jobs select the fleet's default labels, long jobs
are bounded, the DinD service is privileged and TLS-only, JUnit reports are uploaded, every
action is pinned to a commit, checkouts keep no token, and permissions are granted per job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.core import jobs
from fleet.local.fleet import DEFAULT_LABELS
from infra.config import parse_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
ACTIONLINT_CONFIG = ROOT / ".github" / "actionlint.yaml"

EXAMPLE = "example-containerized-suite.yml"
VALIDATION = "runner-validation.yml"
CI = "ci.yml"

# The labels a fleet's runners register with when none are given: the local fleet's
# (python -m fleet up) and the AWS stack's (runnerLabels unset).
LOCAL_FLEET_LABELS = DEFAULT_LABELS
AWS_FLEET_LABELS = parse_config({"githubScope": "example-org"}).runner_labels

# The self-hosted runner outside the fleet that hosts a local fleet and validates it.
ADMIN_LABEL = "fleet-admin"
# Labels actionlint knows for any self-hosted runner; every other one must be in actionlint.yaml.
ACTIONLINT_SELF_HOSTED_LABELS = {"self-hosted", "linux", "macos", "windows", "x64", "arm", "arm64"}
# GitHub-hosted images the repository's own jobs may use instead of a self-hosted runner.
GITHUB_HOSTED = {"ubuntu-24.04"}

# The first major version of each action that runs on node24 (node20 leaves GitHub's runners
# on 2026-09-23); read from each release's action.yml.
FIRST_NODE24_MAJOR = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/upload-artifact": 6,
    "aws-actions/configure-aws-credentials": 6,
}

# Jobs that may hold a write permission, and which: nothing else writes.
WRITE_PERMISSIONS = {(VALIDATION, "aws"): {"id-token"}}

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"^(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^\s+# v(?P<major>\d+)\.\d+\.\d+$")
JUNIT_OPTION = re.compile(r"--junit(?:xml)?[= ]\"?(?P<path>[^\s\")]+)")


def _workflow_paths() -> list[Path]:
    return sorted([*WORKFLOW_DIR.glob("*.yml"), *WORKFLOW_DIR.glob("*.yaml")])


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


WORKFLOWS = {path.name: _load(path) for path in _workflow_paths()}


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as True.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), f"unexpected `on:` {on!r}"
    return on


def _jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, workflow in WORKFLOWS.items():
        for job_id, job in workflow["jobs"].items():
            yield name, job_id, job


def _steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, job_id, job in _jobs():
        for step in job.get("steps", []):
            yield name, job_id, step


def _runs_on(job: dict[str, Any]) -> list[str]:
    runs_on = job["runs-on"]
    return [runs_on] if isinstance(runs_on, str) else list(runs_on)


def _is_self_hosted(job: dict[str, Any]) -> bool:
    return "self-hosted" in _runs_on(job)


def _action(step: dict[str, Any]) -> str | None:
    uses = step.get("uses")
    return uses.split("@", 1)[0] if uses else None


def test_the_workflows_users_copy_are_all_here() -> None:
    assert {CI, EXAMPLE, VALIDATION} <= set(WORKFLOWS)


@pytest.mark.parametrize("path", _workflow_paths(), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it(path: Path) -> None:
    lines = [m for m in map(USES_LINE.match, path.read_text().splitlines()) if m]
    parsed = [step["uses"] for name, _, step in _steps() if name == path.name and "uses" in step]
    assert [m["ref"] for m in lines] == parsed, "a `uses:` not written one per line"
    for match in lines:
        pinned = PINNED.match(match["ref"])
        assert pinned, f"{path.name}: {match['ref']} is not pinned to a full commit SHA"
        version = VERSION_COMMENT.match(match["rest"])
        assert version, f"{path.name}: {match['ref']} has no `# vX.Y.Z` comment"
        first_node24 = FIRST_NODE24_MAJOR.get(pinned["action"])
        assert first_node24 is not None, f"{pinned['action']}: which major runs on node24?"
        assert int(version["major"]) >= first_node24, f"{match['ref']} runs on node20"


def test_each_action_is_pinned_to_one_commit_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in _workflow_paths():
        for match in filter(None, map(USES_LINE.match, path.read_text().splitlines())):
            action = match["ref"].split("@", 1)[0]
            pins.setdefault(action, set()).add(match["ref"] + match["rest"])
    assert pins
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


def test_checkouts_leave_no_token_behind() -> None:
    checkouts = [(n, j, s) for n, j, s in _steps() if _action(s) == "actions/checkout"]
    assert checkouts
    for name, job_id, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{name}: {job_id}"


def test_permissions_are_granted_per_job_and_read_only() -> None:
    for name, workflow in WORKFLOWS.items():
        assert workflow.get("permissions") == {}, f"{name}: workflow-level permissions"
    for name, job_id, job in _jobs():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{name}: {job_id} sets no permissions"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == WRITE_PERMISSIONS.get((name, job_id), set()), f"{name}: {job_id}"
        assert set(permissions.values()) <= {"read", "write", "none"}
        checks_out = any(_action(step) == "actions/checkout" for step in job["steps"])
        assert permissions.get("contents") == ("read" if checks_out else None), f"{job_id}"


def test_run_scripts_read_values_from_the_environment_not_expressions() -> None:
    for name, job_id, step in _steps():
        assert "${{" not in step.get("run", ""), f"{name}: {job_id}: {step.get('name')}"


def test_no_untrusted_code_is_invited_onto_a_self_hosted_runner() -> None:
    for name, workflow in WORKFLOWS.items():
        triggers = _triggers(workflow)
        assert not {"pull_request_target", "workflow_run"} & set(triggers), name
        if any(_is_self_hosted(job) for job in workflow["jobs"].values()):
            assert "pull_request" not in triggers, f"{name}: pull requests on self-hosted"
    # The example leaves `pull_request:` to the user, with what it lets in and what stops it.
    note = (WORKFLOW_DIR / EXAMPLE).read_text()
    assert "# pull_request:" in note
    assert "from a fork" in note
    assert '"Allow public repositories" off' in note


def test_fleet_jobs_select_the_fleets_default_labels() -> None:
    suite = WORKFLOWS[EXAMPLE]["jobs"]["suite"]
    assert jobs.labels_match(_runs_on(suite), LOCAL_FLEET_LABELS)
    assert jobs.labels_match(_runs_on(suite), AWS_FLEET_LABELS)
    for name, job_id, job in _jobs():
        labels = _runs_on(job)
        if not _is_self_hosted(job):
            assert len(labels) == 1 and labels[0] in GITHUB_HOSTED, f"{name}: {job_id}"
        elif ADMIN_LABEL in labels:
            # The runner that validates a fleet is not one of its runners.
            assert not jobs.labels_match(labels, LOCAL_FLEET_LABELS), f"{name}: {job_id}"
            assert not jobs.labels_match(labels, AWS_FLEET_LABELS), f"{name}: {job_id}"
        else:
            assert jobs.labels_match(labels, LOCAL_FLEET_LABELS), f"{name}: {job_id}"
            assert jobs.labels_match(labels, AWS_FLEET_LABELS), f"{name}: {job_id}"


def test_actionlint_knows_the_fleets_labels() -> None:
    config = yaml.safe_load(ACTIONLINT_CONFIG.read_text())
    known = set(config["self-hosted-runner"]["labels"])
    used = {label for _, _, job in _jobs() if _is_self_hosted(job) for label in _runs_on(job)}
    defaults = {*LOCAL_FLEET_LABELS, *AWS_FLEET_LABELS}
    assert known == (used | defaults) - ACTIONLINT_SELF_HOSTED_LABELS


def test_every_job_is_bounded_and_long_suites_get_their_time() -> None:
    for name, job_id, job in _jobs():
        timeout = job.get("timeout-minutes")
        assert isinstance(timeout, int), f"{name}: {job_id} has no timeout-minutes"
        assert 0 < timeout <= 360, f"{name}: {job_id}"
    # The example is a long containerized suite: two hours, not GitHub's six-hour default.
    assert WORKFLOWS[EXAMPLE]["jobs"]["suite"]["timeout-minutes"] >= 120


def test_the_dind_service_is_privileged_and_tls_only() -> None:
    suite = WORKFLOWS[EXAMPLE]["jobs"]["suite"]
    dind = [svc for svc in suite["services"].values() if "dind" in svc["image"]]
    assert len(dind) == 1
    service = dind[0]
    assert "--privileged" in service["options"].split()
    assert service["env"]["DOCKER_TLS_CERTDIR"]
    container_ports = {str(port).split(":")[-1] for port in service["ports"]}
    assert container_ports == {"2376"}
    assert "2375" not in yaml.safe_dump(suite)
    clients = [s for s in suite["steps"] if "DOCKER_HOST" in s.get("env", {})]
    assert clients
    for step in clients:
        assert re.fullmatch(r"tcp://localhost:2376", step["env"]["DOCKER_HOST"])
        assert step["env"]["DOCKER_TLS_VERIFY"] == "1"
        assert step["env"]["DOCKER_CERT_PATH"]


def _junit_reports(job: dict[str, Any]) -> list[tuple[int, str]]:
    return [
        (index, match["path"])
        for index, step in enumerate(job["steps"])
        for match in JUNIT_OPTION.finditer(step.get("run", ""))
    ]


def _uploads(job: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [
        (index, step)
        for index, step in enumerate(job["steps"])
        if _action(step) == "actions/upload-artifact"
    ]


@pytest.mark.parametrize("job_id", ["local", "aws"])
def test_the_validation_workflow_uploads_the_junit_report(job_id: str) -> None:
    job = WORKFLOWS[VALIDATION]["jobs"][job_id]
    reports = _junit_reports(job)
    assert len(reports) == 1, reports
    written_at, report = reports[0]
    uploads = [(i, s) for i, s in _uploads(job) if s["with"]["path"] == report]
    assert len(uploads) == 1, f"{report} is not uploaded"
    index, upload = uploads[0]
    assert index > written_at
    # Uploaded when the validation failed too, and a missing report is itself a failure.
    assert upload["if"] == "always()"
    assert upload["with"]["if-no-files-found"] == "error"


def test_the_example_uploads_its_junit_reports_even_when_the_suite_fails() -> None:
    job = WORKFLOWS[EXAMPLE]["jobs"]["suite"]
    reports = _junit_reports(job)
    assert reports
    for written_at, report in reports:
        covering = [
            (i, s)
            for i, s in _uploads(job)
            if report.startswith(s["with"]["path"].rstrip("/") + "/") and i > written_at
        ]
        assert covering, f"{report} is not uploaded"
        assert all(s["if"] == "always()" for _, s in covering)
