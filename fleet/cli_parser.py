"""The command line's grammar: commands, options, and the checks of their values."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from fleet.local.commands import MAX_RUNNERS
from fleet.local.fleet import DEFAULT_LABELS

WEBHOOK_SECRET_ENV = "FLEET_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
MIN_GITHUB_PERIOD = 60


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
    if value > MAX_RUNNERS:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_RUNNERS} runner hosts")
    return value


def _positive(text: str) -> int:
    return _whole(text, 1)


def _count(text: str) -> int:
    return _whole(text, 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def _period(text: str) -> float:
    """Seconds between GitHub look-ups: 0 turns them off; below a minute would spend the
    App's rate limit for little."""
    value = _seconds(text)
    if 0 < value < MIN_GITHUB_PERIOD:
        raise argparse.ArgumentTypeError(
            f"{value:g} must be 0 (off) or at least {MIN_GITHUB_PERIOD} seconds"
        )
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from exc
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535; 0 picks a free one)")
    return value


def _labels(text: str) -> tuple[str, ...]:
    labels = tuple(part.strip() for part in text.split(",") if part.strip())
    if not labels:
        raise argparse.ArgumentTypeError("give at least one label, e.g. self-hosted,linux,dind")
    return labels


SCALE_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,44}$")


def _scale_set_name(text: str) -> str:
    if not SCALE_SET_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a scale set name: 1-45 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return text


def _scale_set_option(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--scale-set", type=_scale_set_name, metavar="NAME", help=what)


def _fleet_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--name", default="local", help="fleet name (default: local)")


def _github_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--github-config",
        type=Path,
        metavar="FILE",
        help="YAML with app_id, private_key_file, scope, api_url, runner_group "
        "(default: the FLEET_GITHUB_* environment variables)",
    )


def _host_options(command: argparse.ArgumentParser, labels_default: object) -> None:
    command.add_argument(
        "--labels",
        type=_labels,
        default=labels_default,
        help="comma-separated runner labels (default: self-hosted,linux,x64,dind)",
    )
    command.add_argument("--vars", type=Path, dest="vars_file", help="YAML file of role variables")
    command.add_argument(
        "--cache-dir", type=Path, help="where images are cached (/var/cache/fleet)"
    )


def _margin(text: str) -> float:
    """A percentage: 25 means a runner may be 25 % slower than the baseline."""
    try:
        value = float(text.rstrip("%"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} must not be negative")
    return value / 100


def _suite_timeout(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be more than 0 seconds")
    return value


def _validation_options(command: argparse.ArgumentParser) -> None:
    """Your suite and the performance baseline: the same on `up` and `validate`."""
    command.add_argument(
        "--suite",
        type=Path,
        metavar="DIR",
        help="also run your containerized pytest suite in DIR on every runner, as the runner "
        "user, in its own virtual environment on top of the toolchain",
    )
    command.add_argument(
        "--requirements",
        type=Path,
        metavar="FILE",
        help="pip requirements your suite needs (installed into its own environment)",
    )
    command.add_argument(
        "--suite-timeout",
        type=_suite_timeout,
        default=1800.0,
        metavar="SECONDS",
        help="stop your suite (and its pip install) after this long (default 1800)",
    )
    command.add_argument(
        "--benchmark-margin",
        type=_margin,
        metavar="PERCENT",
        help="warn about a runner this much slower than the fleet's baseline (default: "
        "thresholds.json in the baseline directory, else 25)",
    )
    command.add_argument(
        "--baseline-dir",
        type=Path,
        metavar="DIR",
        help="where the fleet's performance baseline and history are kept "
        "(default /var/lib/fleet/NAME/benchmarks)",
    )
    command.add_argument(
        "--new-baseline",
        action="store_true",
        help="make the performance baseline again from this validation's runners",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="fleet" if Path(sys.argv[0]).name == "fleet" else "python -m fleet",
        description="Autoscaled self-hosted GitHub Actions runner fleets, locally on Docker.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    boot = commands.add_parser(
        "bootstrap", help="install/start the Docker engine and build the runner-host image"
    )
    boot.add_argument("--cache-dir", type=Path, help="where images are cached (/var/cache/fleet)")
    _up_parser(commands)
    _validate_parser(commands)
    stat = commands.add_parser("status", help="list the fleet's runner hosts")
    _fleet_options(stat)
    _github_option(stat)
    _scale_parser(commands)
    _serve_parser(commands)
    down = commands.add_parser("down", help="remove everything the fleet created")
    _fleet_options(down)
    _github_option(down)
    return root


def _up_parser(commands: Any) -> None:
    up = commands.add_parser("up", help="start, converge, validate (and register) a local fleet")
    _fleet_options(up)
    up.add_argument("--runners", type=_positive, default=1, help="runner hosts (default: 1)")
    _host_options(up, DEFAULT_LABELS)
    up.add_argument("--agent-url", help="runner agent tarball URL (default: the pinned release)")
    up.add_argument("--agent-sha256", help="sha256 of the tarball given with --agent-url")
    up.add_argument(
        "--agent-version",
        help="runner agent release, or 'latest': the newest, verified against the sha256 it "
        "publishes (default: the pinned release)",
    )
    up.add_argument(
        "--no-host-cas",
        action="store_true",
        help="do not make runner hosts trust this machine's CA bundle",
    )
    up.add_argument("--no-canary", action="store_true", help="validate without the canary suite")
    up.add_argument("--junit", type=Path, help="write the validation report here")
    _validation_options(up)
    _github_option(up)
    _scale_set_option(
        up,
        "register the hosts into this runner scale set (created, or adopted if it exists; "
        "needs GitHub App settings); `serve --scale-set NAME` keeps it going",
    )


def _validate_parser(commands: Any) -> None:
    val = commands.add_parser("validate", help="run the testinfra checks against the fleet")
    _fleet_options(val)
    val.add_argument("--vars", type=Path, dest="vars_file", help="YAML file of role variables")
    val.add_argument("--junit", type=Path, help="write the validation report here")
    val.add_argument(
        "--no-canary",
        action="store_true",
        help="skip the canary suite (and the performance set, which needs its images)",
    )
    val.add_argument(
        "--html", type=Path, metavar="FILE", help="also write the report as one HTML page"
    )
    _validation_options(val)
    _github_option(val)


def _scale_parser(commands: Any) -> None:
    scale = commands.add_parser(
        "scale", help="add hosts from the baked image, or retire idle ones, to reach N"
    )
    scale.add_argument("runners", type=_count, metavar="N", help="runner hosts wanted (0-50)")
    _fleet_options(scale)
    _host_options(scale, None)
    scale.add_argument("--no-canary", action="store_true", help="validate without the canary")
    scale.add_argument("--junit", type=Path, help="write the validation report here")
    _github_option(scale)


# Long on purpose: one add_argument per option of serve; the help texts are the list a user reads.
def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="autoscale the fleet: replace used runners, follow a scale set or webhooks",
    )
    _fleet_options(serve)
    _host_options(serve, None)
    _github_option(serve)
    _scale_set_option(
        serve,
        "listen on this runner scale set (created, or adopted if it exists) and size the "
        "fleet from GitHub's job assignments: no webhook port (recommended)",
    )
    serve.add_argument(
        "--idle",
        type=_count,
        help="idle runners to keep ready (default: the hosts the fleet has now, at least 1)",
    )
    serve.add_argument("--min", type=_count, default=0, dest="min_size", help="fewest hosts")
    serve.add_argument("--max", type=_positive, default=10, dest="max_size", help="most hosts")
    serve.add_argument("--interval", type=_seconds, default=15.0, help="seconds between cycles")
    serve.add_argument(
        "--idle-grace",
        type=_seconds,
        default=120.0,
        help="seconds a surplus idle runner waits before it is retired (default 120)",
    )
    serve.add_argument(
        "--boot-deadline",
        type=_seconds,
        default=600.0,
        help="seconds a host may take to register before it is replaced (default 600)",
    )
    serve.add_argument(
        "--max-lifetime",
        type=_seconds,
        default=8 * 3600.0,
        help="seconds after which an idle host is replaced; busy hosts are never cut short",
    )
    serve.add_argument(
        "--webhook-port",
        type=_port,
        help="take workflow_job webhooks on this port (needs a webhook secret)",
    )
    serve.add_argument("--bind", default="127.0.0.1", help="address for webhooks (127.0.0.1)")
    serve.add_argument(
        "--webhook-secret-file",
        type=Path,
        help=f"file holding the webhook secret (default: ${WEBHOOK_SECRET_ENV})",
    )
    serve.add_argument(
        "--redeliver-every",
        type=_period,
        default=300.0,
        metavar="SECONDS",
        help="with webhooks and GitHub settings: ask GitHub to redeliver failed webhook "
        "deliveries at start and then this often (default 300; 0: never)",
    )
    serve.add_argument(
        "--stale-after",
        type=_period,
        default=600.0,
        metavar="SECONDS",
        help="with webhooks and GitHub settings: look up on GitHub a queued or running job "
        "no webhook spoke of for this long (default 600; 0: never)",
    )
    serve.add_argument(
        "--jobs-file",
        type=Path,
        help="with webhooks: where the jobs they announced are kept across restarts "
        "(default /var/lib/fleet/NAME/serve-jobs.json; `down` removes it)",
    )
    serve.add_argument(
        "--validate", action="store_true", help="run the checks (no canary) on new hosts"
    )
    serve.add_argument("--once", action="store_true", help="run one reconcile cycle and exit")
