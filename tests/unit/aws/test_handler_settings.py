"""The functions' settings: environment in, a validated object out, every problem named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleet.aws.handlers.settings import VARIABLES, Settings, SettingsError

pytestmark = pytest.mark.unit

ENV = {
    "FLEET_NAME": "main",
    "FLEET_GITHUB_SCOPE": "acme",
    "FLEET_RUNNER_LABELS": "self-hosted, linux,dind",
    "FLEET_APP_ID_PARAMETER": "/runner-fleet/main/github-app/app-id",
    "FLEET_APP_PRIVATE_KEY_PARAMETER": "/runner-fleet/main/github-app/private-key",
    "FLEET_WEBHOOK_SECRET_PARAMETER": "/runner-fleet/main/github-app/webhook-secret",
    "FLEET_ASG_NAME": "runner-fleet-main",
    "FLEET_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/0f0e0d0c-1111",
    "FLEET_JIT_PARAMETER_TEMPLATE": "/runner-fleet/main/runners/{instance_id}/jitconfig",
    "FLEET_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
    "FLEET_LEDGER_TABLE": "runner-fleet-main-ledger",
    "FLEET_AWS_ACCOUNT_ID": "123456789012",
    "FLEET_MAX_SIZE": "10",
    "AWS_REGION": "eu-west-1",
}
SCALE_SET = {
    "FLEET_GITHUB_MODE": "scaleSet",
    "FLEET_LISTENER_SESSION_PARAMETER": "/runner-fleet/main/listener/session",
}


def test_a_complete_environment_gives_typed_settings_with_defaults():
    settings = Settings.from_env(ENV)
    assert settings.runner_labels == ("self-hosted", "linux", "dind")
    assert settings.scope.org == "acme"
    assert settings.limits.max_size == 10
    assert settings.limits.boot_deadline == timedelta(minutes=20)
    assert settings.github_api_url == "https://api.github.com"
    assert settings.allow_public_repositories is False
    assert settings.instance_arn("i-0abc") == ("arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc")


def test_repository_scope():
    settings = Settings.from_env({**ENV, "FLEET_GITHUB_SCOPE": "acme/app"})
    assert settings.scope.repository == "acme/app"
    assert settings.owner == "acme"


def test_every_problem_is_reported_at_once_with_its_variable():
    env = {
        **ENV,
        "FLEET_MAX_SIZE": "lots",
        "FLEET_JIT_PARAMETER_TEMPLATE": "/runner-fleet/main/runners/jitconfig",
        "FLEET_KMS_KEY_ARN": "alias/aws/ssm",
        "FLEET_ALLOW_PUBLIC_REPOSITORIES": "maybe",
    }
    del env["FLEET_QUEUE_URL"]
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    names = [name for name, _ in caught.value.problems]
    # In the documented order of the variables (VARIABLES), each once.
    assert names == [
        "FLEET_ALLOW_PUBLIC_REPOSITORIES",
        "FLEET_KMS_KEY_ARN",
        "FLEET_JIT_PARAMETER_TEMPLATE",
        "FLEET_QUEUE_URL",
        "FLEET_MAX_SIZE",
    ]
    assert names == [name for name in VARIABLES if name in names]
    text = str(caught.value)
    assert "FLEET_QUEUE_URL: is not set (SQS queue of webhook deliveries)" in text
    assert "infra/control_plane.py" in text


def test_inconsistent_limits_are_refused():
    with pytest.raises(SettingsError, match="max_size must be >= 1 and >= min_size"):
        Settings.from_env({**ENV, "FLEET_MIN_SIZE": "12"})
    with pytest.raises(SettingsError, match="FLEET_NAME"):
        Settings.from_env({**ENV, "FLEET_NAME": "Main Fleet"})
    with pytest.raises(SettingsError, match="FLEET_GITHUB_SCOPE"):
        Settings.from_env({**ENV, "FLEET_GITHUB_SCOPE": "https://github.com/acme"})


def test_the_functions_default_to_what_the_stack_defaults_to():
    """One model: a variable the program leaves out means what the stack setting's default
    means (fleet/core/config: the stack model and the functions' settings share the types)."""
    from fleet.core.config.stack import FleetConfig

    stack = FleetConfig.model_fields
    functions = Settings.model_fields
    pairs = {
        "boot_deadline_minutes": "registration_timeout_minutes",
        "max_lifetime_minutes": "max_runner_lifetime_minutes",
        "job_timeout_minutes": "job_timeout_minutes",
        "min_size": "min_size",
        "warm_idle": "warm_idle",
        "runner_group": "runner_group",
        "allow_public_repositories": "runner_group_allows_public_repositories",
        "github_mode": "github_mode",
    }
    for function_field, stack_field in pairs.items():
        assert functions[function_field].default == stack[stack_field].default, function_field
        # ...and refuses what the stack refuses: the same bounds.
        assert functions[function_field].metadata == stack[stack_field].metadata, function_field


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "FLEET_LEDGER_TABLE",
            "ab",
            "the DynamoDB table name 'ab' is 2 characters; AWS allows 3-255",
        ),
        ("FLEET_ASG_NAME", "g" * 256, "AWS allows 1-255"),
        ("FLEET_APP_ID_PARAMETER", "/aws/app-id", "starts with 'aws' or 'ssm', which SSM reserves"),
        ("FLEET_JIT_PARAMETER_TEMPLATE", "/f/" + "x/" * 14 + "{instance_id}", "SSM allows 15"),
        ("FLEET_RUNNER_LABELS", "linux,Linux", "case-insensitively"),
        ("FLEET_BOOT_DEADLINE_MINUTES", "2", "2 is outside 5-120"),
        ("FLEET_GITHUB_MODE", "poll", "'poll' is not one of webhook, scaleSet"),
        ("FLEET_GITHUB_MODE", "scaleset", "case-sensitive; did you mean scaleSet?"),
        ("FLEET_SCALE_SET_NAME", "-fleet", "not a valid scale set name"),
        ("FLEET_SCALE_SET_NAME", "s" * 65, "1-64 letters"),
        ("FLEET_SCALE_SET_NAME", "my fleet", "runs-on"),
    ],
)
def test_names_and_numbers_aws_or_the_stack_would_refuse_are_refused(variable, value, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**ENV, variable: value})
    assert [name for name, _ in caught.value.problems] == [variable]
    assert message in caught.value.problems[0][1]


def test_webhook_mode_is_the_default_and_the_scale_set_is_named_after_the_fleet():
    settings = Settings.from_env(ENV)
    assert (settings.github_mode, settings.scale_set) == ("webhook", False)
    assert settings.scale_set_name == "main"
    scale_set = Settings.from_env({**ENV, **SCALE_SET})
    assert (scale_set.github_mode, scale_set.scale_set) == ("scaleSet", True)
    assert scale_set.scale_set_name == "main"
    assert scale_set.listener_session_parameter == "/runner-fleet/main/listener/session"
    named = Settings.from_env({**ENV, **SCALE_SET, "FLEET_SCALE_SET_NAME": " linux-x64.big "})
    assert named.scale_set_name == "linux-x64.big"


def test_scale_set_mode_needs_the_listeners_session_parameter():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**ENV, "FLEET_GITHUB_MODE": "scaleSet"})
    ((name, message),) = caught.value.problems
    assert name == "FLEET_LISTENER_SESSION_PARAMETER"
    assert message.startswith("is not set (") and "remembers its open session" in message
    with pytest.raises(SettingsError, match="FLEET_LISTENER_SESSION_PARAMETER"):
        Settings.from_env({**ENV, **SCALE_SET, "FLEET_LISTENER_SESSION_PARAMETER": "no/slash"})


def test_scale_set_mode_needs_no_webhook_secret_queue_or_ledger():
    webhook_only = ("FLEET_WEBHOOK_SECRET_PARAMETER", "FLEET_QUEUE_URL", "FLEET_LEDGER_TABLE")
    env = {k: v for k, v in ENV.items() if k not in webhook_only}
    settings = Settings.from_env({**env, **SCALE_SET})
    assert (settings.queue_url, settings.ledger_table, settings.webhook_secret_parameter) == (
        None,
        None,
        None,
    )
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)  # webhook mode: all three are named
    assert [name for name, _ in caught.value.problems] == list(webhook_only)
