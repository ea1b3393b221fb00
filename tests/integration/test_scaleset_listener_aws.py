"""The AWS control plane in ``githubMode: scaleSet``: the listener function against moto (IAM
enforced, with the listener's own policy) and the FAKE scale-set service on loopback.

Jobs queued at the fake GitHub for the scale set raise the group's desired capacity through
the listener; the session is closed before the run's budget ends; new instances get
scale-set JIT configs; the scheduled scaler stands aside; webhook mode has no listener. A run
that could not close its session leaves its id in the listener's SSM parameter and the next
run takes that session over at once (no 409 is ever answered).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

from fleet.aws.adapters.clients import DEFAULT_CONFIG, aws_clients
from fleet.aws.handlers import lifecycle, listener, reaper, scaler
from fleet.aws.handlers.runtime import LAMBDA_RETRY, Runtime
from fleet.aws.handlers.settings import Settings
from fleet.core.github.errors import GitHubError
from tests.fakes.scaleset_agent import StepAgent, threaded_server
from tests.fakes.scaleset_github import FakeGitHubWithScaleSets
from tests.integration import moto_asg
from tests.integration.harness import (
    APP_ID,
    APP_PARAMETERS,
    FLEET,
    GROUP_ID,
    INSTALLATION_ID,
    LISTENER_SESSION_PARAMETER,
    ORG,
    PARAMETER_ROOT,
    REGION,
    AwsWorld,
    ClockStop,
    OffsetClock,
    fleet_environment,
)
from tests.integration.moto_iam import PolicyEnforcer
from tests.integration.test_iam_enforcement import denied

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"


class World:
    def __init__(self, aws: AwsWorld, github: FakeGitHubWithScaleSets, clock: OffsetClock):
        self.aws, self.github, self.clock = aws, github, clock

    def runtime(self, function: str, **env: Any) -> Runtime:
        environment = fleet_environment(self.aws, self.github.base_url, **env)
        session = self.aws.function_sessions[function]
        clients = aws_clients(session, region=REGION, config=DEFAULT_CONFIG)
        return Runtime(
            Settings.from_env(environment), clients, clock=self.clock, sleep=self.clock.sleep
        )


@pytest.fixture
def world(app_keys: tuple[str, bytes], aws_sleeps: list[float]) -> Iterator[World]:
    with ExitStack() as stack, threaded_server() as server:
        stack.enter_context(mock_aws())
        enforcer = PolicyEnforcer(ACCOUNT, REGION)
        stack.enter_context(enforcer.installed())
        stack.enter_context(moto_asg.patched(moto_asg.LifecycleActions()))
        clock = OffsetClock()
        github = FakeGitHubWithScaleSets(
            server=server, app_id=APP_ID, public_key=app_keys[1], clock=clock
        )
        github.scalesets.hold_seconds = 0.02
        github.install(ORG, INSTALLATION_ID)
        github.add_group(ORG, "runner-fleet", group_id=GROUP_ID)
        aws = AwsWorld(enforcer, app_keys[0], max_size=10, github_mode="scaleSet")
        stack.enter_context(enable_iam_authentication())
        yield World(aws, github, clock)


SCALE_SET = {"FLEET_GITHUB_MODE": "scaleSet"}


def listen(world: World, polls: int) -> dict[str, Any]:
    rt = world.runtime("listener", **SCALE_SET)
    budget = listener.LISTEN_MARGIN_SECONDS + 600
    return listener.handle(
        {}, rt, remaining_seconds=budget, stop=ClockStop(world.clock), max_polls=polls
    )


def test_jobs_for_the_scale_set_raise_the_groups_desired_capacity(world):
    jobs = [
        world.github.queue_job("true", labels=(FLEET,), repository=f"{ORG}/app") for _ in range(3)
    ]
    result = listen(world, polls=2)
    assert result["session_closed"] and len(result["acquired"]) == 3
    assert world.aws.group()["DesiredCapacity"] == 3
    record = next(iter(world.github.scalesets.scale_sets.values()))
    assert (record.name, record.runner_group_id, record.scope) == (FLEET, GROUP_ID, ORG)
    assert world.github.scalesets.sessions == {}
    assert all(world.github.scalesets.job_of(j.id).state == "assigned" for j in jobs)


def test_a_second_run_adopts_the_scale_set_and_sees_completions(world):
    job = world.github.queue_job("true", labels=(FLEET,), repository=f"{ORG}/app")
    listen(world, polls=2)
    rt = world.runtime("lifecycle", **SCALE_SET)
    encoded, runner_id = lifecycle.jit_config(rt, f"{FLEET}-i-0abc")
    runner = world.github._find_runner(runner_id)
    assert runner is not None and runner["runnerScaleSetId"] == 1
    agent = StepAgent(encoded)
    agent.online()
    assert agent.take_job()["id"] == job.id
    agent.finish(0)
    result = listen(world, polls=2)
    assert result["scale_set_id"] == 1 and len(world.github.scalesets.scale_sets) == 1
    assert world.github.jobs[job.id].status == "completed"
    assert world.github.scalesets.statistics(1)["totalAssignedJobs"] == 0
    # Nothing more is asked for; the instance launched for the job is still booting (it never
    # registers here) and is kept until its boot deadline, as core.scaling.decide does.
    assert world.aws.group()["DesiredCapacity"] == 1


def test_a_jit_config_before_the_scale_set_exists_is_a_transient_error(world):
    rt = world.runtime("lifecycle", **SCALE_SET)
    with pytest.raises(lifecycle.TransientLifecycleError, match="does not exist yet"):
        lifecycle.jit_config(rt, f"{FLEET}-i-0abc")


def test_a_stale_scale_set_registration_is_replaced(world):
    listen(world, polls=1)
    rt = world.runtime("lifecycle", **SCALE_SET)
    _, first = lifecycle.jit_config(rt, f"{FLEET}-i-0abc")
    _, second = lifecycle.jit_config(rt, f"{FLEET}-i-0abc")
    assert first != second and world.github._find_runner(first) is None


def test_a_scheduled_scaler_run_stands_aside_and_webhook_mode_has_no_listener(world):
    rt = world.runtime("listener", **SCALE_SET)
    assert (
        "listener function runs the cycles"
        in scaler.handle({"source": "aws.events"}, rt)["skipped"]
    )
    webhook = world.runtime(
        "listener",
        FLEET_GITHUB_MODE="webhook",
        FLEET_WEBHOOK_SECRET_PARAMETER=APP_PARAMETERS["webhook_secret"],
        FLEET_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/123456789012/q",
        FLEET_LEDGER_TABLE="ledger",
    )
    assert "no listener" in listener.handle({}, webhook, remaining_seconds=900)["skipped"]
    assert "too little" in listener.handle({}, rt, remaining_seconds=60)["skipped"]


def test_the_scale_set_stack_has_no_webhook_secret_queue_or_ledger_and_needs_none(world):
    """The handlers run with the smaller stack's environment: no webhook secret parameter,
    no deliveries queue, no ledger table, none of them named to any function."""
    env = fleet_environment(world.aws, world.github.base_url)
    assert not {"FLEET_WEBHOOK_SECRET_PARAMETER", "FLEET_QUEUE_URL", "FLEET_LEDGER_TABLE"} & set(
        env
    )
    admin = world.aws.admin_client
    assert [q for q in admin("sqs").list_queues().get("QueueUrls", []) if "deliveries" in q] == []
    assert admin("dynamodb").list_tables()["TableNames"] == []
    assert set(world.aws.policies) == {"lifecycle", "reaper", "listener"}
    documents = json.dumps(world.aws.policies)
    assert "dynamodb" not in documents and "webhook-secret" not in documents
    assert "deliveries" not in documents


def test_the_run_stops_listening_before_the_functions_timeout(world):
    rt = world.runtime("listener", **SCALE_SET)
    world.github.scalesets.hold_seconds = 0.0
    start = world.clock()
    result = listener.handle(
        {}, rt, remaining_seconds=listener.LISTEN_MARGIN_SECONDS + 5, stop=ClockStop(world.clock)
    )
    assert result["ended"] == "deadline" and result["session_closed"]
    assert world.clock() - start < listener.LISTEN_MARGIN_SECONDS


SESSIONS = "/_services/pipelines/_apis/runtime/runnerscalesets/1/sessions/"


def remembered(world: World) -> Any:
    ssm = world.aws.admin_client("ssm")
    return json.loads(ssm.get_parameter(Name=LISTENER_SESSION_PARAMETER)["Parameter"]["Value"])


def test_a_run_remembers_its_session_while_it_holds_it_and_clears_it_when_it_closes_it(
    world, monkeypatch
):
    seen: list[Any] = []
    rt = world.runtime("listener", **SCALE_SET)
    scale = listener.scale
    monkeypatch.setattr(
        listener, "scale", lambda rt, update: (seen.append(remembered(world)), scale(rt, update))
    )
    result = listener.handle(
        {}, rt, remaining_seconds=700, stop=ClockStop(world.clock), max_polls=1
    )
    ((opened, session_id, owner),) = [e for e in world.github.scalesets.session_events[:1]]
    assert (opened, owner) == ("opened", f"{FLEET}-listener")
    assert seen and all(s == {"scaleSetId": 1, "sessionId": session_id} for s in seen)
    assert result["session_closed"] and result["previous_session"] is None
    assert remembered(world) == {}


def test_the_next_run_takes_over_the_session_a_dead_run_left_open_at_once(world):
    """Run 1 "dies": its session is never closed at the service (the DELETE fails through
    every retry, as if the function had timed out). Run 2 finds its id in the parameter,
    deletes that session and opens its own: the service never answers 409."""
    job = world.github.queue_job("true", labels=(FLEET,), repository=f"{ORG}/app")
    world.github.fail_next(503, times=LAMBDA_RETRY.max_attempts, path_prefix=SESSIONS)
    first = listen(world, polls=1)
    assert not first["session_closed"]
    events = world.github.scalesets.session_events
    ((_, dead, _),) = events
    assert list(world.github.scalesets.sessions) == [dead]  # still open at the service
    assert remembered(world) == {"scaleSetId": 1, "sessionId": dead}

    second = listen(world, polls=1)
    assert second["previous_session"] == dead and second["session_closed"]
    kinds = [(kind, sid == dead) for kind, sid, _ in events]
    assert kinds == [("opened", True), ("deleted", True), ("opened", False), ("deleted", False)]
    assert world.github.scalesets.sessions == {} and remembered(world) == {}
    # The job acquired by the dead run is still counted: the group was sized for it.
    assert world.github.scalesets.job_of(job.id).state == "assigned"
    assert world.aws.group()["DesiredCapacity"] == 1


def test_a_take_over_the_service_refuses_is_tried_once(world):
    """The remembered id is cleared as it is read: if deleting the dead run's session fails
    (5xx through every retry), this run fails, and the next one does not fail the same way
    forever; it waits the old session out instead (the 409 path)."""
    world.github.fail_next(503, times=LAMBDA_RETRY.max_attempts, path_prefix=SESSIONS)
    assert not listen(world, polls=1)["session_closed"]  # run 1 "dies"
    world.github.fail_next(503, times=LAMBDA_RETRY.max_attempts, path_prefix=SESSIONS)
    with pytest.raises(GitHubError):
        listen(world, polls=1)  # run 2: its take-over is refused
    assert remembered(world) == {}
    assert [kind for kind, _, _ in world.github.scalesets.session_events] == ["opened"]


def test_a_remembered_session_the_service_already_dropped_is_no_obstacle(world):
    ssm = world.aws.admin_client("ssm")
    ssm.put_parameter(
        Name=LISTENER_SESSION_PARAMETER,
        Value=json.dumps({"scaleSetId": 1, "sessionId": "gone"}),
        Type="String",
        Overwrite=True,
    )
    result = listen(world, polls=1)
    assert result["previous_session"] == "gone" and result["session_closed"]
    assert [kind for kind, _, _ in world.github.scalesets.session_events] == ["opened", "deleted"]
    assert remembered(world) == {}


def test_only_the_listener_may_read_or_write_its_session_parameter(world):
    for fn in ("lifecycle", "reaper"):
        ssm = world.aws.function_sessions[fn].client("ssm", config=DEFAULT_CONFIG)
        denied(lambda ssm=ssm: ssm.get_parameter(Name=LISTENER_SESSION_PARAMETER))
        denied(
            lambda ssm=ssm: ssm.put_parameter(
                Name=LISTENER_SESSION_PARAMETER, Value="{}", Type="String", Overwrite=True
            )
        )
    own = world.aws.function_sessions["listener"].client("ssm", config=DEFAULT_CONFIG)
    # Exactly that parameter: not its neighbours, not deleting it.
    for other in (f"{PARAMETER_ROOT}/listener/other", f"{PARAMETER_ROOT}/runners/x/jitconfig"):
        denied(
            lambda other=other: own.put_parameter(
                Name=other, Value="{}", Type="String", Overwrite=True
            )
        )
    denied(lambda: own.delete_parameter(Name=LISTENER_SESSION_PARAMETER))
    listen(world, polls=1)
    used = world.aws.enforcer.used(f"role/{FLEET}-listener")
    assert {a for sid, a in used if sid == "RememberListenerSession"} == {
        "ssm:GetParameter",
        "ssm:PutParameter",
    }
    unexpected = [c for c in world.aws.enforcer.denied() if c.principal != "user/admin"]
    assert {(c.principal, c.action) for c in unexpected} <= {
        (f"role/{FLEET}-{fn}", action)
        for fn in ("lifecycle", "reaper", "listener")
        for action in ("ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter")
    }


def test_release_and_reaper_need_no_ledger_in_this_mode(world):
    """A busy scale-set runner released (spot warning): deregistration refused, no job to
    record (GitHub re-queues it); a reaper pass reaps and keeps the group closed, with no
    redelivery and no ledger. IAM is enforced: neither role has any DynamoDB grant."""
    job = world.github.queue_job("true", labels=(FLEET,), repository=f"{ORG}/app")
    listen(world, polls=2)
    rt = world.runtime("lifecycle", **SCALE_SET)
    encoded, _ = lifecycle.jit_config(rt, f"{FLEET}-i-0abc")
    agent = StepAgent(encoded)
    agent.online()
    assert agent.take_job()["id"] == job.id
    released = lifecycle.release_runner(rt, "i-0abc", "spot interruption")
    assert released["busy"] and released["retry_job"] is None
    report = reaper.handle({}, world.runtime("reaper", **SCALE_SET))
    assert report["skipped"] is None and report["errors"] == []
    assert report["redelivered"] == [] and report["queued_too_long"] == []
    assert not world.github.calls("GET", "/app/hook/deliveries")
    unexpected = [c for c in world.aws.enforcer.denied() if c.principal != "user/admin"]
    assert unexpected == []
