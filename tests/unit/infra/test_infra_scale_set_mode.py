"""``githubMode: scaleSet`` under mocks: a listener function (one concurrent execution, the
scaler's permissions on its own log group, started every minute, stale ticks dropped) in
place of the webhook function and its public URL; the scaler no longer on a schedule; the
functions told the mode. Webhook mode (the default) is what it was."""

from __future__ import annotations

import json

import pytest
from infra_mocks import ACCOUNT, REGION

from infra.config import parse_config
from infra.iam_functions import ControlPlaneResources, function_policies

pytestmark = pytest.mark.unit

FUNCTION = "aws:lambda/function:Function"


@pytest.fixture
def scale_set_graph(build_graph):
    return build_graph({"githubMode": "scaleSet", "imagePipeline": False})


def functions(graph) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in graph.of_type(FUNCTION)}


def test_the_listener_replaces_the_webhook_and_its_public_url(scale_set_graph):
    found = functions(scale_set_graph)
    assert "runner-fleet-main-webhook" not in found
    listener = found["runner-fleet-main-listener"]
    assert listener["reservedConcurrentExecutions"] == 1
    assert listener["timeout"] == 900
    assert listener["handler"] == "fleet.aws.handlers.listener.handler"
    assert listener["environment"]["variables"]["FLEET_GITHUB_MODE"] == "scaleSet"
    assert scale_set_graph.of_type("aws:lambda/functionUrl:FunctionUrl") == []
    assert scale_set_graph.outputs["webhookUrl"] is None
    urls = [
        r
        for r in scale_set_graph.of_type("aws:lambda/permission:Permission")
        if r.inputs.get("functionUrlAuthType") or r.inputs.get("principal") == "*"
    ]
    assert urls == []


def test_the_listener_runs_every_minute_and_stale_ticks_are_dropped(scale_set_graph):
    rules = {
        r.name: r.inputs for r in scale_set_graph.of_type("aws:cloudwatch/eventRule:EventRule")
    }
    schedules = {n: r["scheduleExpression"] for n, r in rules.items() if "scheduleExpression" in r}
    assert any(n.endswith("listener-schedule") for n in schedules)
    assert not any(n.endswith("scaler-schedule") for n in schedules)
    target = next(
        r.inputs
        for r in scale_set_graph.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if r.name.endswith("listener-schedule-target")
    )
    assert target["retryPolicy"] == {"maximumEventAgeInSeconds": 60, "maximumRetryAttempts": 0}
    invoke = next(
        r.inputs
        for r in scale_set_graph.of_type(
            "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
        )
        if r.name.endswith("listener-async")
    )
    assert (invoke["maximumRetryAttempts"], invoke["maximumEventAgeInSeconds"]) == (0, 60)


def test_the_listener_policy_is_the_scalers_on_its_own_log_group(scale_set_graph):
    policies = {
        r.name: json.loads(r.inputs["policy"])
        for r in scale_set_graph.of_type("aws:iam/rolePolicy:RolePolicy")
        if "listener" in r.name or r.name.endswith("scaler-policy")
    }
    listener = next(v for k, v in policies.items() if "listener" in k)
    scaler = next(v for k, v in policies.items() if k.endswith("scaler-policy"))
    sids = {s["Sid"] for s in listener["Statement"]}
    assert sids == {s["Sid"] for s in scaler["Statement"]} - {"ConsumeDeliveries"} | {
        "RememberListenerSession"
    }
    logs = next(s for s in listener["Statement"] if s["Sid"] == "WriteOwnLogs")
    assert logs["Resource"].endswith("/aws/lambda/runner-fleet-main-listener:*")


SESSION_PARAMETER = "/runner-fleet/main/listener/session"


def test_the_listener_remembers_its_session_in_one_string_parameter_of_the_stack(
    scale_set_graph,
):
    parameters = {
        r.inputs["name"]: r for r in scale_set_graph.of_type("aws:ssm/parameter:Parameter")
    }
    session = parameters[SESSION_PARAMETER]
    value = session.inputs["value"]  # pulumi_aws keeps any parameter value secret in the state
    assert (session.inputs["type"], value.get("value", value)) == ("String", "{}")
    assert "keyId" not in session.inputs  # not a secret: no key, no decrypt grant needed
    registration = scale_set_graph.registration("aws:ssm/parameter:Parameter", session.name)
    assert registration.ignore_changes == ("value",)  # the listener writes it
    env = functions(scale_set_graph)["runner-fleet-main-listener"]["environment"]["variables"]
    assert env["FLEET_LISTENER_SESSION_PARAMETER"] == SESSION_PARAMETER


def test_only_the_listener_may_read_and_write_it_and_only_that_parameter(scale_set_graph):
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{SESSION_PARAMETER}"
    policies = {
        r.name: json.loads(r.inputs["policy"])
        for r in scale_set_graph.of_type("aws:iam/rolePolicy:RolePolicy")
    }
    naming = {
        name: [s for s in doc["Statement"] if SESSION_PARAMETER in json.dumps(s["Resource"])]
        for name, doc in policies.items()
    }
    holders = {name: found for name, found in naming.items() if found}
    assert list(holders) == [next(n for n in policies if "listener" in n)]
    ((statement,),) = holders.values()
    assert statement == {
        "Sid": "RememberListenerSession",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter", "ssm:PutParameter"],
        "Resource": arn,
    }


def test_webhook_mode_has_no_session_parameter(default_graph):
    names = [r.inputs["name"] for r in default_graph.of_type("aws:ssm/parameter:Parameter")]
    assert not any("listener" in n for n in names)
    env = functions(default_graph)["runner-fleet-main-scaler"]["environment"]["variables"]
    assert "FLEET_LISTENER_SESSION_PARAMETER" not in env


def test_webhook_mode_is_the_default_and_has_no_listener(default_graph):
    found = functions(default_graph)
    assert "runner-fleet-main-webhook" in found and "runner-fleet-main-listener" not in found
    assert default_graph.outputs["webhookUrl"]
    env = found["runner-fleet-main-scaler"]["environment"]["variables"]
    assert env["FLEET_GITHUB_MODE"] == "webhook"


def test_a_bad_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="githubMode") as error:
        parse_config({"githubScope": "my-org", "githubMode": "poll"})
    assert "scaleSet" in str(error.value)


def test_no_listener_policy_without_a_listener():
    resources = ControlPlaneResources(
        partition="aws",
        region=REGION,
        account_id=ACCOUNT,
        fleet_name="main",
        asg_name="g",
        parameter_root="/r",
        kms_key_arn="k",
        queue_arn="q",
        dead_letter_queue_arn="d",
        table_arn="t",
        metrics_namespace="RunnerFleet",
        github_app_parameter_names={"app_id": "/a", "private_key": "/b", "webhook_secret": "/c"},
        function_names={"webhook": "w", "scaler": "s", "lifecycle": "l", "reaper": "r"},
    )
    assert "listener" not in function_policies(resources)
