"""`python -m fleet`: run and check a fleet of runner hosts on this machine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from fleet.errors import FleetError
from fleet.local.commands import MAX_RUNNERS, UpOptions, down, existing_fleet, scale, status, up
from fleet.local.enrol import HostRow
from fleet.local.fleet import DEFAULT_LABELS, check_name
from fleet.local.serve.jobs_file import JobsFile
from fleet.local.serve.jobs_file import default_path as default_jobs_path

WEBHOOK_SECRET_ENV = "FLEET_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
MIN_GITHUB_PERIOD = 60
NOT_REGISTERED = (
    "Runners are provisioned and validated but NOT registered with GitHub: "
    "no GitHub App credentials were given (see README, 'Register with GitHub')."
)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def table(rows: list[dict[str, str]], columns: list[str]) -> str:
    """A plain text table (what a person reads in a terminal or a CI log)."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


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

    up = commands.add_parser("up", help="start, converge, validate (and register) a local fleet")
    _fleet_options(up)
    up.add_argument("--runners", type=_positive, default=1, help="runner hosts (default: 1)")
    _host_options(up, DEFAULT_LABELS)
    up.add_argument("--agent-url", help="runner agent tarball URL (default: the pinned release)")
    up.add_argument("--agent-sha256", help="sha256 of the tarball given with --agent-url")
    up.add_argument(
        "--no-host-cas",
        action="store_true",
        help="do not make runner hosts trust this machine's CA bundle",
    )
    up.add_argument("--no-canary", action="store_true", help="validate without the canary suite")
    up.add_argument("--junit", type=Path, help="write the validation report here")
    _github_option(up)

    val = commands.add_parser("validate", help="run the testinfra checks against the fleet")
    _fleet_options(val)
    val.add_argument("--vars", type=Path, dest="vars_file", help="YAML file of role variables")
    val.add_argument("--junit", type=Path, help="write the validation report here")
    val.add_argument("--no-canary", action="store_true", help="skip the canary suite")
    _github_option(val)

    stat = commands.add_parser("status", help="list the fleet's runner hosts")
    _fleet_options(stat)
    _github_option(stat)

    scale = commands.add_parser(
        "scale", help="add hosts from the baked image, or retire idle ones, to reach N"
    )
    scale.add_argument("runners", type=_count, metavar="N", help="runner hosts wanted (0-50)")
    _fleet_options(scale)
    _host_options(scale, None)
    scale.add_argument("--no-canary", action="store_true", help="validate without the canary")
    scale.add_argument("--junit", type=Path, help="write the validation report here")
    _github_option(scale)

    serve = commands.add_parser(
        "serve", help="autoscale the fleet: replace used runners, follow webhooks"
    )
    _fleet_options(serve)
    _host_options(serve, None)
    _github_option(serve)
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

    down = commands.add_parser("down", help="remove everything the fleet created")
    _fleet_options(down)
    _github_option(down)
    return root


def _registrar(args: argparse.Namespace):  # -> Registrar | None
    from fleet.local.registration import Registrar, load_settings

    settings = load_settings(os.environ, getattr(args, "github_config", None))
    return Registrar(settings) if settings is not None else None


def _rows_table(rows: list[HostRow]) -> str:
    return table(
        [
            {
                "runner": r.name,
                "state": r.state,
                "converge": f"{r.converge_seconds:.0f} s" if r.converge_seconds else "-",
                "checks": f"{r.checks_passed}/{r.checks_total}" if r.checks_total else "-",
                "github": r.github,
            }
            for r in rows
        ],
        ["runner", "state", "converge", "checks", "github"],
    )


def _registration_note(registrar: object | None, labels: tuple[str, ...]) -> str:
    if registrar is None:
        return NOT_REGISTERED
    scope = registrar.settings.scope_text  # type: ignore[attr-defined]
    return (
        f"Runners are registered with GitHub ({scope}) as ephemeral just-in-time runners "
        f"with labels {','.join(labels)}: each takes one job. "
        "Run `python -m fleet serve` to replace them after their jobs."
    )


def _up(args: argparse.Namespace) -> int:
    if bool(args.agent_url) != bool(args.agent_sha256):
        raise FleetError(
            "--agent-url and --agent-sha256 go together",
            hint="give both (a tarball is never unpacked without its checksum), or neither",
        )
    registrar = _registrar(args)
    options = UpOptions(
        name=args.name,
        runners=args.runners,
        labels=args.labels,
        vars_file=args.vars_file,
        agent_url=args.agent_url,
        agent_sha256=args.agent_sha256,
        trust_host_cas=not args.no_host_cas,
        cache_dir=args.cache_dir,
        junit=args.junit,
        canary=not args.no_canary,
    )
    rows = up(options, _say, registrar)
    print()
    print(_rows_table(rows))
    print()
    print(_registration_note(registrar, options.labels))
    good = {"registered"} if registrar is not None else {"validated"}
    return 0 if all(r.state in good for r in rows) else 1


def _validate(args: argparse.Namespace) -> int:
    if not status(args.name):
        raise FleetError(
            f"fleet {args.name!r} has no runner hosts", hint="run `python -m fleet up`"
        )
    from fleet.local.engine import bootstrap as boot_module  # engine check only when validating

    boot = boot_module.bootstrap(_say)
    fleet = existing_fleet(
        args.name, boot, DEFAULT_LABELS, _registrar(args), _say, vars_file=args.vars_file
    )
    hosts, busy = fleet.checkable()
    if busy:
        _say(f"{len(busy)} host(s) running a job, not checked: {', '.join(busy)}")
    if not hosts:
        raise FleetError(
            f"fleet {args.name!r} has no idle runner host to check",
            hint="run validate again when a job has finished, or `python -m fleet scale N`",
        )
    outcome = fleet.validate(hosts, args.junit, canary=not args.no_canary)
    rows = [{"check": c.name, "runner": c.host, "result": c.outcome} for c in outcome.checks]
    print(table(rows, ["check", "runner", "result"]))
    counts = outcome.counts()
    print(
        f"\n{counts['passed']} passed, {counts['failed'] + counts['error']} failed"
        f" in {outcome.seconds:.1f} s; JUnit report: {outcome.junit}"
    )
    return 0 if outcome.ok else 1


def _fleet_labels(name: str, given: tuple[str, ...] | None) -> tuple[str, ...]:
    """Labels given on the command line, else those of the fleet's hosts, else the default."""
    if given:
        return given
    from fleet.local import docker as backend

    for container in reversed(backend.list_hosts(name)):
        text = container.labels.get(backend.LABEL_RUNNER_LABELS, "")
        if text:
            return tuple(text.split(","))
    return DEFAULT_LABELS


def _scale(args: argparse.Namespace) -> int:
    registrar = _registrar(args)
    options = UpOptions(
        name=args.name,
        labels=_fleet_labels(args.name, args.labels),
        vars_file=args.vars_file,
        cache_dir=args.cache_dir,
        junit=args.junit,
        canary=not args.no_canary,
    )
    rows, retired = scale(args.name, args.runners, options, _say, registrar)
    if rows:
        print()
        print(_rows_table(rows))
        print()
        print(_registration_note(registrar, options.labels))
    if retired:
        _say(f"retired {len(retired)} idle host(s): {', '.join(retired)}")
    live = [r for r in status(args.name) if r["state"] == "running"]
    _say(f"fleet {args.name!r} has {len(live)} runner host(s)")
    good = {"registered"} if registrar is not None else {"validated"}
    return 0 if all(r.state in good for r in rows) else 1


def _webhook_secret(args: argparse.Namespace) -> str | None:
    if args.webhook_secret_file is not None:
        try:
            secret = args.webhook_secret_file.read_text().strip()
        except OSError as exc:
            raise FleetError(
                f"cannot read the webhook secret file {args.webhook_secret_file}: {exc.strerror}"
            ) from exc
        if not secret:
            raise FleetError(f"the webhook secret file {args.webhook_secret_file} is empty")
        return secret
    return os.environ.get(WEBHOOK_SECRET_ENV, "").strip() or None


def build_autoscaler(args: argparse.Namespace, report=_say):  # -> Autoscaler
    """The autoscaler `serve` runs, from parsed arguments (tests run it in a thread)."""
    from fleet.local.engine.bootstrap import bootstrap
    from fleet.local.serve.autoscaler import Autoscaler
    from fleet.local.serve.catch_up import GitHubJobSource
    from fleet.local.serve.reconciler import ServeOptions

    secret = _webhook_secret(args)
    if args.webhook_port is not None and not secret:
        raise FleetError(
            "--webhook-port needs the webhook secret GitHub signs deliveries with",
            hint=f"set {WEBHOOK_SECRET_ENV} or --webhook-secret-file (the App's webhook secret)",
        )
    if args.min_size > args.max_size:
        raise FleetError(f"--min {args.min_size} is more than --max {args.max_size}")
    registrar = _registrar(args)
    if registrar is not None:
        registrar.check()
    labels = _fleet_labels(args.name, args.labels)
    boot = bootstrap(report, args.cache_dir)
    fleet = existing_fleet(args.name, boot, labels, registrar, report, args.vars_file)
    idle = args.idle
    if idle is None:
        idle = max(1, len([h for h in fleet.hosts() if h[2].running]))
    owners = None
    if registrar is not None:
        scope = registrar.settings.scope
        owners = (scope.org or (scope.repository or "").split("/")[0],)
    options = ServeOptions(
        idle=idle,
        min_size=args.min_size,
        max_size=max(args.max_size, args.min_size),
        interval=args.interval,
        idle_grace=args.idle_grace,
        boot_deadline=args.boot_deadline,
        max_lifetime=args.max_lifetime,
        bind=args.bind,
        port=args.webhook_port,
        webhook_secret=secret,
        allowed_owners=owners,
        validate=args.validate,
        once=args.once,
        redeliver_every=args.redeliver_every,
        stale_after=args.stale_after,
    )
    options.limits()  # bad combinations fail here, before anything starts
    # Catching up on missed webhooks needs the App (the Autoscaler uses it only with webhooks).
    jobs = GitHubJobSource(registrar) if registrar is not None else None
    # Jobs come only from webhooks: without them there is nothing to keep.
    jobs_file = None
    if args.webhook_port is not None:
        jobs_file = JobsFile(args.jobs_file or default_jobs_path(args.name))
    return Autoscaler(fleet, options, report, jobs=jobs, jobs_file=jobs_file)


def _serve(args: argparse.Namespace) -> int:
    autoscaler = build_autoscaler(args)
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: object) -> None:
            _say(f"{signal.Signals(signum).name}: finishing this cycle, then stopping")
            autoscaler.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    return autoscaler.run()


def _status(args: argparse.Namespace) -> int:
    rows = status(args.name, _registrar(args))
    print(
        table(rows, ["runner", "state", "runner state", "github", "image", "labels", "started"])
        if rows
        else f"fleet {args.name!r} has no runner hosts"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    removed = down(args.name, _registrar(args), _say)
    _say(
        f"removed {removed['containers']} container(s), {removed['volumes']} volume(s), "
        f"{removed['networks']} network(s), {removed['images']} image(s) and "
        f"{removed['jobs files']} jobs file(s) of fleet {args.name!r}"
        + (
            f"; deregistered {removed['registrations']} runner(s) from GitHub"
            if removed["registrations"]
            else ""
        )
    )
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from fleet.local.engine.bootstrap import bootstrap

    result = bootstrap(_say, args.cache_dir)
    _say(
        f"ready in {result.seconds:.1f} s: engine {result.engine.version} "
        f"(runtime {result.engine.default_runtime}), image {result.images.runner_host}"
    )
    return 0


COMMANDS = {
    "bootstrap": _bootstrap,
    "up": _up,
    "validate": _validate,
    "status": _status,
    "scale": _scale,
    "serve": _serve,
    "down": _down,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import docker.errors

    from fleet.core.github.client import GitHubError

    try:
        if getattr(args, "name", None) is not None:
            check_name(args.name)
        return COMMANDS[args.command](args)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GitHubError as exc:
        print(
            f"error: {exc}\n  hint: check the GitHub App settings (README, 'Register with "
            "GitHub'); transient errors clear on a second try",
            file=sys.stderr,
        )
        return 2
    except docker.errors.DockerException as exc:
        print(
            f"error: the Docker engine failed: {exc}\n  hint: run `python -m fleet bootstrap` "
            "(starts the engine and checks it can run privileged containers)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
