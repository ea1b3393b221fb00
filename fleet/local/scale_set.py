"""A local fleet in a runner scale set (``up --scale-set``, ``serve --scale-set``, ``down``).

- ``ScaleSetState`` in ``StateFile``: what the fleet remembers about its scale set, in
  ``/var/lib/fleet/NAME/scale-set.json`` (root only, replaced whole by a rename): its name,
  id and runner group, whether this fleet *created* it (then ``down`` deletes it; an adopted
  one is left alone), and the id of the listener's last session (a restarted ``serve``
  takes that session over instead of waiting for the service to drop it);
- ``connect_service``: the scale-set client (``fleet.core.github.scaleset``) from the
  fleet's GitHub App settings: the App's installation token gets the registration token;
- ``open_scale_set``: create or adopt (``fleet.core.scaleset_listener.adopt_or_create``:
  each look-up once) and remember which;
- ``ScaleSetRegistrar``: what ``LocalFleet`` registers runners through in this mode: JIT
  configs from the scale set (``generatejitconfig``), runners removed through the service
  (``JobStillRunningException`` becomes ``RunnerBusyError``: the host is kept), the fleet's
  runners listed by the REST API (with GitHub's busy flags), as in webhook mode; it also
  carries the scale set as ``join_scale_set`` opened it, which the listener's first run
  takes instead of looking it up again;
- ``serve_lock``: one ``serve`` per fleet on this machine (the scale set has one listener).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fleet.core.clock import Report
from fleet.core.github.errors import GitHubError, GitHubNotFound
from fleet.core.github.runners import Runner, RunnerBusyError
from fleet.core.github.scaleset.errors import AgentNotFound, JobStillRunning
from fleet.core.github.scaleset.models import JitConfig
from fleet.core.github.scaleset.service import ScaleSetService, connect
from fleet.core.github.scaleset.target import Target
from fleet.core.scaleset_listener import OpenedScaleSet, ScaleSetSpec, adopt_or_create
from fleet.errors import FleetError
from fleet.local.registration import ENV_RUNNER_GROUP, GitHubSettings, Registrar
from fleet.local.serve.jobs_file import DEFAULT_DIRECTORY, read_private, write_private

STATE_FORMAT = 1
MOVE_ASIDE = (
    "move it aside and run the command again: the scale set is found by name and adopted "
    "(and `down` then leaves it in place; delete it on GitHub if this fleet made it)"
)


def state_path(fleet: str, directory: Path = DEFAULT_DIRECTORY) -> Path:
    return directory / fleet / "scale-set.json"


@dataclass(frozen=True)
class ScaleSetState:
    """The fleet's scale set as this machine remembers it."""

    name: str
    scale_set_id: int
    runner_group: str
    created: bool  # by this fleet: `down` deletes it
    labels: tuple[str, ...] = ()
    session_id: str = ""  # the listener's last session, for a take-over after a restart

    def to_dict(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, **asdict(self), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: Any) -> ScaleSetState:
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ValueError(f"not a scale-set state of format {STATE_FORMAT}")
        try:
            return cls(
                name=str(data["name"]),
                scale_set_id=int(data["scale_set_id"]),
                runner_group=str(data["runner_group"]),
                created=bool(data["created"]),
                labels=tuple(str(label) for label in data.get("labels", ())),
                session_id=str(data.get("session_id", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a scale-set state lacks or garbles a field: {exc!r}") from exc

    def describe(self) -> str:
        how = "created by this fleet" if self.created else "adopted"
        return f"scale set {self.name!r} (id {self.scale_set_id}, {how})"


class StateFile:
    """``ScaleSetState`` on disk (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> ScaleSetState | None:
        text = read_private(
            self.path,
            "the fleet's scale-set state",
            hint="run as root (the state is readable by root only)",
        )
        if text is None:
            return None
        try:
            return ScaleSetState.from_dict(json.loads(text))
        except ValueError as exc:
            raise FleetError(
                f"the fleet's scale-set state {self.path} is not readable: {exc}", hint=MOVE_ASIDE
            ) from exc

    def save(self, state: ScaleSetState) -> None:
        try:
            write_private(self.path, json.dumps(state.to_dict(), indent=1))
        except OSError as exc:
            raise FleetError(
                f"cannot write the fleet's scale-set state {self.path}: {exc.strerror or exc}",
                hint="run as root: the fleet remembers its scale set under /var/lib/fleet",
            ) from exc

    def remember_session(self, session_id: str) -> None:
        current = self.load()
        if current is not None and current.session_id != session_id:
            self.save(replace(current, session_id=session_id))

    def remove(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # the jobs file or a lock still lives there
            self.path.parent.rmdir()
        return True


@contextlib.contextmanager
def serve_lock(fleet: str, directory: Path) -> Iterator[None]:
    """Held while ``serve`` runs: a second ``serve`` of the fleet is refused (the kernel
    drops the lock with the process, so a killed ``serve`` leaves none behind)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FleetError(
                f"another `serve` of fleet {fleet!r} runs on this machine",
                hint="a scale set has one listener: stop the other one first (SIGTERM)",
            ) from None
        yield
    finally:
        os.close(handle)


def refuse_webhook_options(flags: dict[str, object]) -> None:
    """``serve --scale-set`` with webhook options (``{flag: value or None}``): refused."""
    given = [flag for flag, value in flags.items() if value is not None]
    if given:
        raise FleetError(
            f"{given[0]} is not used with --scale-set: a scale set's jobs come from GitHub's "
            "message queue over an outbound connection, so serve opens no port and keeps no "
            "jobs file",
            hint=f"drop {' and '.join(given)} (and the App's webhook), or drop --scale-set to "
            "take webhooks",
        )


def connect_service(registrar: Registrar) -> ScaleSetService:
    """The scale-set client for the fleet's scope, through the App's installation token."""
    return connect(
        registrar.client, registrar.installation_auth(), Target(scope=registrar.settings.scope)
    )


def scale_set_spec(name: str, settings: GitHubSettings, labels: Sequence[str]) -> ScaleSetSpec:
    """The scale set a fleet listens on: its name first (what ``runs-on: NAME`` names), then
    the fleet's labels; in the fleet's runner group (``Default`` without one)."""
    wanted = tuple(dict.fromkeys((name, *labels)))
    return ScaleSetSpec(name=name, runner_group=settings.runner_group or "Default", labels=wanted)


def open_scale_set(
    service: ScaleSetService, spec: ScaleSetSpec, state_file: StateFile, report: Report
) -> tuple[ScaleSetState, OpenedScaleSet]:
    """Create or adopt the scale set of ``spec`` and remember which (see the module
    docstring): what the fleet remembers, and the scale set as the service answered. A fleet
    still holding a scale set it created under another name is refused: ``down`` would lose
    track of it."""
    previous = state_file.load()
    if previous is not None and previous.name != spec.name:
        if previous.created:
            raise FleetError(
                f"this fleet created {previous.describe()} and is still in it",
                hint=f"pass --scale-set {previous.name}, or run `python -m fleet down` first "
                "(it deletes that scale set)",
            )
        previous = None  # an adopted one is simply left
    try:
        opened = adopt_or_create(service, spec)
    except GitHubNotFound as exc:
        raise FleetError(
            f"scale set {spec.name!r}: {exc}",
            hint=f"create the runner group, or set {ENV_RUNNER_GROUP} to an existing one",
        ) from exc
    same = previous is not None and previous.scale_set_id == opened.id
    state = ScaleSetState(
        name=spec.name,
        scale_set_id=opened.id,
        runner_group=spec.runner_group,
        created=opened.created or (same and previous is not None and previous.created),
        labels=opened.scale_set.label_names,
        session_id=previous.session_id if same and previous is not None else "",
    )
    state_file.save(state)
    if previous is None or not same:
        report(
            f"{'created' if opened.created else 'adopted'} {state.describe()} in runner group "
            f"{spec.runner_group!r} with labels {','.join(state.labels)}"
        )
    return state, opened


class ScaleSetRegistrar:
    """A ``Registrar`` for a fleet in a scale set (see the module docstring)."""

    def __init__(
        self,
        rest: Registrar,
        service: ScaleSetService,
        state: ScaleSetState,
        opened: OpenedScaleSet | None = None,
    ) -> None:
        self.rest = rest
        self.service = service
        self.state = state
        self._opened = opened  # by join_scale_set, for the listener's first run

    def take_opened(self) -> OpenedScaleSet | None:
        """The scale set as ``join_scale_set`` opened it, once (then None): the listener's
        first run starts from it; a later run looks the scale set up again."""
        opened, self._opened = self._opened, None
        return opened

    def __repr__(self) -> str:
        return f"ScaleSetRegistrar({self.state.describe()}, rest={self.rest!r})"

    @property
    def settings(self) -> GitHubSettings:
        return self.rest.settings

    @property
    def client(self) -> Any:
        return self.rest.client

    def check(self) -> None:
        self.rest.check()

    def register(self, name: str, labels: Sequence[str] = ()) -> JitConfig:
        """A JIT config for runner ``name`` of the scale set (whose labels apply)."""
        try:
            return self.service.generate_jit_config(self.state.scale_set_id, name)
        except GitHubError as exc:
            raise FleetError(
                f"{self.state.describe()} refused a JIT config for {name}: {exc}",
                hint="run `python -m fleet status` (is the scale set still there?)",
            ) from exc

    def runners(self, prefix: str) -> dict[str, Runner]:
        return self.rest.runners(prefix)

    def deregister(self, runner: Runner) -> bool:
        """Remove the runner from the scale set; False if gone; ``RunnerBusyError`` if the
        service answers ``JobStillRunningException`` (the host is kept)."""
        try:
            self.service.remove_runner(runner.id)
        except JobStillRunning as exc:
            raise RunnerBusyError(exc.method, exc.path, exc.status, exc.message) from exc
        except AgentNotFound:
            return False
        return True


def delete_if_created(registrar: Registrar | None, state_file: StateFile, report: Report) -> str:
    """``down``: delete the scale set if this fleet created it; what was done, in words."""
    state = state_file.load()
    if state is None:
        return ""
    if not state.created:
        state_file.remove()
        return f"{state.describe()} left in place: this fleet did not create it"
    if registrar is None:
        return (
            f"{state.describe()} NOT deleted: no GitHub App settings were given "
            "(run `down` again with them)"
        )
    try:
        gone = connect_service(registrar).delete_scale_set(state.scale_set_id)
    except GitHubError as exc:
        report(f"deleting {state.describe()} failed: {exc}")
        return f"{state.describe()} NOT deleted (GitHub refused: run `down` again)"
    state_file.remove()
    return f"deleted {state.describe()}" + ("" if gone else " (it was already gone)")


def join_scale_set(
    rest: Registrar,
    fleet: str,
    name: str,
    labels: Sequence[str],
    report: Report,
    directory: Path = DEFAULT_DIRECTORY,
) -> tuple[ScaleSetRegistrar, ScaleSetSpec, StateFile]:
    """``up``/``serve --scale-set NAME``: the scale set created or adopted, and the registrar
    that registers the fleet's hosts into it."""
    state_file = StateFile(state_path(fleet, directory))
    spec = scale_set_spec(name, rest.settings, labels)
    service = connect_service(rest)
    state, opened = open_scale_set(service, spec, state_file, report)
    return ScaleSetRegistrar(rest, service, state, opened), spec, state_file


def registrar_in_use(
    rest: Registrar | None, fleet: str, directory: Path = DEFAULT_DIRECTORY
) -> Registrar | ScaleSetRegistrar | None:
    """For ``scale`` and ``down``: the scale set's registrar when the fleet is in one (its
    state says so), else the REST one."""
    state = StateFile(state_path(fleet, directory)).load() if rest is not None else None
    if rest is None or state is None:
        return rest
    return ScaleSetRegistrar(rest, connect_service(rest), state)
