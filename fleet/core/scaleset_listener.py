"""The scale-set listener both fleets run: messages in, a desired runner count out.

``run_listener`` does, in order:

1. **create or adopt** the scale set (``adopt_or_create``): found by name in its runner
   group and adopted (its labels corrected if they differ), else created. A caller that did
   this already (``serve`` does, to remember the scale set before it listens) passes the
   ``OpenedScaleSet`` as ``opened`` and no look-up is made again;
2. **open a session** (``open_session``). A 409 means another session is open. If the caller
   remembers the id of a session it opened before (a restarted ``serve``, a listener function
   that did not get to close), that session is closed first: a *take-over* of its own. A 409
   that remains is *waited out*: retried every ``conflict_retry`` seconds for up to
   ``conflict_wait`` seconds (the service drops a session nobody polls), then raised as
   ``SessionConflict``: two listeners must not share a scale set, so the second gives up;
3. **listen** (``Listener.run``): the session's statistics first, then long polls with
   ``lastMessageId``; each message's ``JobAvailable`` jobs are acquired, the desired count
   ``core.scaling.desired_runners`` (min(max, min idle + assigned)) goes to the callback with
   the statistics and the jobs that started and completed, and only then is the message
   deleted: a crash in between means the message comes again (at least once; acquiring is
   idempotent). A quiet poll (202) hands the last count again. The loop ends when ``stop`` is
   set, at ``until`` (clock time) or after ``max_polls``; a poll that returns at once is
   followed by a pause of ``min_poll_interval`` (no busy loop); transient GitHub errors back
   off, and more than ``max_failures`` in a row end the run;
4. **close the session**, whatever ended the run. A caller that stops the run from another
   thread may delete the session itself (``MessageSession.close_other``): the long poll in
   flight then ends with ``SessionGone`` and the run ends as "stopped".

I/O only through the client (``MessageSession``, ``ScaleSetService``); the clock and the stop
signal (``wait(seconds) -> stopped``, a ``threading.Event`` fits) are injected. The callback
is the one seam between the fleets: the local autoscaler and the AWS scaler both take a
``ScaleUpdate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fleet.core.github.errors import GitHubError, GitHubNotFound
from fleet.core.github.scaleset.errors import SessionConflict, SessionGone
from fleet.core.github.scaleset.messages import JobCompleted, JobStarted, Message
from fleet.core.github.scaleset.models import Label, RunnerGroup, ScaleSet, Statistics
from fleet.core.github.scaleset.service import ScaleSetService
from fleet.core.github.scaleset.session import MessageSession
from fleet.core.scaling import desired_runners

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class StopSignal(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class ScaleSetSpec:
    """The scale set to listen on: its name (what ``runs-on`` names), group and labels."""

    name: str
    runner_group: str = "Default"
    labels: tuple[str, ...] = ()

    @property
    def wanted_labels(self) -> tuple[str, ...]:
        return self.labels or (self.name,)


@dataclass(frozen=True)
class ListenerLimits:
    min_idle: int = 0
    max_runners: int = 10
    conflict_wait: float = 180.0
    conflict_retry: float = 15.0
    min_poll_interval: float = 1.0
    max_failures: int = 5
    failure_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.min_idle < 0 or self.max_runners < 0:
            raise ValueError("min_idle and max_runners must be >= 0")
        if self.conflict_retry <= 0 or self.failure_backoff <= 0 or self.max_failures < 1:
            raise ValueError("conflict_retry and failure_backoff > 0, max_failures >= 1")


@dataclass(frozen=True)
class ScaleUpdate:
    """What the listener hands the fleet: how many runners it should have, and why."""

    desired: int
    statistics: Statistics
    message_id: int | None = None  # None: the session's statistics or a quiet poll
    acquired: tuple[int, ...] = ()
    started: tuple[JobStarted, ...] = ()
    completed: tuple[JobCompleted, ...] = ()


ScaleCallback = Callable[[ScaleUpdate], None]


@dataclass
class ListenerReport:
    scale_set_id: int = 0
    session_id: str = ""
    polls: int = 0
    messages: int = 0
    acquired: list[int] = field(default_factory=list)
    failures: int = 0
    closed: bool = False
    ended: str = ""


@dataclass(frozen=True)
class OpenedScaleSet:
    """A scale set as ``adopt_or_create`` left it: the service's answer, its runner group,
    and whether this call created it (else it was adopted)."""

    scale_set: ScaleSet
    group: RunnerGroup
    created: bool

    @property
    def id(self) -> int:
        if self.scale_set.id is None:
            raise ValueError(f"the service sent scale set {self.scale_set.name!r} without an id")
        return self.scale_set.id


def adopt_or_create(service: ScaleSetService, spec: ScaleSetSpec) -> OpenedScaleSet:
    """The scale set of ``spec``: adopted if it exists (labels corrected), else created.
    Two look-ups (the group, the scale set), then a create or a relabel if needed."""
    group = service.runner_group(spec.runner_group)
    found = service.get_scale_set(group.id, spec.name)
    wanted = spec.wanted_labels
    if found is None:
        log.info("creating scale set %s in runner group %s", spec.name, spec.runner_group)
        return OpenedScaleSet(service.create_scale_set(spec.name, group.id, wanted), group, True)
    if sorted(found.label_names) != sorted(wanted) and found.id is not None:
        changed = found.model_copy(update={"labels": tuple(Label(name=n) for n in wanted)})
        found = service.update_scale_set(found.id, changed)
    return OpenedScaleSet(found, group, False)


def open_session(
    session: MessageSession,
    limits: ListenerLimits,
    *,
    clock: Clock,
    stop: StopSignal,
    previous_session_id: str | None = None,
) -> bool:
    """Open ``session`` (see the module docstring); False if ``stop`` came first."""
    if previous_session_id:
        closed = session.close_other(previous_session_id)
        log.info("took over session %s (it was %s)", previous_session_id, closed and "open")
    deadline = clock() + limits.conflict_wait
    while True:
        try:
            session.open()
            return True
        except SessionConflict:
            if clock() + limits.conflict_retry > deadline:
                raise
            log.info("scale set session busy; retrying in %.0fs", limits.conflict_retry)
            if stop.wait(limits.conflict_retry):
                return False


class Listener:
    """The message loop of one open session (see the module docstring, step 3)."""

    def __init__(
        self,
        session: MessageSession,
        limits: ListenerLimits,
        on_scale: ScaleCallback,
        *,
        clock: Clock = time.monotonic,
        stop: StopSignal,
    ) -> None:
        self.session = session
        self.limits = limits
        self.on_scale = on_scale
        self.clock = clock
        self.stop = stop
        self.last_message_id = 0
        self.statistics = Statistics()

    def _desired(self) -> int:
        return desired_runners(
            self.statistics.total_assigned_jobs,
            min_idle=self.limits.min_idle,
            max_runners=self.limits.max_runners,
        )

    def handle(self, message: Message) -> tuple[int, ...]:
        """Acquire, hand over the count, then delete (see the module docstring)."""
        self.statistics = message.statistics
        acquired: tuple[int, ...] = ()
        if message.available:
            acquired = self.session.acquire_jobs([m.runner_request_id for m in message.available])
        self.on_scale(
            ScaleUpdate(
                self._desired(),
                self.statistics,
                message.message_id,
                acquired,
                message.started,
                message.completed,
            )
        )
        self.session.delete_message(message.message_id)
        self.last_message_id = message.message_id
        return acquired

    def _should_stop(
        self, report: ListenerReport, until: float | None, max_polls: int | None
    ) -> str:
        if self.stop.is_set():
            return "stopped"
        if until is not None and self.clock() >= until:
            return "deadline"
        if max_polls is not None and report.polls >= max_polls:
            return "max polls"
        return ""

    def run(
        self, report: ListenerReport, *, until: float | None = None, max_polls: int | None = None
    ) -> ListenerReport:
        opened = self.session.session
        if opened is not None:
            self.statistics = opened.statistics
            self.on_scale(ScaleUpdate(self._desired(), self.statistics))
        failures = 0
        while not (ended := self._should_stop(report, until, max_polls)):
            started = self.clock()
            report.polls += 1
            try:
                message = self.session.get_message(self.last_message_id, self.limits.max_runners)
                if message is None:
                    self.on_scale(ScaleUpdate(self._desired(), self.statistics))
                else:
                    report.acquired.extend(self.handle(message))
                    report.messages += 1
                failures = 0
            except GitHubError as exc:
                if not exc.transient or failures + 1 >= self.limits.max_failures:
                    raise
                failures += 1
                report.failures += 1
                log.warning("scale-set poll failed (%d in a row): %s", failures, exc)
                self.stop.wait(self.limits.failure_backoff * failures)
                continue
            if message is None and self.clock() - started < self.limits.min_poll_interval:
                self.stop.wait(self.limits.min_poll_interval)  # a poll that did not hold
        report.ended = ended
        return report


def run_listener(
    service: ScaleSetService,
    spec: ScaleSetSpec,
    limits: ListenerLimits,
    on_scale: ScaleCallback,
    *,
    owner: str,
    stop: StopSignal,
    clock: Clock = time.monotonic,
    until: float | None = None,
    max_polls: int | None = None,
    previous_session_id: str | None = None,
    on_session: Callable[[int, str], None] | None = None,
    session_factory: Callable[[ScaleSetService, int, str], MessageSession] = MessageSession,
    opened: OpenedScaleSet | None = None,
) -> ListenerReport:
    """Create or adopt, open, listen, close (see the module docstring).

    ``opened``: the scale set of ``spec`` as the caller just created or adopted it; without
    it, this run does that first. ``on_session(scale_set_id, session_id)`` is told the
    session once it is open, so the caller can remember it for a later take-over.
    """
    scale_set_id = (opened or adopt_or_create(service, spec)).id
    report = ListenerReport(scale_set_id=scale_set_id)
    session = session_factory(service, scale_set_id, owner)
    if not open_session(
        session, limits, clock=clock, stop=stop, previous_session_id=previous_session_id
    ):
        report.ended = "stopped"
        return report
    assert session.session is not None
    report.session_id = session.session.session_id
    try:
        if on_session is not None:
            on_session(scale_set_id, report.session_id)
        listener = Listener(session, limits, on_scale, clock=clock, stop=stop)
        try:
            listener.run(report, until=until, max_polls=max_polls)
        except (GitHubNotFound, SessionGone):
            if stop.is_set():  # the stopping caller deleted it: the poll in flight ended
                report.ended = "stopped"
            else:
                log.warning("the session is gone (expired or taken over); ending this run")
                report.ended = "session gone"
    finally:
        try:
            report.closed = session.close()
        except GitHubError as exc:
            log.warning("could not close scale-set session %s: %s", report.session_id, exc)
    return report
