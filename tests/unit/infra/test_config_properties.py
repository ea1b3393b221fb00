"""The one config model, property-tested over the config space (hypothesis).

- Accepted configs yield only names AWS accepts: every explicit name, every SSM parameter,
  every autonamed logical name (with Pulumi's suffix) and every tag, judged by the rules of
  tests/unit/infra/test_infra_names.py (written from the API references, not from the model),
  in either githubMode (scaleSet: the listener's function, log group, role and schedule).
- A config whose derived names AWS would refuse is refused, naming the setting to change
  (ssmParameterPrefix), the kind of name, AWS's limit and the `pulumi config set` that fixes it.
- Tags are accepted exactly when every tagging service accepts them.
- The three users agree: what the stack accepts, the functions accept from the environment the
  program writes; a GitHub scope is accepted by the stack, the functions and the local fleet
  alike.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_infra_names import (
    LONG_KMS_KEY_ARN,
    LONG_QUEUE_URL,
    assert_aws_accepts_everything,
    aws_refuses,
    tag_refused,
    worst_case_environment,
)

from fleet.aws.handlers.settings import Settings, SettingsError
from fleet.core.config.names import ResourceNames, name_problems
from fleet.core.config.rules import AUTONAME_SUFFIX
from fleet.errors import FleetError
from fleet.local.registration import load_settings
from infra.config import ConfigError, FleetConfig, parse_config
from infra.control_plane import function_environment
from infra.fleet import control_plane_args

pytestmark = pytest.mark.unit

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Autonamed logical names, judged as AWS judges the name Pulumi makes (logical + 8).
AUTONAMED_AWS_RULES = {
    "iam_role": (r"[\w+=,.@-]+", 64),
    "instance_profile": (r"[\w+=,.@-]+", 128),
    "event_rule": (r"[\.\-_A-Za-z0-9]+", 64),
    "bucket": (r"[a-z0-9][a-z0-9.-]*[a-z0-9]", 63),
}

# Each name below is drawn from its parts, not with st.from_regex: the same language (the
# pattern is in the comment), but drawing from a regex took most of these tests' time.
LOWER, DIGITS = string.ascii_lowercase, string.digits
ALNUM = string.ascii_letters + string.digits


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


# [a-z][a-z0-9-]{0,22}[a-z0-9]
fleet_names = _joined(
    st.sampled_from(LOWER),
    st.text(LOWER + DIGITS + "-", max_size=22),
    st.sampled_from(LOWER + DIGITS),
)
segments = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=20)
prefixes = (
    st.lists(segments, min_size=1, max_size=12)
    .map("/".join)
    .filter(lambda p: not p.lower().startswith(("aws", "ssm")))
)
labels = st.lists(
    _joined(
        st.sampled_from(ALNUM), st.text(ALNUM + "._-", max_size=30)
    ),  # [A-Za-z0-9][A-Za-z0-9._-]{0,30}
    min_size=1,
    max_size=20,
    unique_by=str.lower,
)
scopes = st.one_of(
    # [A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}: no "--", no "-" at the end
    _joined(st.sampled_from(ALNUM), st.text(ALNUM + "-", max_size=38)).filter(
        lambda scope: "--" not in scope and not scope.endswith("-")
    ),
    st.builds(
        "{}/{}".format,
        st.text(ALNUM, min_size=1, max_size=39),  # [A-Za-z0-9]{1,39}
        # [A-Za-z0-9_-][A-Za-z0-9._-]{0,99}
        _joined(st.sampled_from(ALNUM + "_-"), st.text(ALNUM + "._-", max_size=99)),
    ),
)
_tag_chars = st.text(alphabet=list("aZ09 _.:/=+-@#é字\u00a0\t!"), max_size=20)
tag_text = st.one_of(_tag_chars, _tag_chars.map("aws:{}".format), _tag_chars.map("AWS:{}".format))
# Well-formed settings of every kind; only their combination can be refused.
configs = st.fixed_dictionaries(
    {"githubScope": scopes},
    optional={
        "fleetName": fleet_names,
        "ssmParameterPrefix": prefixes,
        "runnerLabels": labels,
        "architecture": st.sampled_from(["x86_64", "arm64"]),
        "imagePipeline": st.booleans(),
        "maxSize": st.integers(1, 1000),
        "githubMode": st.sampled_from(["webhook", "scaleSet"]),
        "tags": st.dictionaries(
            # [A-Za-z][A-Za-z0-9 _.:/=+@-]{0,40}
            _joined(
                st.sampled_from(string.ascii_letters), st.text(ALNUM + " _.:/=+@-", max_size=40)
            ).filter(lambda k: not k.lower().startswith("aws:") and k not in ("runner-fleet",)),
            # [A-Za-z0-9 _.:/=+@-]{0,60}
            st.text(ALNUM + " _.:/=+@-", max_size=60).filter(
                lambda v: not v.lower().startswith("aws:")
            ),
            max_size=5,
        ),
    },
)


def assert_autonamed_fit(cfg: FleetConfig) -> None:
    for rule, logical in cfg.names.autonamed():
        pattern, limit = AUTONAMED_AWS_RULES[rule]
        assert len(logical) + AUTONAME_SUFFIX <= limit, (rule, logical)
        assert re.fullmatch(pattern, logical + "-abc1234"), (rule, logical)


@PROPERTY
@given(raw=configs)
def test_well_formed_settings_are_accepted_with_legal_names_or_refused_on_the_prefix(raw):
    try:
        cfg = parse_config(raw)
    except ConfigError as error:
        # Each setting is well formed: only the names they make together can be refused, and
        # then the prefix carries it, with AWS's rule and the command that fixes it.
        assert {key for key, _ in error.problems} == {"ssmParameterPrefix"}, error.problems
        for _, message in error.problems:
            assert "AWS allows" in message or "SSM allows" in message, message
            assert "ssmParameterPrefix" in message.split(":", 1)[1]
        return
    assert_aws_accepts_everything(cfg)
    assert_autonamed_fit(cfg)


@PROPERTY
@given(fleet=fleet_names, extra=st.integers(1, 300))
def test_a_prefix_too_long_for_a_name_aws_takes_is_refused_naming_the_limit(fleet, extra):
    # The longest explicit name is <prefix>-<fleet>-lifecycle (Lambda: 64 characters).
    longest = len("-") + len(fleet) + len("-lifecycle")
    prefix = "p" * (64 - longest + extra)
    with pytest.raises(ConfigError) as raised:
        parse_config({"githubScope": "my-org", "fleetName": fleet, "ssmParameterPrefix": prefix})
    assert {key for key, _ in raised.value.problems} == {"ssmParameterPrefix"}
    (message,) = [m for _, m in raised.value.problems if "Lambda function name" in m]
    assert "AWS allows 1-64" in message
    assert f"by at least {extra} character" in message
    assert "pulumi config set ssmParameterPrefix" in message
    assert f"{NAMESPACE_KEY}: with fleetName {fleet!r}" in str(raised.value)


NAMESPACE_KEY = "runner-fleet:ssmParameterPrefix"


@PROPERTY
@given(fleet=fleet_names, prefix=prefixes, mode=st.sampled_from(["webhook", "scaleSet"]))
def test_the_listener_function_is_named_and_checked_exactly_in_scale_set_mode(fleet, prefix, mode):
    names = ResourceNames.for_fleet(fleet, prefix, github_mode=mode)
    listener = names.function("listener")
    checked = names.every_name()
    assert (("function", listener) in checked) == (mode == "scaleSet")
    assert (("function", names.function("webhook")) in checked) == (mode == "webhook")
    assert (("log_group", names.log_group("listener")) in checked) == (mode == "scaleSet")
    autonamed = names.autonamed()
    assert (("event_rule", f"{fleet}-control-plane-listener-schedule") in autonamed) == (
        mode == "scaleSet"
    )
    assert (("event_rule", f"{fleet}-control-plane-scaler-schedule") in autonamed) == (
        mode == "webhook"
    )
    # A listener name Lambda refuses (over 64 characters) is a problem of these names.
    refused = {name for _, name, _ in name_problems(names)}
    if mode == "scaleSet":
        assert (listener in refused) == (len(listener) > 64), listener
    else:
        assert listener not in refused


@PROPERTY
@given(fleet=fleet_names, extra=st.integers(1, 300))
def test_a_prefix_too_long_for_the_listener_is_refused_naming_the_limit(fleet, extra):
    # <prefix>-<fleet>-listener is one character shorter than <prefix>-<fleet>-lifecycle: the
    # fix the message gives (shorten by the lifecycle name's excess) makes both fit.
    prefix = "p" * (64 - len(f"-{fleet}-listener") + extra)
    raw = {"githubScope": "my-org", "fleetName": fleet, "ssmParameterPrefix": prefix}
    with pytest.raises(ConfigError) as raised:
        parse_config({**raw, "githubMode": "scaleSet"})
    (message,) = [m for _, m in raised.value.problems if "Lambda function name" in m]
    assert "AWS allows 1-64" in message
    assert f"by at least {extra + 1} character" in message
    shorter = {**raw, "ssmParameterPrefix": prefix[: len(prefix) - extra - 1]}
    fixed = parse_config({**shorter, "githubMode": "scaleSet"})
    assert not aws_refuses("function", fixed.names.function("listener"))


@PROPERTY
@given(
    mode=st.text(alphabet=string.ascii_letters + "-_ ", max_size=12).filter(
        lambda m: m.strip() not in ("", "webhook", "scaleSet")
    )
)
def test_a_github_mode_other_than_the_two_is_refused_with_the_fix(mode):
    with pytest.raises(ConfigError) as raised:
        parse_config({"githubScope": "my-org", "githubMode": mode})
    assert [key for key, _ in raised.value.problems] == ["githubMode"]
    assert "pulumi config set githubMode webhook|scaleSet" in str(raised.value)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**program_environment(), "FLEET_GITHUB_MODE": mode})
    assert [key for key, _ in refused.value.problems] == ["FLEET_GITHUB_MODE"]


@PROPERTY
@given(tags=st.dictionaries(tag_text.filter(bool), tag_text, min_size=1, max_size=3))
def test_tags_are_accepted_exactly_when_every_tagging_service_accepts_them(tags):
    assume("runner-fleet" not in tags)
    aws_ok = not any(tag_refused(key, value) for key, value in tags.items())
    try:
        cfg = parse_config({"githubScope": "my-org", "tags": tags})
    except ConfigError as error:
        assert not aws_ok, error.problems
        assert {key for key, _ in error.problems} == {"tags"}
        assert all("pulumi config set --path 'tags." in m for _, m in error.problems)
        return
    assert aws_ok
    assert all(not tag_refused(k, v) for k, v in cfg.all_tags.items())


@PROPERTY
@given(raw=configs)
def test_the_functions_accept_the_environment_the_program_writes_for_any_accepted_config(raw):
    try:
        cfg = parse_config(raw)
    except ConfigError:
        assume(False)
        return
    environment = worst_case_environment(cfg)
    functions = Settings.from_env({**environment, "AWS_REGION": "ap-southeast-7"})
    assert functions.runner_labels == cfg.runner_labels
    assert functions.asg_name == cfg.asg_name
    assert functions.limits.max_size == cfg.max_size
    assert functions.jit_parameter_template == cfg.jit_parameter_template
    if cfg.scale_set:  # no ledger, no deliveries queue, no webhook secret in this mode
        assert (functions.ledger_table, functions.queue_url) == (None, None)
        assert functions.webhook_secret_parameter is None
        assert functions.listener_session_parameter == cfg.names.listener_session_parameter
    else:
        assert not aws_refuses("table", functions.ledger_table)
    # The mode reaches the functions, and the scale set is the one jobs name: the fleet's name.
    assert (functions.github_mode, functions.scale_set) == (cfg.github_mode, cfg.scale_set)
    assert functions.scale_set_name == cfg.fleet_name


def program_environment() -> dict[str, str]:
    """The functions' environment the program writes for the stack {githubScope: acme}."""
    environment = function_environment(
        control_plane_args(
            parse_config({"githubScope": "acme"}),
            kms_key_arn=LONG_KMS_KEY_ARN,
            partition="aws",
            region="eu-west-1",
            account_id="123456789012",
        ),
        asg_name="runner-fleet-main",
        kms_key_arn=LONG_KMS_KEY_ARN,
        queue_url=LONG_QUEUE_URL.format(name="q"),
        ledger_table="runner-fleet-main-ledger",
        partition="aws",
        account_id="123456789012",
    )
    return {**environment, "AWS_REGION": "eu-west-1"}


def _accepted_by_the_stack(scope: str) -> bool:
    try:
        parse_config({"githubScope": scope})
    except ConfigError as error:
        assert {key for key, _ in error.problems} == {"githubScope"}
        return False
    return True


def _accepted_by_the_functions(scope: str, environment: dict[str, str]) -> bool:
    try:
        Settings.from_env({**environment, "FLEET_GITHUB_SCOPE": scope})
    except SettingsError as error:
        assert {key for key, _ in error.problems} == {"FLEET_GITHUB_SCOPE"}
        return False
    return True


def _accepted_locally(scope: str, key_file: str) -> bool:
    environment = {
        "FLEET_GITHUB_APP_ID": "1",
        "FLEET_GITHUB_APP_PRIVATE_KEY_FILE": key_file,
        "FLEET_GITHUB_SCOPE": scope,
    }
    try:
        load_settings(environment)
    except FleetError as error:
        assert "FLEET_GITHUB_SCOPE" in str(error)
        return False
    return True


@PROPERTY
@given(
    scope=st.one_of(
        scopes,
        st.text(alphabet="ab-_./:9 ", min_size=1, max_size=12).filter(str.strip),
        st.sampled_from(["https://github.com/acme", "acme/", "-acme", "a--b", "a/b/c", "a/.."]),
    )
)
def test_the_stack_the_functions_and_the_local_fleet_accept_the_same_scopes(
    scope, tmp_path_factory
):
    key_file = tmp_path_factory.getbasetemp() / "scope-key.pem"
    key_file.write_text("-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n")
    environment = program_environment()
    # A repository scope takes the Default group on the stack; the functions get it as written.
    environment["FLEET_RUNNER_GROUP"] = "Default"
    verdicts = {
        _accepted_by_the_stack(scope),
        _accepted_by_the_functions(scope, environment),
        _accepted_locally(scope, str(key_file)),
    }
    assert len(verdicts) == 1, (scope, verdicts)
