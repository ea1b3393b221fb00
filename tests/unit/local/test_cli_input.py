"""Bad command-line input gets a clear error before anything touches the engine or GitHub."""

import pytest

from fleet import cli
from fleet.errors import FleetError
from fleet.local.commands import load_vars_file

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scale"], "the following arguments are required: N"),
        (["scale", "-1"], "must be at least 0"),
        (["scale", "many"], "not a whole number"),
        (["scale", "51"], "more than 50 runner hosts"),
        (["up", "--runners", "51"], "more than 50 runner hosts"),
        (["serve", "--webhook-port", "70000"], "is not a port"),
        (["serve", "--interval", "-5"], "must not be negative"),
        (["serve", "--idle", "x"], "not a whole number"),
        (["serve", "--max", "0"], "must be at least 1"),
        (["serve", "--redeliver-every", "-300"], "must not be negative"),
        (["serve", "--redeliver-every", "often"], "'often' is not a number of seconds"),
        (["serve", "--redeliver-every", "5"], "5 must be 0 (off) or at least 60 seconds"),
        (["serve", "--stale-after", "-1"], "must not be negative"),
        (["serve", "--stale-after", "10m"], "'10m' is not a number of seconds"),
        (["serve", "--stale-after", "0.5"], "0.5 must be 0 (off) or at least 60 seconds"),
        (["status", "--labels", "a"], "unrecognized arguments"),
        (["validate", "--suite-timeout", "0"], "must be more than 0 seconds"),
        (["validate", "--benchmark-margin", "fast"], "is not a percentage"),
        (["validate", "--benchmark-margin", "-5"], "must not be negative"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scale", "2", "--name", "Bad_Name"], "fleet name 'Bad_Name' is not valid"),
        (["serve", "--name", "x" * 40], "is not valid"),
        (["down", "--name=-x"], "is not valid"),
    ],
)
def test_bad_fleet_names_exit_2_naming_the_rule(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "lower-case letters" in err


def test_a_webhook_port_without_a_secret_is_refused_before_anything_starts(capsys, monkeypatch):
    monkeypatch.delenv("FLEET_WEBHOOK_SECRET", raising=False)
    assert cli.main(["serve", "--webhook-port", "8080"]) == 2
    err = capsys.readouterr().err
    assert "needs the webhook secret" in err
    assert "FLEET_WEBHOOK_SECRET" in err


def test_an_empty_webhook_secret_file_is_refused(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text("\n")
    argv = ["serve", "--webhook-port", "8080", "--webhook-secret-file", str(secret)]
    assert cli.main(argv) == 2
    assert "is empty" in capsys.readouterr().err


def test_min_above_max_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("FLEET_WEBHOOK_SECRET", raising=False)
    assert cli.main(["serve", "--min", "5", "--max", "2"]) == 2
    assert "--min 5 is more than --max 2" in capsys.readouterr().err


def test_half_given_github_settings_name_what_is_missing(capsys, monkeypatch):
    monkeypatch.setenv("FLEET_GITHUB_APP_ID", "123")
    monkeypatch.delenv("FLEET_GITHUB_APP_PRIVATE_KEY_FILE", raising=False)
    monkeypatch.delenv("FLEET_GITHUB_SCOPE", raising=False)
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err
    assert "FLEET_GITHUB_APP_PRIVATE_KEY_FILE" in err and "FLEET_GITHUB_SCOPE" in err


def test_a_missing_github_config_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.yml"
    assert cli.main(["up", "--github-config", str(missing)]) == 2
    assert f"cannot read GitHub config {missing}" in capsys.readouterr().err


def test_a_vars_file_cannot_smuggle_in_a_jit_config(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("actions_runner_jitconfig: abc\n")
    with pytest.raises(FleetError, match="JIT configs are made per host"):
        load_vars_file(path)


def test_catching_up_with_github_defaults_and_can_be_turned_off():
    defaults = cli.parser().parse_args(["serve"])
    assert (defaults.redeliver_every, defaults.stale_after) == (300.0, 600.0)
    off = cli.parser().parse_args(["serve", "--redeliver-every", "0", "--stale-after", "0"])
    assert (off.redeliver_every, off.stale_after) == (0.0, 0.0)
    hourly = cli.parser().parse_args(["serve", "--redeliver-every", "3600"])
    assert hourly.redeliver_every == 3600.0


def test_every_command_has_help(capsys):
    for command in ("up", "status", "validate", "scale", "serve", "down", "bootstrap"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--webhook-port" in out
    assert "--redeliver-every SECONDS" in out and "--stale-after SECONDS" in out


def test_no_engine_is_explained_with_what_to_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert cli.main(["status", "--name", "local"]) == 2
    err = capsys.readouterr().err
    assert "Docker engine" in err and "python -m fleet bootstrap" in err
