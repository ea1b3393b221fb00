"""`python -m fleet`: run and check a fleet of runner hosts on this machine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from fleet.cli_parser import WEBHOOK_SECRET_ENV, parser
from fleet.cli_text import (
    outdated_lines,
    registration_note,
    rows_table,
    table,
    validation_text,
)
from fleet.core.clock import utc_now
from fleet.errors import FleetError
from fleet.local import validation_report
from fleet.local.commands import UpOptions, down, existing_fleet, mode_line, scale, status, up
from fleet.local.fleet import DEFAULT_LABELS, check_name
from fleet.local.serve.jobs_file import JobsFile
from fleet.local.serve.jobs_file import default_path as default_jobs_path
from fleet.local.user_suite import UserSuite
from fleet.local.validate import Extras


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _registrar(args: argparse.Namespace):  # -> Registrar | None
    from fleet.local.registration import Registrar, load_settings

    settings = load_settings(os.environ, getattr(args, "github_config", None))
    return Registrar(settings) if settings is not None else None


def _need_settings(args: argparse.Namespace, registrar) -> None:
    if registrar is None:
        raise FleetError(
            f"--scale-set {args.scale_set} needs GitHub App settings",
            hint="set FLEET_GITHUB_APP_ID, FLEET_GITHUB_APP_PRIVATE_KEY_FILE and "
            "FLEET_GITHUB_SCOPE, or --github-config (README, 'Register with GitHub')",
        )


def _join_scale_set(args: argparse.Namespace, registrar, labels, report=_say):
    """``--scale-set NAME``: (its registrar, spec, state file); needs GitHub settings."""
    _need_settings(args, registrar)
    from fleet.local.scale_set import join_scale_set

    return join_scale_set(registrar, args.name, args.scale_set, labels, report)


def _registrar_in_use(args: argparse.Namespace):  # -> Registrar | ScaleSetRegistrar | None
    from fleet.local.scale_set import registrar_in_use

    return registrar_in_use(_registrar(args), args.name)


def _extras(args: argparse.Namespace) -> Extras:
    """Your suite and the baseline settings from `up`'s or `validate`'s options; bad input
    fails here, before anything starts."""
    if args.requirements is not None and args.suite is None:
        raise FleetError("--requirements goes with --suite", hint="give --suite DIR too")
    suite = None
    if args.suite is not None:
        suite = UserSuite(args.suite, args.requirements, args.suite_timeout).checked()
    return Extras(
        suite=suite,
        baseline_dir=args.baseline_dir,
        margin=args.benchmark_margin,
        update_baseline=args.new_baseline,
    )


def _up(args: argparse.Namespace) -> int:
    if bool(args.agent_url) != bool(args.agent_sha256):
        raise FleetError(
            "--agent-url and --agent-sha256 go together",
            hint="give both (a tarball is never unpacked without its checksum), or neither",
        )
    if args.agent_version == "latest" and args.agent_url:
        raise FleetError(
            "--agent-version latest takes the newest release's own tarball and checksum",
            hint="drop --agent-url/--agent-sha256, or give the version they belong to",
        )
    registrar = _registrar(args)
    if args.scale_set is not None:
        registrar = _join_scale_set(args, registrar, args.labels)[0]
    options = UpOptions(
        name=args.name,
        runners=args.runners,
        labels=args.labels,
        vars_file=args.vars_file,
        agent_url=args.agent_url,
        agent_sha256=args.agent_sha256,
        agent_version=args.agent_version,
        trust_host_cas=not args.no_host_cas,
        cache_dir=args.cache_dir,
        junit=args.junit,
        canary=not args.no_canary,
        extras=_extras(args),
    )
    rows = up(options, _say, registrar)
    print()
    print(rows_table(rows))
    print()
    print(registration_note(registrar, options.labels))
    good = {"registered"} if registrar is not None else {"validated"}
    return 0 if all(r.state in good for r in rows) else 1


def _validate(args: argparse.Namespace) -> int:
    extras = _extras(args)
    if not status(args.name):
        raise FleetError(
            f"fleet {args.name!r} has no runner hosts", hint="run `python -m fleet up`"
        )
    from fleet.local.engine import bootstrap as boot_module  # engine check only when validating

    boot = boot_module.bootstrap(_say)
    fleet = existing_fleet(
        args.name, boot, DEFAULT_LABELS, _registrar(args), _say, vars_file=args.vars_file
    )
    fleet.extras = extras
    hosts, busy = fleet.checkable()
    if busy:
        _say(f"{len(busy)} host(s) running a job, not checked: {', '.join(busy)}")
    if not hosts:
        raise FleetError(
            f"fleet {args.name!r} has no idle runner host to check",
            hint="run validate again when a job has finished, or `python -m fleet scale N`",
        )
    outcome = fleet.validate(hosts, args.junit, canary=not args.no_canary)
    print(validation_text(outcome))
    if args.html is not None:
        validation_report.write_html(args.html, outcome, args.name, utc_now())
        print(f"HTML report: {args.html}")
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
    registrar = _registrar_in_use(args)
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
        print(rows_table(rows))
        print()
        print(registration_note(registrar, options.labels))
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


def _serve_options(args: argparse.Namespace, fleet, registrar, secret: str | None):
    """ServeOptions from the command line (``--idle`` defaults to the hosts running now)."""
    from fleet.local.serve.reconciler import ServeOptions

    idle = args.idle
    if idle is None:
        idle = max(1, len([h for h in fleet.hosts() if h[2].running]))
    owners = None
    if registrar is not None:
        scope = registrar.settings.scope
        owners = (scope.org or (scope.repository or "").split("/")[0],)
    return ServeOptions(
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


def build_autoscaler(args: argparse.Namespace, report=_say):  # -> Autoscaler
    """The autoscaler `serve` runs, from parsed arguments (tests run it in a thread)."""
    from fleet.local.engine.bootstrap import bootstrap
    from fleet.local.serve.autoscaler import Autoscaler
    from fleet.local.serve.catch_up import GitHubJobSource

    if args.scale_set is not None:
        from fleet.local.scale_set import refuse_webhook_options

        refuse_webhook_options(
            {
                "--webhook-port": args.webhook_port,
                "--jobs-file": args.jobs_file,
                "--webhook-secret-file": args.webhook_secret_file,
            }
        )
    secret = _webhook_secret(args)
    if args.webhook_port is not None and not secret:
        raise FleetError(
            "--webhook-port needs the webhook secret GitHub signs deliveries with",
            hint=f"set {WEBHOOK_SECRET_ENV} or --webhook-secret-file (the App's webhook secret)",
        )
    if args.min_size > args.max_size:
        raise FleetError(f"--min {args.min_size} is more than --max {args.max_size}")
    registrar = _registrar(args)
    if args.scale_set is not None:
        _need_settings(args, registrar)
    if registrar is not None:
        registrar.check()
    labels = _fleet_labels(args.name, args.labels)
    if args.scale_set is not None:
        registrar, spec, state_file = _join_scale_set(args, registrar, labels, report)
    elif registrar is not None and _registrar_in_use(args) is not registrar:
        report(
            f"note: fleet {args.name!r} is in a scale set (`up --scale-set`); without "
            "--scale-set this serve registers new hosts with the REST API, outside it"
        )
    boot = bootstrap(report, args.cache_dir)
    fleet = existing_fleet(args.name, boot, labels, registrar, report, args.vars_file)
    options = _serve_options(args, fleet, registrar, secret)
    options.limits()  # bad combinations fail here, before anything starts
    if args.scale_set is not None:
        from fleet.local.serve.scale_set_mode import ScaleSetAutoscaler

        return ScaleSetAutoscaler(
            fleet, options, report, registrar=registrar, spec=spec, state_file=state_file
        )
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
    registrar = _registrar(args)
    rows = status(args.name, registrar)
    print(
        table(rows, ["runner", "state", "runner state", "github", "image", "labels", "started"])
        if rows
        else f"fleet {args.name!r} has no runner hosts"
    )
    print(mode_line(args.name, registrar))
    for line in outdated_lines(rows):
        print(line)
    return 0


def _down(args: argparse.Namespace) -> int:
    removed = down(args.name, _registrar_in_use(args), _say)
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

    from fleet.core.github.errors import GitHubError

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
