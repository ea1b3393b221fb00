"""GitHub App settings for a local fleet, and registering runners against the FAKE GitHub."""

import base64
import json

import pytest

from fleet.errors import FleetError
from fleet.local.registration import Registrar, RunnerBusyError, load_settings

pytestmark = pytest.mark.unit


def env(key_file, **extra):
    values = {
        "FLEET_GITHUB_APP_ID": "31337",
        "FLEET_GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
        "FLEET_GITHUB_SCOPE": "octo-org",
    }
    values.update(extra)
    return values


def test_no_settings_means_an_unregistered_fleet():
    assert load_settings({}) is None


def test_settings_come_from_the_environment(key_file):
    settings = load_settings(env(key_file, FLEET_GITHUB_SCOPE="octo-org/app"))
    assert settings.scope.repository == "octo-org/app"
    assert settings.api_url == "https://api.github.com"
    assert "PRIVATE KEY" not in repr(settings)


def test_settings_come_from_a_file(tmp_path, key_file):
    config = tmp_path / "github.yml"
    config.write_text(
        f"app_id: 31337\nprivate_key_file: {key_file}\nscope: octo-org\n"
        "api_url: https://ghe.example/api/v3\nrunner_group: local-fleet\n"
    )
    settings = load_settings({}, config)
    assert (settings.scope.org, settings.api_url, settings.runner_group) == (
        "octo-org",
        "https://ghe.example/api/v3",
        "local-fleet",
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"FLEET_GITHUB_SCOPE": ""}, "FLEET_GITHUB_SCOPE missing"),
        ({"FLEET_GITHUB_APP_ID": "my-app"}, "numeric id"),
        ({"FLEET_GITHUB_SCOPE": "a/b/c"}, "owner/name"),
        ({"FLEET_GITHUB_API_URL": "api.github.com"}, "http(s) URL"),
        ({"FLEET_GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent/app.pem"}, "cannot read"),
    ],
)
def test_bad_settings_say_what_is_wrong(key_file, changes, message):
    with pytest.raises(FleetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env(key_file, **changes))


def test_a_key_file_that_is_not_pem_is_refused(tmp_path):
    bogus = tmp_path / "app.pem"
    bogus.write_text("not a key")
    with pytest.raises(FleetError, match="not a PEM private key"):
        load_settings(env(bogus))


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path):
    config = tmp_path / "github.yml"
    config.write_text("app_id: 1\ntoken: ghp_xxx\n")
    with pytest.raises(FleetError, match="unknown key"):
        load_settings({}, config)


def test_a_runner_registers_just_in_time_in_the_chosen_group(github, settings):
    registrar = Registrar(settings)
    registrar.check()
    jit = registrar.register("f-runner-abc", ["self-hosted", "linux", "dind"])
    assert "encoded_jit_config" not in repr(jit)
    config = json.loads(base64.b64decode(jit.encoded_jit_config))
    assert config["runner_name"] == "f-runner-abc"
    registered = github.runner_by_name("f-runner-abc")
    assert registered["runner_group_id"] == 7
    assert [label["name"] for label in registered["labels"]] == ["self-hosted", "linux", "dind"]
    # The installation token asks only for the runners permission.
    assert github.token_bodies[-1] == {"permissions": {"organization_self_hosted_runners": "write"}}
    assert set(registrar.runners("f-runner-")) == {"f-runner-abc"}


def test_a_busy_runner_cannot_be_deregistered(github, settings):
    registrar = Registrar(settings)
    registrar.register("f-runner-abc", ["self-hosted"])
    runner_id = github.runner_by_name("f-runner-abc")["id"]
    github.runner_by_name("f-runner-abc")["busy"] = True
    with pytest.raises(RunnerBusyError):
        registrar.deregister(registrar.runners("f-runner-")["f-runner-abc"])
    github.runner_by_name("f-runner-abc")["busy"] = False
    assert registrar.deregister(registrar.runners("f-runner-")["f-runner-abc"])
    assert github.runner_by_name("f-runner-abc") is None
    assert all(runner_id not in runners for runners in github.runners.values())


def test_wrong_app_credentials_are_explained(github, settings, app_keys):
    from dataclasses import replace

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    registrar = Registrar(replace(settings, private_key=other.decode()))
    with pytest.raises(FleetError, match="refused the App's credentials") as error:
        registrar.check()
    assert "clock" in error.value.hint


def test_an_app_not_installed_on_the_scope_is_explained(github, settings):
    from dataclasses import replace

    from fleet.core.github.runners import Scope

    registrar = Registrar(replace(settings, scope=Scope.for_org("elsewhere")))
    with pytest.raises(FleetError, match="not installed on elsewhere"):
        registrar.check()


def test_an_unknown_runner_group_is_explained(github, settings):
    from dataclasses import replace

    registrar = Registrar(replace(settings, runner_group="nope"))
    with pytest.raises(FleetError, match="no runner group named 'nope'"):
        registrar.check()
