"""IAM, enforced: the functions and the instances run with exactly the policy documents
infra/iam*.py produce, and those documents grant exactly what the code calls.

moto authenticates every call below with the caller's own role; ``PolicyEnforcer`` evaluates
resources and conditions too (moto alone ignores conditions: they are also asserted on the
documents in tests/unit/infra/test_infra_control_plane.py). One test keeps moto's own
evaluation to show enforcement is on regardless of the harness.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from fleet.aws.adapters.clients import DEFAULT_CONFIG
from infra.config import SCALE_SET_MODE
from infra.iam_functions import function_policies
from tests.fakes.iam_policy import allow_statements
from tests.integration.harness import (
    ACCOUNT,
    APP_PARAMETERS,
    ASG_NAME,
    FLEET,
    LISTENER_SESSION_PARAMETER,
    REGION,
    SCALE_SET_FUNCTION_NAMES,
    Fleet,
    Throttler,
    control_plane_resources,
)

pytestmark = pytest.mark.integration

# Granted but not observable in moto, with the reason; each is asserted on the documents.
NOT_EXERCISABLE = {
    ("WriteOwnLogs", "logs:CreateLogStream"): "the Lambda runtime writes logs, not our code",
    ("WriteOwnLogs", "logs:PutLogEvents"): "the Lambda runtime writes logs, not our code",
    ("DecryptGitHubApp", "kms:Decrypt"): "SSM calls KMS on the caller's behalf",
    ("DecryptWebhookSecret", "kms:Decrypt"): "SSM calls KMS on the caller's behalf",
    ("EncryptJitConfigs", "kms:Encrypt"): "SSM calls KMS on the caller's behalf",
    ("EncryptJitConfigs", "kms:GenerateDataKey"): "SSM calls KMS on the caller's behalf",
    ("WriteJitConfigs", "ssm:AddTagsToResource"): (
        "AWS authorizes PutParameter's tags as AddTagsToResource; moto does not"
    ),
    ("DecryptOwnJitConfigViaSsm", "kms:Decrypt"): "SSM calls KMS on the caller's behalf",
    ("DecryptPlaybookBundleViaS3", "kms:Decrypt"): "S3 calls KMS on the caller's behalf",
}


def denied(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    # moto answers JSON-protocol services with an XML body botocore reads as code "403".
    assert status == 403, caught.value.response
    assert error["Code"] in ("AccessDenied", "AccessDeniedException", "403"), error
    assert "AccessDenied" in str(caught.value) or "not authorized" in str(caught.value)
    return str(error["Code"])


def two_instances_with_jit_configs(fleet: Fleet) -> list[str]:
    fleet.queue_jobs(2)
    fleet.pump_queue()
    fleet.asg_tick()
    return sorted(s.instance.id for s in fleet.aws.group_states())


def test_property_3_instance_role_reads_and_deletes_only_its_own_jit_parameter(make_fleet):
    """moto with the deployed instance policy (plus AmazonSSMManagedInstanceCore), conditions
    evaluated: ``ec2:SourceInstanceARN`` against the parameter's instance tag."""
    fleet = make_fleet(max_size=2)
    own, other = two_instances_with_jit_configs(fleet)
    session = fleet.aws.instance_session(own)
    ssm = session.client("ssm", config=DEFAULT_CONFIG)
    template = fleet.settings.jit_parameter_template

    # Everything else is denied, explicitly where a broader managed policy would allow it.
    denied(lambda: ssm.get_parameter(Name=template.format(instance_id=other), WithDecryption=True))
    denied(lambda: ssm.delete_parameter(Name=template.format(instance_id=other)))
    denied(
        lambda: ssm.get_parameters_by_path(Path=f"/runner-fleet/{FLEET}/runners", Recursive=True)
    )
    denied(lambda: ssm.get_parameter(Name=APP_PARAMETERS["private_key"], WithDecryption=True))
    denied(lambda: ssm.get_parameter(Name=APP_PARAMETERS["webhook_secret"], WithDecryption=True))
    denied(
        lambda: ssm.put_parameter(
            Name=template.format(instance_id=own), Value="x", Type="String", Overwrite=True
        )
    )
    autoscaling = session.client("autoscaling", config=DEFAULT_CONFIG)
    denied(
        lambda: autoscaling.set_desired_capacity(AutoScalingGroupName=ASG_NAME, DesiredCapacity=9)
    )
    denied(lambda: session.client("ec2").terminate_instances(InstanceIds=[other]))
    denied(lambda: session.client("ec2").describe_tags())
    denied(
        lambda: session.client("sqs").send_message(QueueUrl=fleet.aws.queue_url, MessageBody="x")
    )
    denied(lambda: session.client("dynamodb").scan(TableName=fleet.aws.table))
    denied(lambda: session.client("s3").get_object(Bucket="main-bundle-bucket", Key="other.zip"))
    evaluations = {c.action: c.evaluation.decision for c in fleet.aws.enforcer.denied()}
    assert evaluations["ssm:DeleteParameter"] == "ExplicitDeny"
    assert evaluations["ssm:GetParametersByPath"] == "ExplicitDeny"
    assert evaluations["autoscaling:SetDesiredCapacity"] == "ImplicitDeny"

    # What it may do: read and delete its own parameter, fetch the bundle, leave its group.
    name = template.format(instance_id=own)
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"].startswith(
        "JITSECRET-"
    )
    ssm.delete_parameter(Name=name)
    session.client("s3").get_object(
        Bucket="main-bundle-bucket",
        Key=fleet.aws.instance_policy["Statement"][4]["Resource"].split("/", 1)[1],
    )
    autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=own, ShouldDecrementDesiredCapacity=True
    )
    # Property 6: its parameter is gone; the other instance's is untouched.
    assert fleet.aws.jit_parameters() == [template.format(instance_id=other)]


def test_enforcement_is_on_moto_itself_denies_a_call_outside_the_policy(make_fleet, monkeypatch):
    """With the harness's evaluator removed, moto's own check still refuses the webhook role
    an action its policy does not grant."""
    from moto.iam import access_control

    fleet = make_fleet(max_size=1)
    monkeypatch.setattr(
        access_control.IAMRequestBase, "check_action_permitted", fleet.aws.enforcer.moto_check
    )
    client = fleet.runtimes["webhook"].clients.autoscaling
    denied(lambda: client.set_desired_capacity(AutoScalingGroupName=ASG_NAME, DesiredCapacity=5))
    assert fleet.aws.group()["DesiredCapacity"] == 0


def test_each_function_is_denied_what_only_another_function_may_do(make_fleet):
    fleet = make_fleet(max_size=1)
    clients = {fn: rt.clients for fn, rt in fleet.runtimes.items()}
    parameter = fleet.settings.jit_parameter_template.format(instance_id="i-0123456789abcdef0")
    # The webhook cannot read the App key, consume the queue or touch the group.
    denied(lambda: clients["webhook"].ssm.get_parameter(Name=APP_PARAMETERS["private_key"]))
    denied(lambda: clients["webhook"].sqs.receive_message(QueueUrl=fleet.aws.queue_url))
    denied(
        lambda: clients["webhook"].dynamodb.get_item(
            TableName=fleet.aws.table, Key={"pk": {"S": "x"}}
        )
    )
    # The scaler cannot write JIT configs or complete lifecycle actions.
    denied(
        lambda: clients["scaler"].ssm.put_parameter(
            Name=parameter, Value="x", Type="SecureString", KeyId=fleet.aws.kms_key_arn
        )
    )
    denied(
        lambda: clients["scaler"].autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=ASG_NAME,
            LifecycleHookName=f"{ASG_NAME}-launch",
            InstanceId="i-0123456789abcdef0",
            LifecycleActionResult="CONTINUE",
        )
    )
    # The lifecycle function cannot size the group or read the webhook secret.
    denied(
        lambda: clients["lifecycle"].autoscaling.set_desired_capacity(
            AutoScalingGroupName=ASG_NAME, DesiredCapacity=1
        )
    )
    denied(lambda: clients["lifecycle"].ssm.get_parameter(Name=APP_PARAMETERS["webhook_secret"]))
    # The reaper cannot write JIT configs or send deliveries.
    denied(
        lambda: clients["reaper"].ssm.put_parameter(
            Name=parameter, Value="x", Type="SecureString", KeyId=fleet.aws.kms_key_arn
        )
    )
    denied(
        lambda: clients["reaper"].sqs.send_message(QueueUrl=fleet.aws.queue_url, MessageBody="{}")
    )
    # Metrics only in the fleet's namespace (a condition moto alone would ignore).
    denied(
        lambda: clients["scaler"].cloudwatch.put_metric_data(
            Namespace="Other", MetricData=[{"MetricName": "x", "Value": 1}]
        )
    )


def test_policies_grant_exactly_what_the_functions_and_instances_use(make_fleet):
    """A tour through every path of the control plane; then every action each policy allows
    must have been used (or be listed in NOT_EXERCISABLE), and nothing needed was denied."""
    throttle = Throttler(rate=0.0)
    fleet = make_fleet(max_size=4, throttle=throttle)
    admin_asg = fleet.aws.admin_client("autoscaling")

    # 1. Two jobs, a third cancelled before a runner took it: its runner is retired.
    jobs = fleet.queue_jobs(3)
    fleet.pump_queue()
    fleet.cancel(jobs[2])
    fleet.step(finish=False)
    busy = sorted(fleet.busy_instances())
    assert len(busy) == 2
    # 2. Someone clears a busy runner's protection: the scaler restores it.
    admin_asg.set_instance_protection(
        AutoScalingGroupName=ASG_NAME, InstanceIds=[busy[0]], ProtectedFromScaleIn=False
    )
    fleet.clock.advance(400)  # past the idle grace: the surplus idle runner is retired
    fleet.scheduled("scaler")
    assert all(
        i["ProtectedFromScaleIn"] for i in fleet.aws.group()["Instances"] if i["InstanceId"] in busy
    )
    assert len(fleet.aws.group_states()) == 2, (fleet.results[-1], fleet.describe())
    # 3. A spot warning for a busy runner: released, its job recorded for a re-run.
    fleet.spot_warning(busy[1])
    assert fleet.results[-1][1]["retry_job"] is not None
    # 4. The reaper protects what the scaler has not seen yet.
    admin_asg.set_instance_protection(
        AutoScalingGroupName=ASG_NAME, InstanceIds=[busy[0]], ProtectedFromScaleIn=False
    )
    fleet.scheduled("reaper")
    assert all(i["ProtectedFromScaleIn"] for i in fleet.aws.group()["Instances"])
    # 5. The spot instance is reclaimed; its job fails; the reaper has it re-run.
    fleet.aws.kill_instance(busy[1])
    job = next(j for j in fleet.github.jobs.values() if fleet.job_runner.get(j.id) == busy[1])
    fleet.finish_jobs([job], conclusion="failure", runner_lost=True)
    fleet.step(finish=False, reaper=True)
    assert fleet.github.reruns == [job.id]
    # 6. An instance that never registers, and one that dies before it boots whose
    #    terminate event is lost (its JIT parameter is left behind).
    fleet.finish_jobs()
    fleet.run_until(fleet.settled, max_steps=15)
    fleet.never_register.add("*")  # the next instances never start their agent
    stuck = fleet.queue_jobs(1)[0]
    fleet.pump_queue()
    fleet.asg_tick()
    (first,) = [s.instance.id for s in fleet.aws.group_states()]
    fleet.never_register.add(first)
    fleet.instance_reports_outdated_agent(first)  # why it never registers: its agent exited 7
    fleet.never_register.discard("*")
    fleet.clock.advance(11 * 60)
    fleet.scheduled("reaper")
    assert fleet.results[-1][1]["terminated_offline"] == [first]
    fleet.asg_tick()
    (second,) = [s.instance.id for s in fleet.aws.group_states()]
    fleet.lost_terminate_events.add(second)
    fleet.aws.kill_instance(second)
    fleet.asg_tick()
    # 7. Capacity was lowered behind the scaler's back while the job waits too long: the
    #    reaper raises it again and cleans the leftover parameter.
    admin_asg.set_desired_capacity(AutoScalingGroupName=ASG_NAME, DesiredCapacity=0)
    for state in fleet.aws.group_states():
        admin_asg.terminate_instance_in_auto_scaling_group(
            InstanceId=state.instance.id, ShouldDecrementDesiredCapacity=True
        )
    fleet.clock.advance(16 * 60)
    fleet.scheduled("reaper")
    report = fleet.results[-1][1]
    assert report["queued_too_long"] == [stuck.id]
    assert second in report["parameters_deleted"]
    assert fleet.aws.group()["DesiredCapacity"] == 1
    # 8. AWS degraded for long: scheduled scaler and reaper runs fail every retry and land in
    #    the dead-letter queue with the functions' own roles; so does a lifecycle event.
    throttle.rate = 1.0
    throttle.operations = {
        "scaler/dynamodb.Query",
        "reaper/dynamodb.Query",
        "lifecycle/ssm.PutParameter",
    }
    fleet.scheduled("scaler")
    fleet.scheduled("reaper")
    fleet.asg_tick()
    for _ in range(2):
        fleet.retry_async()
    assert {e.function for e in fleet.dead_lettered} == {"scaler", "reaper", "lifecycle"}
    throttle.rate = 0.0
    fleet.run_until(fleet.settled, max_steps=30, reaper=True)

    enforcer = fleet.aws.enforcer
    unexpected = [c for c in enforcer.denied() if c.principal != "user/admin"]
    assert unexpected == []
    policies = {f"role/main-{fn}": doc for fn, doc in fleet.aws.policies.items()}
    policies["role/main-instance"] = fleet.aws.instance_policy
    unused = {}
    for principal, policy in policies.items():
        granted = set(allow_statements(policy))
        used = enforcer.used(principal)
        missing = sorted(g for g in granted - used if g not in NOT_EXERCISABLE)
        if missing:
            unused[principal] = missing
    assert unused == {}, f"granted but never used: {unused}"
    # The exemptions are KMS use through AWS services, log writes and tag authorization only.
    assert {action.split(":")[0] for _, action in NOT_EXERCISABLE} == {"logs", "kms", "ssm"}
    assert fleet.killed_busy == []


def test_scale_set_mode_grants_only_what_the_tour_above_proves_used_and_the_session_parameter():
    """githubMode scaleSet runs the same code with fewer AWS resources: its lifecycle and
    reaper functions are webhook mode's, and its listener runs the scaler's cycle
    (``scaler.run_cycle``) inside a long poll. So every statement of its documents must be
    one webhook mode grants to the function whose code it runs (each of those is proven used
    by the tour above), with two exceptions: the listener's own log group, and the SSM
    parameter where it remembers its session, whose two actions
    test_scaleset_listener_aws.py proves used (and nothing else allowed on it)."""
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}".format
    webhook = control_plane_resources(
        "webhook",
        kms_key_arn=arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        dead_letter_queue_arn=arn("sqs", f"{ASG_NAME}-dead-letters"),
        queue_arn=arn("sqs", f"{ASG_NAME}-deliveries"),
        table_arn=arn("dynamodb", f"table/{ASG_NAME}-ledger"),
    )
    scale_set = control_plane_resources(
        SCALE_SET_MODE,
        kms_key_arn=webhook.kms_key_arn,
        dead_letter_queue_arn=webhook.dead_letter_queue_arn,
    )
    granted = function_policies(webhook)
    documents = function_policies(scale_set)
    assert set(documents) == {"lifecycle", "reaper", "listener"}
    runs_the_code_of = {"lifecycle": "lifecycle", "reaper": "reaper", "listener": "scaler"}
    extra: dict[str, list[str]] = {}
    for function, document in documents.items():
        known = {
            json.dumps(s, sort_keys=True) for s in granted[runs_the_code_of[function]]["Statement"]
        }
        extra[function] = sorted(
            s["Sid"] for s in document["Statement"] if json.dumps(s, sort_keys=True) not in known
        )
    assert extra == {
        "lifecycle": [],
        "reaper": [],
        "listener": ["RememberListenerSession", "WriteOwnLogs"],
    }
    (logs,) = [s for s in documents["listener"]["Statement"] if s["Sid"] == "WriteOwnLogs"]
    assert logs["Resource"].endswith(
        f"log-group:/aws/lambda/{SCALE_SET_FUNCTION_NAMES['listener']}:*"
    )
    (session,) = [
        s for s in documents["listener"]["Statement"] if s["Sid"] == "RememberListenerSession"
    ]
    assert sorted(session["Action"]) == ["ssm:GetParameter", "ssm:PutParameter"]
    assert session["Resource"].endswith(f"parameter{LISTENER_SESSION_PARAMETER}")
