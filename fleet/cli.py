"""`python -m fleet`: run and check a fleet of runner hosts on this machine."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fleet import local
from fleet.errors import FleetError


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def table(rows: list[dict[str, str]], columns: list[str]) -> str:
    """A plain text table (what a person reads in a terminal or a CI log)."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _labels(text: str) -> tuple[str, ...]:
    labels = tuple(part.strip() for part in text.split(",") if part.strip())
    if not labels:
        raise argparse.ArgumentTypeError("give at least one label, e.g. self-hosted,linux,dind")
    return labels


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m fleet",
        description="Autoscaled self-hosted GitHub Actions runner fleets, locally on Docker.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    boot = commands.add_parser(
        "bootstrap", help="install/start the Docker engine and build the runner-host image"
    )
    boot.add_argument("--cache-dir", type=Path, help="where images are cached (/var/cache/fleet)")

    up = commands.add_parser("up", help="start, converge and validate a local fleet")
    up.add_argument("--name", default="local", help="fleet name (default: local)")
    up.add_argument("--runners", type=_positive, default=1, help="runner hosts (default: 1)")
    up.add_argument(
        "--labels", type=_labels, default=local.UpOptions.labels, help="comma-separated labels"
    )
    up.add_argument("--vars", type=Path, dest="vars_file", help="YAML file of role variables")
    up.add_argument("--agent-url", help="runner agent tarball URL (default: the pinned release)")
    up.add_argument("--agent-sha256", help="sha256 of the tarball given with --agent-url")
    up.add_argument(
        "--no-host-cas",
        action="store_true",
        help="do not make runner hosts trust this machine's CA bundle",
    )
    up.add_argument("--junit", type=Path, help="write the validation report here")
    up.add_argument("--cache-dir", type=Path, help="where images are cached (/var/cache/fleet)")

    val = commands.add_parser("validate", help="run the testinfra checks against the fleet")
    val.add_argument("--name", default="local")
    val.add_argument("--vars", type=Path, dest="vars_file", help="YAML file of role variables")
    val.add_argument("--junit", type=Path, help="write the validation report here")

    stat = commands.add_parser("status", help="list the fleet's runner hosts")
    stat.add_argument("--name", default="local")

    down = commands.add_parser("down", help="remove everything the fleet created")
    down.add_argument("--name", default="local")
    return root


def _up(args: argparse.Namespace) -> int:
    if bool(args.agent_url) != bool(args.agent_sha256):
        raise FleetError(
            "--agent-url and --agent-sha256 go together",
            hint="give both (a tarball is never unpacked without its checksum), or neither",
        )
    options = local.UpOptions(
        name=args.name,
        runners=args.runners,
        labels=args.labels,
        vars_file=args.vars_file,
        agent_url=args.agent_url,
        agent_sha256=args.agent_sha256,
        trust_host_cas=not args.no_host_cas,
        cache_dir=args.cache_dir,
        junit=args.junit,
    )
    rows = local.up(options, _say)
    print()
    print(
        table(
            [
                {
                    "runner": r.name,
                    "state": r.state,
                    "converge": f"{r.converge_seconds:.0f} s" if r.converge_seconds else "-",
                    "checks": f"{r.checks_passed}/{r.checks_total}",
                }
                for r in rows
            ],
            ["runner", "state", "converge", "checks"],
        )
    )
    print()
    print(
        "Runners are provisioned and validated but NOT registered with GitHub: "
        "no GitHub App credentials were given (see README, 'Register with GitHub')."
    )
    return 0 if all(r.state == "validated" for r in rows) else 1


def _validate(args: argparse.Namespace) -> int:
    hosts = [row["runner"] for row in local.status(args.name)]
    if not hosts:
        raise FleetError(
            f"fleet {args.name!r} has no runner hosts", hint="run `python -m fleet up`"
        )
    from fleet import bootstrap as boot_module  # engine check only when validating

    boot = boot_module.bootstrap(_say)
    variables = local.local_extravars(
        boot, local.UpOptions(name=args.name, vars_file=args.vars_file)
    )
    outcome = local.run_validation(args.name, hosts, variables, args.junit)
    rows = [{"check": c.name, "runner": c.host, "result": c.outcome} for c in outcome.checks]
    print(table(rows, ["check", "runner", "result"]))
    counts = outcome.counts()
    print(
        f"\n{counts['passed']} passed, {counts['failed'] + counts['error']} failed"
        f" in {outcome.seconds:.1f} s; JUnit report: {outcome.junit}"
    )
    return 0 if outcome.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "bootstrap":
            from fleet.bootstrap import bootstrap

            result = bootstrap(_say, args.cache_dir)
            _say(
                f"ready in {result.seconds:.1f} s: engine {result.engine.version} "
                f"(runtime {result.engine.default_runtime}), image {result.images.runner_host}"
            )
            return 0
        if args.command == "up":
            return _up(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "status":
            rows = local.status(args.name)
            print(
                table(rows, ["runner", "state", "image", "labels", "started"])
                if rows
                else f"fleet {args.name!r} has no runner hosts"
            )
            return 0
        if args.command == "down":
            removed = local.down(args.name)
            _say(
                f"removed {removed['containers']} container(s), {removed['volumes']} volume(s), "
                f"{removed['networks']} network(s) of fleet {args.name!r}"
            )
            return 0
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
