"""The whole flow, step by step, against moto (IAM enforced with infra/iam*.py's documents) and
the fake GitHub: webhook -> SQS -> scaler -> desired capacity -> launch hook -> JIT config in
SSM -> the instance reads and deletes it -> job runs -> instance leaves -> reaper: nothing left.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from tests.integration.harness import FLEET, JIT_INSTANCE_TAG, LABELS, Fleet

pytestmark = pytest.mark.integration


def ledger_states(fleet: Fleet) -> dict[int, str]:
    return {
        int(item["job_id"]["N"]): item["state"]["S"]
        for item in fleet.aws.ledger_items()
        if item["pk"]["S"].startswith("job#")
    }


def test_flow_from_webhook_to_self_termination_leaves_nothing_behind(make_fleet):
    fleet = make_fleet(max_size=5)
    enforcer = fleet.aws.enforcer

    # GitHub queues two jobs: the webhook answers 202 after one SQS send each (property 13).
    jobs = fleet.queue_jobs(2)
    assert [status for _, _, status in fleet.responses] == [202, 202]
    assert fleet.aws.queue_depth() == 2
    assert set(enforcer.actions("role/main-webhook")) == {"ssm:GetParameter", "sqs:SendMessage"}

    # The scaler records them and asks for two instances.
    fleet.pump_queue()
    assert ledger_states(fleet) == {job.id: "queued" for job in jobs}
    assert fleet.aws.group()["DesiredCapacity"] == 2

    # The launch hook holds both; the lifecycle function stores each one's JIT config.
    fleet.asg_tick()
    group = fleet.aws.group()
    instances = sorted(i["InstanceId"] for i in group["Instances"])
    assert len(instances) == 2
    assert all(i["LifecycleState"] == "InService" for i in group["Instances"])
    assert sorted(i for i, hook, result in fleet.actions.completed) == instances
    assert {result for _, _, result in fleet.actions.completed} == {"CONTINUE"}
    ssm = fleet.aws.admin_client("ssm")
    for instance_id in instances:
        name = f"/runner-fleet/{FLEET}/runners/{instance_id}/jitconfig"
        parameter = ssm.get_parameter(Name=name)["Parameter"]
        assert parameter["Type"] == "SecureString"
        described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])[
            "Parameters"
        ][0]
        assert described["KeyId"] == fleet.aws.kms_key_arn  # property 5: the fleet's own key
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
        assert tags == [
            {
                "Key": JIT_INSTANCE_TAG,
                "Value": f"arn:aws:ec2:eu-west-1:123456789012:instance/{instance_id}",
            }
        ]
    # Registered just in time, with the fleet's labels, offline until the agent connects.
    runners = {r["name"]: r for r in fleet.runners().values()}
    assert set(runners) == {f"{FLEET}-{i}" for i in instances}
    assert all(r["ephemeral"] and r["status"] == "offline" for r in runners.values())
    assert all([label["name"] for label in r["labels"]] == list(LABELS) for r in runners.values())

    # Property 6 and 8: each instance reads its JIT config with its own role, deletes it, and
    # its runner starts with that config alone.
    assert sorted(fleet.boot_instances()) == instances
    assert fleet.aws.jit_parameters() == []
    assert all(fleet.jit_reads[i].startswith("JITSECRET-") for i in instances)
    assert {r["status"] for r in fleet.runners().values()} == {"online"}
    instance_calls = {c.action for c in enforcer.calls if c.principal == "role/main-instance"}
    assert instance_calls == {"ssm:GetParameter", "ssm:DeleteParameter", "s3:GetObject"}

    # GitHub hands the jobs to the runners; the ledger follows.
    assert len(fleet.assign_jobs()) == 2
    fleet.pump_queue()
    assert set(ledger_states(fleet).values()) == {"in_progress"}
    # Property 17: a runner with a job is protected from scale-in.
    assert all(i["ProtectedFromScaleIn"] for i in fleet.aws.group()["Instances"])

    # The jobs finish; each instance leaves its group with its own role, shrinking it.
    fleet.finish_jobs()
    assert fleet.aws.group()["DesiredCapacity"] == 0
    assert fleet.aws.group_states() == []
    fleet.pump_queue()
    assert set(ledger_states(fleet).values()) == {"completed"}
    fleet.asg_tick()  # the terminate hook: runners are gone already, nothing to retry
    released = [r for f, r in fleet.results if f == "lifecycle" and r.get("result") == "released"]
    assert [r["retry_job"] for r in released] == [None, None]

    # The reaper finds nothing left to do.
    fleet.clock.advance(600)
    fleet.scheduled("reaper")
    report = fleet.results[-1][1]
    for key in (
        "ghosts_deregistered",
        "terminated_offline",
        "terminated_never_registered",
        "retired_expired",
        "parameters_deleted",
        "redelivered",
        "queued_too_long",
        "errors",
    ):
        assert report[key] == [], key
    assert report["skipped"] is None
    assert fleet.nothing_left()
    assert fleet.aws.dead_letters() == []
    assert enforcer.denied() == []
    assert fleet.killed_busy == []


def test_deployed_entry_points_read_their_settings_from_the_environment(make_fleet, monkeypatch):
    """The Lambda entry points (``handler``) build their runtime from the environment
    infra/control_plane.py writes, with the credentials of the role they run as."""
    import fleet.aws.handlers.runtime as runtime_module
    from fleet.aws.handlers import webhook

    fleet = make_fleet(max_size=2)
    credentials = fleet.aws.function_sessions["webhook"].get_credentials()
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials.token)
    monkeypatch.setattr(runtime_module, "_RUNTIME", None)

    job = fleet.github.new_job("acme/app", LABELS, fleet.clock.now())
    from tests.fakes.payloads import signed

    headers, body = signed(fleet.payload(job, "queued"), secret="integration-webhook-secret")
    event = {
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }
    assert webhook.handler(event, None)["statusCode"] == 202
    assert fleet.aws.queue_depth() == 1
    assert runtime_module._RUNTIME is not None
    assert runtime_module._RUNTIME.settings.fleet_name == FLEET


def test_reaper_closes_the_runner_group_to_public_repositories(make_fleet):
    """Property 9 on GitHub's side: someone opened the group; the reaper closes it again."""
    fleet = make_fleet(max_size=1)
    (group,) = fleet.github.runner_groups["acme"]
    group["allows_public_repositories"] = True
    fleet.scheduled("reaper")
    assert fleet.github.group_updates == [(42, {"allows_public_repositories": False})]
    assert group["allows_public_repositories"] is False
    fleet.scheduled("reaper")
    assert len(fleet.github.group_updates) == 1  # nothing to do the second time
