"""``githubMode: scaleSet`` under mocks: a listener function (one concurrent execution, the
scaler's permissions without queue and ledger on its own log group, its session parameter,
started every minute, stale ticks dropped) in place of the webhook function and its public
URL; no scaler function, no webhook secret, deliveries queue, ledger or queued-too-long alarm;
the functions told the mode. Webhook mode (the default) is what it was (its whole graph was
compared before and after)."""

from __future__ import annotations

import json

import pytest
from infra_mocks import ACCOUNT, REGION, SECRETS

from infra.config import parse_config, secret_problems
from infra.iam_functions import ControlPlaneResources, function_policies

pytestmark = pytest.mark.unit

FUNCTION = "aws:lambda/function:Function"


@pytest.fixture
def scale_set_graph(shared_graph):
    return shared_graph({"githubMode": "scaleSet", "imagePipeline": False})


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


def test_the_listener_policy_is_the_scalers_without_queue_and_ledger_on_its_own_log_group(
    scale_set_graph, default_graph
):
    def policies(graph) -> dict[str, dict]:
        return {
            r.name: json.loads(r.inputs["policy"])
            for r in graph.of_type("aws:iam/rolePolicy:RolePolicy")
        }

    listener = next(v for k, v in policies(scale_set_graph).items() if "listener" in k)
    scaler = next(v for k, v in policies(default_graph).items() if k.endswith("scaler-policy"))
    sids = {s["Sid"] for s in listener["Statement"]}
    webhook_only = {"ConsumeDeliveries", "ReadWriteLedger", "QueryOpenJobs"}
    assert sids == {s["Sid"] for s in scaler["Statement"]} - webhook_only | {
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


WEBHOOK_LEFTOVERS = ("webhook-secret", "deliveries", "ledger", "jobs-queued-too-long")


def test_scale_set_mode_creates_no_webhook_leftovers(scale_set_graph):
    """No webhook secret parameter, no deliveries queue, no ledger table, no scaler function
    (nothing would start it) and no queued-too-long alarm (nothing emits its metric)."""
    assert scale_set_graph.of_type("aws:dynamodb/table:Table") == []
    assert scale_set_graph.of_type("aws:lambda/eventSourceMapping:EventSourceMapping") == []
    queues = [r.inputs["name"] for r in scale_set_graph.of_type("aws:sqs/queue:Queue")]
    assert queues == ["runner-fleet-main-dead-letters"]  # failed events and invocations
    parameters = [r.inputs["name"] for r in scale_set_graph.of_type("aws:ssm/parameter:Parameter")]
    assert not any("webhook" in name for name in parameters)
    assert set(functions(scale_set_graph)) == {
        "runner-fleet-main-listener",
        "runner-fleet-main-lifecycle",
        "runner-fleet-main-reaper",
    }
    alarms = [
        r.inputs["name"] for r in scale_set_graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    ]
    assert "runner-fleet-main-dead-letters-not-empty" in alarms
    assert not any("queued-too-long" in name for name in alarms)
    outputs = scale_set_graph.outputs
    assert (outputs["deliveryQueueUrl"], outputs["ledgerTable"]) == (None, None)
    assert set(outputs["githubAppParameterNames"]) == {"app_id", "private_key"}


def test_no_policy_or_environment_names_a_webhook_leftover(scale_set_graph):
    policies = [
        r.inputs["policy"] for r in scale_set_graph.of_type("aws:iam/rolePolicy:RolePolicy")
    ]
    assert policies
    for document in policies:
        assert not any(word in document for word in WEBHOOK_LEFTOVERS), document
        assert "dynamodb:" not in document
    webhook_only = {"FLEET_WEBHOOK_SECRET_PARAMETER", "FLEET_QUEUE_URL", "FLEET_LEDGER_TABLE"}
    for name, inputs in functions(scale_set_graph).items():
        assert not webhook_only & set(inputs["environment"]["variables"]), name


def test_webhook_mode_keeps_its_secret_queue_ledger_and_scaler(default_graph):
    assert len(default_graph.of_type("aws:dynamodb/table:Table")) == 1
    queues = {r.inputs["name"] for r in default_graph.of_type("aws:sqs/queue:Queue")}
    assert queues == {
        "runner-fleet-main-deliveries",
        "runner-fleet-main-dead-letters",
        "runner-fleet-main-bake-dead-letters",  # the image pipeline's bake triggers
    }
    parameters = {r.inputs["name"] for r in default_graph.of_type("aws:ssm/parameter:Parameter")}
    assert "/runner-fleet/main/github-app/webhook-secret" in parameters
    assert "runner-fleet-main-scaler" in functions(default_graph)


def test_a_webhook_secret_set_in_scale_set_mode_is_refused_naming_config_rm(build_graph):
    with pytest.raises(ValueError) as error:
        build_graph(
            {"githubMode": "scaleSet", "imagePipeline": False},
            secrets=dict(SECRETS),
        )
    text = str(error.value)
    assert "githubWebhookSecret" in text and "pulumi config rm githubWebhookSecret" in text


def test_webhook_mode_still_requires_the_webhook_secret(build_graph):
    secrets = {k: v for k, v in SECRETS.items() if k != "githubWebhookSecret"}
    with pytest.raises(ValueError, match="githubWebhookSecret: is required"):
        build_graph({}, secrets=secrets)


@pytest.mark.parametrize(
    ("mode", "given", "expected"),
    [
        ("scaleSet", {"githubAppId": True, "githubAppPrivateKey": True}, []),
        (
            "scaleSet",
            {"githubAppId": True, "githubAppPrivateKey": True, "githubWebhookSecret": True},
            ["githubWebhookSecret"],
        ),
        ("webhook", {"githubAppId": True, "githubAppPrivateKey": True}, ["githubWebhookSecret"]),
        (None, {"githubAppId": True, "githubAppPrivateKey": False}, None),
        ("scaleSet", {}, ["githubAppId", "githubAppPrivateKey"]),
    ],
)
def test_secret_problems_follow_the_mode(mode, given, expected):
    problems = secret_problems(mode, given)
    if mode is None:  # the default mode (webhook): the secret is required, the key plain text
        expected = ["githubAppPrivateKey", "githubWebhookSecret"]
    assert [key for key, _ in problems] == expected
