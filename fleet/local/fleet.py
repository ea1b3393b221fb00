"""The local fleet: runner hosts on this machine's Docker engine.

``up`` = bootstrap the machine, bake the fleet's image once (converge one host with
``bake.yml`` and ``docker commit`` it), start hosts from it and run only ``boot.yml`` on
them, validate them with the testinfra suite and, with GitHub App settings, register each
just in time. ``scale`` and ``serve`` add and remove hosts the same way. The same
playbooks and checks serve AWS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from fleet.core.github.client import GitHubError
from fleet.core.github.runners import Runner
from fleet.errors import FleetError
from fleet.local import docker as backend
from fleet.local import provision, validate
from fleet.local.engine.bootstrap import Bootstrap, bootstrap
from fleet.local.engine.engine import client
from fleet.local.hosts import retire_host
from fleet.local.observe import HostProbe, HostState, Observation, host_state, observe
from fleet.local.registration import Registrar, RunnerBusyError
from fleet.local.serve.jobs_file import JobsFile
from fleet.local.serve.jobs_file import default_path as default_jobs_path
from fleet.local.yaml_files import load_mapping

Report = Callable[[str], None]
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
REPORTS = provision.ROOT / "reports"
DEFAULT_LABELS = ("self-hosted", "linux", "x64", "dind")
MAX_RUNNERS = 50
# A bake needs about 1.5 GiB (image layers + apt caches), a host about 0.5 GiB before jobs.
MIN_FREE_BYTES = 3 * 1024**3
# What goes into the fleet's image: a change to any of these files re-bakes.
BAKE_INPUTS = (provision.PLAYBOOKS, provision.ROOT / "tests" / "canary")
# Variables only the boot part reads: they never change the baked image.
BOOT_ONLY_VARS = frozenset({"actions_runner_jitconfig"})
NO_CANARY = ["-k", "not canary"]
# Bumped when how an image is baked changes (what is written or cleaned before commit).
BAKE_FORMAT = "4"
# The canary's DinD and PostgreSQL images, built once in the bake host and kept in the
# image as an archive the canary loads on first use (tests/canary/canary_images.py): a
# few seconds instead of a minute of apt-get, and nothing added to every host's boot.
BAKED_IMAGES_KEY = "fleet_baked_job_images"
BAKED_IMAGES_DIR = "/var/cache/fleet-baked/images"
# Prints "<image> <archive file name>" per recipe; run in the bake host by the toolchain.
JOB_IMAGES_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import docker, canary_images as c; "
    "client = docker.from_env(timeout=900); "
    "[print(c.ensure_image(client, r), c.archive_name(r)) for r in (c.DIND, c.POSTGRES)]"
)


@dataclass
class UpOptions:
    name: str = "local"
    runners: int = 1
    labels: tuple[str, ...] = DEFAULT_LABELS
    vars_file: Path | None = None
    agent_url: str | None = None
    agent_sha256: str | None = None
    trust_host_cas: bool = True
    cache_dir: Path | None = None
    junit: Path | None = None
    canary: bool = True


@dataclass
class HostRow:
    name: str
    state: str
    converge_seconds: float | None = None
    checks_passed: int = 0
    checks_total: int = 0
    problems: list[str] = field(default_factory=list)
    github: str = "-"  # runner id once registered


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise FleetError(
            f"fleet name {name!r} is not valid",
            hint="use 1-31 lower-case letters, digits and dashes, starting with a letter or digit",
        )
    return name


def check_runner_count(count: int, flag: str = "--runners") -> int:
    if not 0 <= count <= MAX_RUNNERS:
        raise FleetError(
            f"{flag} {count} is out of range", hint=f"use 0 to {MAX_RUNNERS} runner hosts"
        )
    return count


def runner_prefix(fleet: str) -> str:
    """Every host (and runner registration) of a fleet is named ``<fleet>-runner-<hex>``."""
    return f"{fleet}-runner-"


def new_host_name(fleet: str) -> str:
    return f"{runner_prefix(fleet)}{secrets.token_hex(3)}"


def load_vars_file(path: Path | None) -> dict[str, Any]:
    """User role variables (the same the playbooks take), as a mapping."""
    if path is None:
        return {}
    data = load_mapping(
        path, "vars file", mapping_of="role variables", hint="e.g. docker_host_log_max_file: 5"
    )
    if "actions_runner_jitconfig" in data:
        raise FleetError(
            f"vars file {path} sets actions_runner_jitconfig",
            hint="JIT configs are made per host by the fleet (GitHub App settings); remove it",
        )
    return data


def local_extravars(boot: Bootstrap, options: UpOptions) -> dict[str, Any]:
    """Variables that make the playbooks fit a local host, then the user's own."""
    variables: dict[str, Any] = {
        "docker_host_preload_images": [
            {
                "name": boot.images.base,
                "path": f"{backend.PRELOAD_MOUNT}/{boot.images.preload_tar.name}",
            }
        ],
    }
    if options.trust_host_cas and HOST_CA_BUNDLE.exists():
        # Machines behind a TLS-inspecting proxy: runner hosts must trust what this
        # machine trusts, or pip and git inside them fail.
        variables["docker_host_extra_ca_certificates"] = [
            {"name": "fleet-machine-trust", "content": HOST_CA_BUNDLE.read_text()}
        ]
    if options.agent_url:
        variables["actions_runner_url"] = options.agent_url
    if options.agent_sha256:
        variables["actions_runner_sha256"] = options.agent_sha256
    variables.update(load_vars_file(options.vars_file))
    return variables


def _files(roots: Iterable[Path]) -> list[tuple[str, Path]]:
    """(name, path) of every source file under ``roots`` (caches and hidden files left out)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            if not path.is_file() or path.suffix == ".pyc":
                continue
            if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
                continue
            found.append((f"{root.name}/{relative}", path))
    return sorted(found)


def bake_hash(
    variables: dict[str, Any], base_image: str, roots: Iterable[Path] = BAKE_INPUTS
) -> str:
    """A hash of what the fleet's image is made of: the playbooks (and the canary they
    install), the variables the bake reads, and the image it starts from."""
    digest = hashlib.sha256(f"bake-format {BAKE_FORMAT}\0".encode())
    for name, path in _files(roots):
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    baked = {k: v for k, v in variables.items() if k not in BOOT_ONLY_VARS}
    digest.update(json.dumps(baked, sort_keys=True, default=str).encode() + b"\0")
    digest.update(base_image.encode())
    return digest.hexdigest()[:12]


def check_free_space(report: Report) -> None:
    """Fail early, and say so, when the engine's disk cannot hold another host."""
    try:
        root = client().info().get("DockerRootDir", "/var/lib/docker")
        free = shutil.disk_usage(root).free
    except OSError:
        return  # a remote engine: its disk is not ours to measure
    if free < MIN_FREE_BYTES:
        raise FleetError(
            f"only {free / 1024**3:.1f} GiB free on the engine's data root {root}; "
            f"a runner fleet needs at least {MIN_FREE_BYTES / 1024**3:.0f} GiB",
            hint="free space (`docker system df`, `python -m fleet down --name OLD`, "
            "`docker image prune`) and run the command again",
        )
    report(f"{free / 1024**3:.0f} GiB free on {root}")


@contextlib.contextmanager
def _runner_vars_file(variables: dict[str, Any]) -> Iterator[Path]:
    """The variables as the validation suite's --runner-vars file, private and gone after."""
    with tempfile.TemporaryDirectory(prefix="fleet-vars-") as directory:
        path = Path(directory) / "runner-vars.yml"
        path.write_text(yaml.safe_dump(variables, sort_keys=True))
        path.chmod(0o600)
        yield path


def _created(attrs: dict[str, Any]) -> datetime:
    """A container's creation time (Docker gives nanoseconds; Python takes microseconds)."""
    text = attrs.get("Created", "")
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text)
    if not match:
        return datetime.now(UTC)
    fraction = (match.group(2) or ".0")[:7]
    return datetime.fromisoformat(match.group(1) + fraction).replace(tzinfo=UTC)


def _progress(report: Report, started: float, every: float = 15.0) -> Callable[[dict], None]:
    """An ansible-runner event handler that says which task runs, every ``every`` seconds."""
    last = {"at": time.monotonic()}

    def on_event(event: dict) -> None:
        if event.get("event") != "playbook_on_task_start":
            return
        now = time.monotonic()
        if now - last["at"] >= every:
            last["at"] = now
            task = event.get("event_data", {}).get("task", "?")
            report(f"  ... {now - started:.0f} s: {task}")

    return on_event


class LocalFleet:
    """One fleet's hosts on this engine: start, boot, validate, register, remove.

    ``up``, ``scale`` and ``serve`` all go through here, so a host is made and removed
    the same way whichever command asks.
    """

    def __init__(
        self,
        name: str,
        boot: Bootstrap,
        variables: dict[str, Any],
        labels: Sequence[str],
        registrar: Registrar | None,
        report: Report,
    ) -> None:
        self.name = check_name(name)
        self.boot = boot
        self.variables = variables
        self.labels = tuple(labels)
        self.registrar = registrar
        self.report = report
        self.image: str | None = None

    @property
    def registered(self) -> bool:
        return self.registrar is not None

    # --- the image ----------------------------------------------------------------------

    def ensure_image(self) -> str:
        """The fleet's baked image for the current playbooks and variables (bake if none)."""
        wanted = bake_hash(self.variables, self.boot.images.runner_host)
        found = backend.find_baked_image(self.name, wanted)
        if found:
            self.image = found
            self.adopt_image_vars()
            self.report(f"baked image {found} is current (playbooks and variables unchanged)")
            return found
        check_free_space(self.report)
        name = f"{runner_prefix(self.name)}bake-{secrets.token_hex(3)}"
        self.report(f"baking the fleet's image: converging {name} with playbooks/bake.yml")
        started = time.monotonic()
        container = backend.start_host(
            backend.HostSpec(
                name=name,
                fleet=self.name,
                image=self.boot.images.runner_host,
                preload_dir=self.boot.images.preload_dir,
                kind=backend.KIND_BAKE_HOST,
            ),
            self.boot.engine.cgroup_version,
        )
        try:
            backend.wait_until_booted(container)
            result = provision.converge(
                provision.docker_inventory([name]),
                "bake.yml",
                self.variables,
                on_event=_progress(self.report, started),
            )
            if not result.ok:
                raise FleetError(
                    "baking the fleet's image failed:\n  " + "\n  ".join(result.failures[:10]),
                    hint="fix the variable or task named above, then run `python -m fleet up` "
                    "again",
                )
            baked_images = self._bake_job_images(container)
            backend.write_bake_vars(container, {**self.bake_vars(), BAKED_IMAGES_KEY: baked_images})
            # A machine id is per host (hosts made from the image get their own at boot);
            # package and pip caches are not worth carrying in every host's image.
            container.exec_run(
                [
                    "sh",
                    "-c",
                    ": > /etc/machine-id; rm -rf /var/log/journal/* /root/.cache/pip; "
                    "apt-get clean",
                ]
            )
            tag = backend.commit_baked_image(container, self.name, wanted)
        finally:
            backend.remove_host(container)
        stale = backend.remove_stale_baked_images(self.name, tag)
        self.report(
            f"baked {tag} in {time.monotonic() - started:.0f} s"
            + (f" (removed older {', '.join(stale)})" if stale else "")
        )
        self.image = tag
        return tag

    def _bake_job_images(self, container: Any) -> list[dict[str, str]]:
        """Build the canary's images in the bake host's engine and save them into the image
        (readable by jobs): a host loads them on first use instead of building them."""
        venv = self.variables.get("test_toolchain_venv", "/opt/fleet/toolchain")
        canary = self.variables.get("test_toolchain_canary_dest", "/opt/fleet/canary")
        self.report("building the job images (DinD, PostgreSQL) into the fleet's image")
        built = container.exec_run([f"{venv}/bin/python", "-c", JOB_IMAGES_CODE, canary])
        output = built.output.decode(errors="replace")
        if built.exit_code != 0:
            raise FleetError(
                f"building the job images in {container.name} failed: {output[-1500:]}",
                hint="the build runs apt-get in a container: check the Debian mirror is "
                "reachable from containers",
            )
        pairs = [line.split() for line in output.splitlines() if len(line.split()) == 2][-2:]
        saves = " && ".join(
            f"docker save -o {BAKED_IMAGES_DIR}/{archive} {image} && "
            f"chmod 0644 {BAKED_IMAGES_DIR}/{archive}"
            for image, archive in pairs
        )
        saved = container.exec_run(
            ["sh", "-c", f"install -d -m 0755 {BAKED_IMAGES_DIR} && {saves}"]
        )
        if len(pairs) != 2 or saved.exit_code != 0:
            raise FleetError(f"saving the job images failed: {saved.output.decode()[-800:]}")
        return [{"name": image, "path": f"{BAKED_IMAGES_DIR}/{a}"} for image, a in pairs]

    def bake_vars(self) -> dict[str, Any]:
        return {k: v for k, v in self.variables.items() if k not in BOOT_ONLY_VARS}

    def current_image(self) -> str:
        """The newest baked image of this fleet (``up`` makes it)."""
        if self.image is None:
            self.image = backend.find_baked_image(self.name)
        if self.image is None:
            raise FleetError(
                f"fleet {self.name!r} has no baked image",
                hint=f"run `python -m fleet up --name {self.name}` first",
            )
        return self.image

    def adopt_image_vars(self, overrides: dict[str, Any] | None = None) -> None:
        """Take the variables the current image was baked with (plus this machine's boot
        variables, plus ``overrides``): new hosts and checks then match the image."""
        baked = backend.read_bake_vars(self.current_image())
        baked.pop(BAKED_IMAGES_KEY, None)
        boot_vars = {k: v for k, v in self.variables.items() if k in BOOT_ONLY_VARS}
        self.variables = {**baked, **boot_vars, **(overrides or {})}

    # --- hosts --------------------------------------------------------------------------

    def hosts(self) -> list[tuple[str, datetime, HostProbe]]:
        """Every runner host of the fleet with its creation time and what it reports."""
        return [
            (c.name, _created(c.attrs), backend.probe_host(c))
            for c in backend.list_hosts(self.name)
        ]

    def checkable(self) -> tuple[list[str], list[str]]:
        """(hosts the checks may run on, busy hosts left alone). The checks run the job
        hooks, which remove every container: never on a host that is running a job."""
        seen = self.observe()
        free = [h.name for h in seen.hosts if h.state in (HostState.IDLE, HostState.BOOTING)]
        busy = [h.name for h in seen.hosts if h.state is HostState.BUSY]
        return free, busy

    def outdated(self, names: Sequence[str], image: str) -> list[str]:
        """Of ``names``, the hosts that run an older image of the fleet than ``image``."""
        return [
            c.name
            for c in backend.list_hosts(self.name)
            if c.name in names and image not in (c.image.tags or [])
        ]

    def probe(self, name: str) -> HostProbe:
        for container in backend.list_hosts(self.name):
            if container.name == name:
                return backend.probe_host(container)
        return HostProbe(running=False)

    def remove(self, name: str) -> None:
        for container in backend.list_hosts(self.name):
            if container.name == name:
                backend.remove_host(container)
                return

    def remove_orphans(self) -> list[str]:
        return backend.remove_orphan_volumes(self.name)

    def observe(self, busy_names: Iterable[str] = ()) -> Observation:
        """Hosts, their registrations and the job ledger, joined (see fleet.local.observe)."""
        registrations = self.registrar.runners(runner_prefix(self.name)) if self.registrar else None
        return observe(
            self.hosts(),
            registrations,
            runner_prefix=runner_prefix(self.name),
            busy_names=busy_names,
        )

    def deregister(self, registration: Runner) -> bool:
        """Delete a GitHub registration (False if gone); ``RunnerBusyError`` if busy."""
        return self.registrar.deregister(registration) if self.registrar else False

    def retire(
        self,
        name: str,
        registration: Runner | None,
        busy: Callable[[str], bool] = lambda _name: False,
    ) -> bool:
        """Deregister first, re-check, then remove (``fleet.local.hosts.retire_host``)."""
        return retire_host(self, name, registration, self.report, busy)

    def retire_idle(self, count: int) -> list[str]:
        """Retire up to ``count`` idle hosts, oldest first; busy hosts are never touched."""
        seen = self.observe()
        idle = [h for h in seen.hosts if h.state in (HostState.IDLE, HostState.BOOTING)]
        idle.sort(key=lambda h: (h.state is HostState.IDLE, h.created))
        retired = []
        for host in idle:
            if len(retired) >= count:
                break
            if self.retire(host.name, host.registration):
                retired.append(host.name)
        busy = len([h for h in seen.hosts if h.state is HostState.BUSY])
        if len(retired) < count and busy:
            self.report(
                f"{busy} busy host(s) kept: they go away after their jobs (ephemeral runners)"
            )
        return retired

    def start(self, count: int) -> list[str]:
        """Start ``count`` hosts from the baked image, in parallel; returns their names."""
        image = self.current_image()
        names = [new_host_name(self.name) for _ in range(count)]
        labels = {backend.LABEL_RUNNER_LABELS: ",".join(self.labels)}

        def start_one(name: str) -> None:
            spec = backend.HostSpec(
                name=name,
                fleet=self.name,
                image=image,
                preload_dir=self.boot.images.preload_dir,
                labels=labels,
            )
            # boot.yml waits for what is still starting (the preloaded images).
            container = backend.start_host(spec, self.boot.engine.cgroup_version)
            backend.wait_until_booted(container, late_boot=False)

        with ThreadPoolExecutor(max_workers=min(8, max(1, count))) as pool:
            errors = [f.exception() for f in [pool.submit(start_one, n) for n in names]]
        failed = [e for e in errors if e is not None]
        if failed:
            for name in names:
                self.remove(name)
            raise failed[0]
        return names

    def boot_hosts(
        self, names: Sequence[str], jit: dict[str, str] | None = None
    ) -> provision.ConvergeResult:
        """Run boot.yml: preload images into each fresh engine and, given a host's JIT
        config, start its ephemeral runner. JIT configs go in as host variables of an
        inventory that lives in a private temporary directory (never a command line)."""
        inventory = provision.docker_inventory(list(names))
        hostvars = inventory["all"]["children"]["runners"]["hosts"]
        for name, config in (jit or {}).items():
            hostvars[name]["actions_runner_jitconfig"] = config
        # Two tasks: starting Mitogen's interpreter costs more than it saves here (1.5 s and
        # 1.4 CPU-s against 1.1 s and 1.0 CPU-s per host under the stock strategy).
        return provision.converge(inventory, "boot.yml", self.variables, strategy="linear")

    def register(self, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Register each host just in time and start its runner; ({name: runner id},
        problems). Without GitHub settings every host is marked ready unregistered."""
        if self.registrar is None:
            for container in backend.list_hosts(self.name):
                if container.name in names:
                    backend.mark_booted(container)
            return {}, []
        configs: dict[str, str] = {}
        ids: dict[str, str] = {}
        for name in names:
            jit = self.registrar.register(name, self.labels)
            configs[name] = jit.encoded_jit_config
            ids[name] = str(jit.runner.id)
        result = self.boot_hosts(list(configs), configs)
        del configs
        problems = list(result.failures)
        for container in backend.list_hosts(self.name):
            if container.name in ids:
                stats = result.stats.get(container.name, {})
                if stats.get("failures") or stats.get("dark") or container.name not in result.stats:
                    continue
                backend.mark_booted(container)
        return ids, problems

    def validate(
        self, names: Sequence[str], junit: Path | None, canary: bool = True
    ) -> validate.Validation:
        return run_validation(self.name, list(names), self.variables, junit, canary=canary)

    def add(
        self,
        count: int,
        *,
        validate_hosts: bool = True,
        canary: bool = True,
        junit: Path | None = None,
    ) -> list[HostRow]:
        """Start, boot, (validate,) and register ``count`` new hosts; one row per host.

        With validation a host registers only once it has passed the checks (boot.yml runs
        twice: preload, then the runner's start). Without it (``serve`` replacing a used
        runner from an image ``up`` validated) registration and boot are one run.
        """
        self.report(f"starting {count} runner host(s) from {self.current_image()}")
        started = time.monotonic()
        names = self.start(count)
        if self.registrar is not None and not validate_hosts:
            return self._register_and_boot(names, started)
        self.report(f"booting {', '.join(names)} with playbooks/boot.yml")
        result = self.boot_hosts(names)
        rows = self._rows(names, result, time.monotonic() - started, "booted")
        ready = [n for n in names if rows[n].state == "booted"]
        if validate_hosts and ready:
            self.report(
                f"validating {len(ready)} host(s) with tests/runner"
                + (" (with the canary: about a minute)" if canary else " (without the canary)")
            )
            outcome = self.validate(ready, junit, canary=canary)
            for name in ready:
                counts = outcome.counts(name)
                rows[name].checks_passed = counts["passed"]
                rows[name].checks_total = sum(counts.values())
                ok = counts["passed"] == rows[name].checks_total and counts["passed"] > 0
                rows[name].state = "validated" if ok else "checks failed"
            ready = [n for n in ready if rows[n].state == "validated"]
        if ready:
            if self.registrar is not None:
                self.report(f"registering {len(ready)} host(s) with GitHub (just in time)")
            try:
                ids, problems = self.register(ready)
            except (FleetError, GitHubError) as exc:
                ids, problems = {}, [f"{name}: {exc}" for name in ready]
            for name in ready:
                if self.registrar is None:
                    continue
                mine = [p for p in problems if p.startswith(name + ":")]
                if name in ids and not mine:
                    rows[name].state, rows[name].github = "registered", ids[name]
                else:
                    rows[name].state = "register failed"
                    rows[name].problems += mine
        return [rows[n] for n in names]

    def _rows(
        self, names: Sequence[str], result: provision.ConvergeResult, seconds: float, good: str
    ) -> dict[str, HostRow]:
        rows = {}
        for name in names:
            stats = result.stats.get(name, {})
            failed = stats.get("failures") or stats.get("dark") or name not in result.stats
            rows[name] = HostRow(
                name=name,
                state="boot failed" if failed else good,
                converge_seconds=seconds,
                problems=[m for m in result.failures if m.startswith(name + ":")],
            )
        return rows

    def _register_and_boot(self, names: list[str], started: float) -> list[HostRow]:
        assert self.registrar is not None
        self.report(f"registering and booting {', '.join(names)} (JIT, playbooks/boot.yml)")
        configs: dict[str, str] = {}
        ids: dict[str, str] = {}
        problems: list[str] = []
        for name in names:
            try:
                jit = self.registrar.register(name, self.labels)
            except (FleetError, GitHubError) as exc:
                problems.append(f"{name}: {exc}")
                continue
            configs[name], ids[name] = jit.encoded_jit_config, str(jit.runner.id)
        result = (
            self.boot_hosts(list(configs), configs)
            if configs
            else provision.ConvergeResult("failed", 1, 0.0, {}, [])
        )
        del configs
        rows = self._rows(names, result, time.monotonic() - started, "registered")
        for container in backend.list_hosts(self.name):
            row = rows.get(container.name)
            if row is None:
                continue
            row.problems += [p for p in problems if p.startswith(container.name + ":")]
            if row.state == "registered" and container.name in ids:
                row.github = ids[container.name]
                backend.mark_booted(container)
            elif row.state == "registered":
                row.state = "register failed"
        return [rows[n] for n in names]


def fleet_for(
    name: str,
    boot: Bootstrap,
    options: UpOptions,
    registrar: Registrar | None,
    report: Report,
) -> LocalFleet:
    """The fleet as ``up`` configures it (from the command line's options)."""
    return LocalFleet(name, boot, local_extravars(boot, options), options.labels, registrar, report)


def existing_fleet(
    name: str,
    boot: Bootstrap,
    labels: Sequence[str],
    registrar: Registrar | None,
    report: Report,
    vars_file: Path | None = None,
) -> LocalFleet:
    """The fleet as its baked image says it was made (``scale``, ``serve``, ``validate``)."""
    fleet = LocalFleet(
        name, boot, local_extravars(boot, UpOptions(name=name)), labels, registrar, report
    )
    fleet.adopt_image_vars(load_vars_file(vars_file))
    return fleet


def up(options: UpOptions, report: Report, registrar: Registrar | None = None) -> list[HostRow]:
    """Bring the fleet to ``options.runners`` validated hosts; returns one row per host."""
    check_name(options.name)
    if not 1 <= options.runners <= MAX_RUNNERS:
        raise FleetError(
            f"--runners {options.runners} is out of range", hint=f"use 1 to {MAX_RUNNERS}"
        )
    if registrar is not None:
        report(f"checking the GitHub App's access to {registrar.settings.scope_text}")
        registrar.check()
    boot = bootstrap(report, options.cache_dir)
    report(
        f"engine {boot.engine.version} ready, image {boot.images.runner_host} "
        f"({boot.seconds:.1f} s)"
    )
    fleet = fleet_for(options.name, boot, options, registrar, report)
    existing, busy = fleet.checkable()
    if busy:
        report(f"{len(busy)} host(s) running a job, not checked: {', '.join(busy)}")
    rows: dict[str, HostRow] = {}
    current = fleet.ensure_image()
    outdated = fleet.outdated(existing, current)
    if outdated:
        # The playbooks or variables changed: idle hosts of the older image make way for
        # hosts of the new one (deregistered first; a host that took a job meanwhile stays).
        report(f"replacing {len(outdated)} idle host(s) of an older image: {', '.join(outdated)}")
        registrations = fleet.observe().by_name()
        for name in outdated:
            view = registrations.get(name)
            if fleet.retire(name, view.registration if view else None):
                existing.remove(name)
    missing = max(0, options.runners - len(existing) - len(busy))
    if missing:
        check_free_space(report)
        for row in fleet.add(missing, canary=options.canary, junit=options.junit):
            rows[row.name] = row
    if existing:
        report(f"validating {len(existing)} existing host(s) with tests/runner")
        outcome = fleet.validate(existing, options.junit, canary=options.canary)
        for name in existing:
            counts = outcome.counts(name)
            ok = counts["passed"] == sum(counts.values()) and counts["passed"] > 0
            rows[name] = HostRow(
                name=name,
                state="validated" if ok else "checks failed",
                checks_passed=counts["passed"],
                checks_total=sum(counts.values()),
            )
        if registrar is not None:
            registrations = registrar.runners(runner_prefix(options.name))
            for name, row in rows.items():
                if name in existing and name in registrations:
                    row.state, row.github = "registered", str(registrations[name].id)
            waiting = [
                name
                for name, _, probe in fleet.hosts()
                if name in existing
                and rows[name].state == "validated"
                and not probe.unit_started
                and name not in registrations
            ]
            if waiting:
                ids, _ = fleet.register(waiting)
                for name in waiting:
                    if name in ids:
                        rows[name].state, rows[name].github = "registered", ids[name]
    failed = [r for r in rows.values() if r.problems]
    if failed and all(r.state in ("boot failed", "register failed") for r in rows.values()):
        raise FleetError(
            "booting the runner hosts failed:\n  "
            + "\n  ".join(p for r in failed for p in r.problems[:5]),
            hint="fix the task named above, then run `python -m fleet up` again "
            "(hosts are kept; `python -m fleet down` removes them)",
        )
    return [rows[name] for name in sorted(rows)]


def scale(
    name: str,
    count: int,
    options: UpOptions,
    report: Report,
    registrar: Registrar | None = None,
) -> tuple[list[HostRow], list[str]]:
    """Add hosts (from the baked image) or retire idle ones until the fleet has ``count``;
    returns (rows of new hosts, names of retired hosts)."""
    check_name(name)
    check_runner_count(count, "scale")
    boot = bootstrap(report, options.cache_dir)
    fleet = existing_fleet(name, boot, options.labels, registrar, report, options.vars_file)
    live = [n for n, _, probe in fleet.hosts() if probe.running and not probe.finished]
    if count > len(live):
        check_free_space(report)
        return fleet.add(count - len(live), canary=options.canary, junit=options.junit), []
    if count < len(live):
        return [], fleet.retire_idle(len(live) - count)
    return [], []


def run_validation(
    name: str,
    hosts: list[str],
    variables: dict[str, Any],
    junit: Path | None,
    canary: bool = True,
) -> validate.Validation:
    """tests/runner against each host, hosts side by side (one child pytest per host)."""
    junit_path = junit or REPORTS / f"{name}-validation.xml"
    with _runner_vars_file(variables) as runner_vars:
        outcome = validate.validate_each(
            [validate.local_host_spec(host) for host in hosts],
            junit_path,
            runner_vars,
            extra_args=None if canary else NO_CANARY,
        )
    if not outcome.checks:
        raise FleetError(
            "the validation suite ran no checks:\n" + outcome.output[-3000:],
            hint="run `pytest tests/runner --hosts=docker://HOST` by hand to see why",
        )
    return outcome


def status(name: str, registrar: Registrar | None = None) -> list[dict[str, str]]:
    check_name(name)
    registrations = registrar.runners(runner_prefix(name)) if registrar is not None else None
    rows = []
    for container in backend.list_hosts(name):
        probe = backend.probe_host(container)
        registration = (registrations or {}).get(container.name)
        state = host_state(probe, registration, registered_fleet=registrations is not None)
        github = "-"
        if registration is not None:
            github = f"{registration.id} {'busy' if registration.busy else registration.status}"
        rows.append(
            {
                "runner": container.name,
                "state": container.status,
                "runner state": str(state),
                "github": github,
                "image": (container.image.tags or [container.image.short_id])[0],
                "labels": container.labels.get(backend.LABEL_RUNNER_LABELS, ""),
                "started": container.attrs.get("State", {}).get("StartedAt", "")[:19],
            }
        )
    return rows


def down(name: str, registrar: Registrar | None = None, report: Report = print) -> dict[str, int]:
    """Remove every Docker object of the fleet and, with GitHub settings, its registrations
    (a busy one is reported and left: GitHub refuses to delete a runner with a job)."""
    check_name(name)
    deregistered = 0
    if registrar is not None:
        for runner in registrar.runners(runner_prefix(name)).values():
            try:
                deregistered += bool(registrar.deregister(runner))
            except RunnerBusyError:
                report(f"{runner.name} is running a job on GitHub: its registration is left")
    removed = backend.remove_fleet(name)
    removed["registrations"] = deregistered
    removed["jobs files"] = int(JobsFile(default_jobs_path(name)).remove())
    return removed


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"
