"""Pure pieces of the local fleet: names, vars files, inventories, reports, CLI input."""

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from fleet import cli
from fleet.errors import FleetError
from fleet.local import provision, validate
from fleet.local.commands import load_vars_file
from fleet.local.fleet import check_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["local", "ci-7", "a"])
def test_good_fleet_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "Local", "-x", "a_b", "x" * 40, "a b"])
def test_bad_fleet_names_say_what_is_allowed(name):
    with pytest.raises(FleetError, match="lower-case letters"):
        check_name(name)


def test_vars_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("- a\n- b\n")
    with pytest.raises(FleetError, match="must be a mapping"):
        load_vars_file(path)


def test_vars_file_with_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("a: [unclosed\n")
    with pytest.raises(FleetError, match=str(path)):
        load_vars_file(path)


def test_missing_vars_file_is_a_clear_error(tmp_path):
    with pytest.raises(FleetError, match="cannot read vars file"):
        load_vars_file(tmp_path / "nope.yml")


def test_docker_inventory_reaches_hosts_with_the_connection_mitogen_takes_over():
    inventory = provision.docker_inventory(["h1", "h2"])
    hosts = inventory["all"]["children"]["runners"]["hosts"]
    assert set(hosts) == {"h1", "h2"}
    # Mitogen's strategy replaces connections by their short name only.
    assert hosts["h1"]["ansible_connection"] == "docker"
    assert hosts["h2"]["ansible_host"] == "h2"


def test_converge_runs_under_mitogen_by_default(monkeypatch):
    monkeypatch.delenv(provision.STRATEGY_ENV, raising=False)
    env = provision.strategy_env()
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    plugins = Path(env["ANSIBLE_STRATEGY_PLUGINS"])
    assert (plugins / "mitogen_linear.py").is_file()


def test_the_stock_strategy_can_be_chosen(monkeypatch):
    monkeypatch.setenv(provision.STRATEGY_ENV, "linear")
    assert provision.strategy_env() == {"ANSIBLE_STRATEGY": "linear"}
    assert provision.strategy_env("mitogen_linear")["ANSIBLE_STRATEGY"] == "mitogen_linear"


def test_an_unknown_strategy_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(provision.STRATEGY_ENV, "mitogen_fast")
    with pytest.raises(FleetError, match="unknown Ansible strategy 'mitogen_fast'") as error:
        provision.strategy_env()
    assert "mitogen_linear, linear" in error.value.hint


def test_stats_are_regrouped_per_host():
    stats = {"ok": {"h1": 10, "h2": 9}, "changed": {"h1": 2}, "failures": {"h2": 1}}
    by_host = provision.stats_by_host(stats)
    assert by_host["h1"]["changed"] == 2
    assert by_host["h2"]["failures"] == 1
    assert by_host["h2"]["changed"] == 0


def test_junit_report_is_read_per_host(tmp_path):
    junit = tmp_path / "r.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="t" name="test_docker_runs[docker://fleet-runner-1]"/>'
        '<testcase classname="t" name="test_canary[docker://fleet-runner-1]">'
        '<failure message="canary failed">x</failure></testcase>'
        '<testcase classname="t" name="test_docker_runs[docker://fleet-runner-2]"/>'
        '<testcase classname="t" name="test_pinned[docker://fleet-runner-2-pytest]"/>'
        "</testsuite></testsuites>"
    )
    checks = validate.parse_junit(junit, ["docker://fleet-runner-1", "docker://fleet-runner-2"])
    assert [(c.name, c.host, c.outcome) for c in checks] == [
        ("test_docker_runs", "fleet-runner-1", "passed"),
        ("test_canary", "fleet-runner-1", "failed"),
        ("test_docker_runs", "fleet-runner-2", "passed"),
        ("test_pinned", "fleet-runner-2", "passed"),
    ]
    result = validate.Validation(rc=1, seconds=1.0, junit=junit, checks=checks)
    assert result.counts("fleet-runner-1") == {"passed": 1, "failed": 1, "error": 0, "skipped": 0}
    assert not result.ok


def test_validation_with_no_checks_is_not_ok(tmp_path):
    assert not validate.Validation(rc=0, seconds=0.1, junit=tmp_path / "x.xml").ok


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "--runners", "0"], "must be at least 1"),
        (["up", "--runners", "two"], "not a whole number"),
        (["up", "--labels", ",,"], "at least one label"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_cli_input_is_rejected_with_a_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_agent_url_without_checksum_is_refused(capsys):
    assert cli.main(["up", "--agent-url", "http://example.invalid/a.tgz"]) == 2
    assert "--agent-url and --agent-sha256 go together" in capsys.readouterr().err


def test_latest_agent_with_a_tarball_of_its_own_is_refused(capsys):
    argv = ["up", "--agent-version", "latest", "--agent-url", "http://example.invalid/a.tgz"]
    assert cli.main([*argv, "--agent-sha256", "0" * 64]) == 2
    assert "--agent-version latest takes the newest release's own" in capsys.readouterr().err


def test_scale_takes_no_agent_options_and_runs_without_them(monkeypatch, capsys):
    """`scale` adds hosts from the image `up` baked: the agent is the image's, so it has no
    --agent-* options (and must not read them)."""
    for variable in ("FLEET_GITHUB_APP_ID", "FLEET_GITHUB_APP_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(variable, raising=False)
    asked = []
    monkeypatch.setattr(
        cli, "scale", lambda name, n, options, report, reg: asked.append(n) or ([], [])
    )
    monkeypatch.setattr(cli, "status", lambda name, registrar=None: [])
    assert cli.main(["scale", "2", "--name", "ci", "--labels", "self-hosted,linux"]) == 0
    assert asked == [2]
    assert "fleet 'ci' has 0 runner host(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["scale", "2", "--agent-version", "latest"])
    assert "unrecognized arguments: --agent-version" in capsys.readouterr().err


def test_the_agent_version_reaches_the_playbooks(tmp_path):
    from fleet.local.commands import UpOptions, local_extravars

    boot = SimpleNamespace(
        images=SimpleNamespace(base="fleet/debian:trixie", preload_tar=tmp_path / "base.tar")
    )
    options = UpOptions(agent_version="latest", trust_host_cas=False)
    assert local_extravars(boot, options)["actions_runner_version"] == "latest"
    assert "actions_runner_version" not in local_extravars(boot, UpOptions(trust_host_cas=False))


def test_bad_fleet_name_on_the_cli_exits_2(capsys):
    assert cli.main(["status", "--name", "Bad Name"]) == 2
    assert "not valid" in capsys.readouterr().err


def test_table_lines_up_columns():
    text = cli.table([{"a": "x", "b": "long value"}, {"a": "yy", "b": "z"}], ["a", "b"])
    lines = text.splitlines()
    assert lines[0].startswith("A   B")
    assert lines[1].index("long value") == lines[2].index("z") == lines[0].index("B")


def test_the_validation_plugins_are_runtime_requirements():
    """The child pytest loads its plugins by name with autoloading off: each must import,
    and come from a distribution requirements.txt pins (not only the dev set)."""
    import importlib
    from importlib.metadata import packages_distributions

    pinned = {
        line.split("==")[0].lower()
        for line in (Path(__file__).parents[3] / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    providers = packages_distributions()
    for module in validate.PLUGINS[1::2]:
        importlib.import_module(module)
        distributions = {d.lower() for d in providers[module.split(".")[0]]}
        assert distributions & pinned, (module, distributions)


def test_a_converge_leaves_the_processes_signal_handlers_alone():
    """ansible-runner installs its own SIGTERM/SIGINT handlers unless given a cancel
    callback: `serve` then ignored SIGTERM after its first host start."""

    def ours(_signum, _frame):
        raise AssertionError("not expected to be called")

    previous = {sig: signal.signal(sig, ours) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = provision.converge({"all": {"hosts": {}}}, "no-such-playbook.yml")
        assert result.status != "successful"
        assert signal.getsignal(signal.SIGTERM) is ours
        assert signal.getsignal(signal.SIGINT) is ours
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
