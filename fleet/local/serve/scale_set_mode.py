"""``serve --scale-set NAME``: the fleet sized by a runner scale set's listener, no webhook port.

Two threads, one fleet:

- **the listener** (``ListenerThread``) runs ``fleet.core.scaleset_listener.run_listener``:
  one session on the scale set, long polls over an outbound connection, ``JobAvailable``
  acquired, and each message's desired count (``fleet.core.scaling.desired_runners``:
  min(--max, --idle + assigned jobs)) handed to ``ScaleSetDemand`` before the message is
  deleted. The session's id is remembered in the fleet's scale-set state, so a restarted
  ``serve`` takes its own old session over at once; a 409 that remains (a listener elsewhere)
  is waited out for ``conflict_wait`` seconds, then ``serve`` stops with an error. A run that
  fails (GitHub trouble) is started again after a back-off; ``stop`` closes the session.
- **the reconcile loop** (``ScaleSetAutoscaler``: the webhook mode's loop and cycle, woken at
  once by each update): observe, clear away used hosts, ``fleet.core.scaling.decide`` with the
  jobs the desired count leaves uncovered (``pending_jobs``), retire idle hosts beyond it
  through ``fleet.core.retire`` (the service's ``JobStillRunningException`` keeps a host), start
  hosts with scale-set JIT configs.

A message is deleted only after the demand took it, and the service's statistics count a job
assigned until it ends, so a job acquired before a crash is counted again by the next
session: none is lost. Busy runners are never retired, whatever the count says.
"""

from __future__ import annotations

import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fleet.core.clock import Report
from fleet.core.github.errors import GitHubError
from fleet.core.github.scaleset.errors import SessionConflict
from fleet.core.github.scaleset.models import Statistics
from fleet.core.github.scaleset.service import ScaleSetService
from fleet.core.github.scaleset.session import MessageSession
from fleet.core.scaleset_listener import ListenerLimits, ScaleSetSpec, ScaleUpdate, run_listener
from fleet.errors import FleetError
from fleet.local.observe import HostState, Observation
from fleet.local.scale_set import ScaleSetRegistrar, StateFile, open_scale_set, serve_lock
from fleet.local.serve.autoscaler import Autoscaler
from fleet.local.serve.intake import Intake
from fleet.local.serve.reconciler import Fleet, Reconciler, ServeOptions

MAX_RUNNING_NAMES = 1000


def pending_jobs(desired: int | None, *, min_idle: int, busy: int) -> int:
    """Pure: the jobs the scale set wants a runner for that neither a busy host nor the warm
    idle ones cover; ``decide`` adds ``min_idle`` and the busy hosts back, so its target is
    max(desired, busy + min_idle). None (no word from the listener yet): none."""
    if desired is None:
        return 0
    return max(0, desired - min_idle - busy)


class ScaleSetDemand:
    """What the listener last said, for the reconcile loop (thread-safe): the desired count,
    the statistics, and the runners a job started on and did not complete yet (a bounded
    set: the job ledger of this mode, which GitHub's lagging busy flag does not replace)."""

    def __init__(self, wake: threading.Event, report: Report = lambda _line: None) -> None:
        self.wake = wake
        self.report = report
        self._lock = threading.Lock()
        self._desired: int | None = None
        self.heard = threading.Event()  # set by the first update (the session's statistics)
        self.statistics = Statistics()
        self.updates = 0
        self._running: OrderedDict[str, None] = OrderedDict()

    def update(self, update: ScaleUpdate) -> None:
        with self._lock:
            changed = update.desired != self._desired
            self._desired, self.statistics = update.desired, update.statistics
            self.updates += 1
            for started in update.started:
                if started.runner_name:
                    self._running[started.runner_name.casefold()] = None
            for completed in update.completed:
                self._running.pop(completed.runner_name.casefold(), None)
            while len(self._running) > MAX_RUNNING_NAMES:
                self._running.popitem(last=False)
        if update.acquired:
            self.report(f"scale set: acquired job(s) {', '.join(map(str, update.acquired))}")
        if changed:
            stats = update.statistics
            self.report(
                f"scale set: {stats.total_assigned_jobs} job(s) assigned, "
                f"{stats.total_running_jobs} running: {update.desired} runner(s) wanted"
            )
        self.heard.set()
        if changed or update.message_id is not None:
            self.wake.set()

    def desired(self) -> int | None:
        with self._lock:
            return self._desired

    def busy_runner_names(self) -> set[str]:
        with self._lock:
            return set(self._running)


class ScaleSetReconciler(Reconciler):
    """The webhook mode's cycle, with the listener's word for demand and busy runners."""

    def __init__(self, fleet: Fleet, options: ServeOptions, demand: ScaleSetDemand, report: Report):
        super().__init__(fleet, options, Intake(), report)
        self.demand = demand

    def _busy_names(self) -> set[str]:
        return self.demand.busy_runner_names()

    def _queued(self, seen: Observation) -> int:
        """Jobs the desired count leaves uncovered. A job started on a host that is no longer
        busy (finished, or gone) still counts in the last count until its ``JobCompleted``
        arrives: such hosts count as covering it, so no host is started for a job just done."""
        busy = {host.name.casefold() for host in seen.hosts if host.state is HostState.BUSY}
        finishing = len(self.demand.busy_runner_names() - busy)
        return pending_jobs(
            self.demand.desired(), min_idle=self.options.idle, busy=len(busy) + finishing
        )


@dataclass(frozen=True)
class Restarts:
    """How long the listener waits before running again after a failed run."""

    first: float = 10.0
    longest: float = 300.0

    def delay(self, failures: int) -> float:
        return min(self.longest, self.first * 2 ** max(0, failures - 1))


DEFAULT_RESTARTS = Restarts()


class ListenerThread:
    """``run_listener`` on its own thread, run again after a failure, until ``stop()``."""

    def __init__(
        self,
        registrar: ScaleSetRegistrar,
        spec: ScaleSetSpec,
        limits: ListenerLimits,
        demand: ScaleSetDemand,
        state_file: StateFile,
        report: Report,
        *,
        on_fatal: Callable[[str], None],
        owner: str | None = None,
        restarts: Restarts = DEFAULT_RESTARTS,
        session_factory: Callable[[ScaleSetService, int, str], MessageSession] = MessageSession,
    ) -> None:
        self.registrar = registrar
        self.spec = spec
        self.limits = limits
        self.demand = demand
        self.state_file = state_file
        self.report = report
        self.on_fatal = on_fatal
        self.owner = owner or f"fleet-serve@{socket.gethostname()}"
        self.restarts = restarts
        self.session_factory = session_factory
        self.stopping = threading.Event()
        self.session_id = ""
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, daemon=True, name="scale-set")

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        """End the run: the session is deleted at once (a long poll in flight then ends with
        it), and the thread is given ``timeout`` seconds to close up."""
        self.stopping.set()
        session_id = self.session_id
        if session_id:
            try:
                service = self.registrar.service
                holder = MessageSession(service, self.registrar.state.scale_set_id, self.owner)
                holder.close_other(session_id)
                self.state_file.remember_session("")
            except (GitHubError, FleetError) as exc:
                self.report(f"could not close scale-set session {session_id}: {exc}")
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _remember(self, _scale_set_id: int, session_id: str) -> None:
        self.session_id = session_id
        self.state_file.remember_session(session_id)
        self.report(f"listening on {self.registrar.state.describe()} (session {session_id})")

    def _loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                self._run_once()
                failures = 0
            except SessionConflict as exc:
                self.on_fatal(
                    f"{exc.message}; it stayed busy for {self.limits.conflict_wait:.0f} s: another "
                    "listener holds the scale set (a serve on another machine?)"
                )
                return
            except (GitHubError, FleetError, ValueError) as exc:  # ValueError: a garbled answer
                failures += 1
                delay = self.restarts.delay(failures)
                self.report(f"scale-set listener failed: {exc}; listening again in {delay:.0f} s")
                self.stopping.wait(delay)
                continue
            except Exception as exc:  # a bug: say so and stop, rather than serve blind
                self.on_fatal(f"the scale-set listener crashed: {exc!r}")
                raise
            self.stopping.wait(1.0)  # a run that ended by itself (its session gone): pause

    def _run_once(self) -> None:
        previous = self.state_file.load()
        # The first run starts from the scale set `join_scale_set` just opened; a later one
        # (after a failure, or its session gone) looks again: it may have been deleted.
        opened = self.registrar.take_opened()
        if opened is None:
            service = self.registrar.service
            state, opened = open_scale_set(service, self.spec, self.state_file, self.report)
            self.registrar.state = state
        self.runs += 1
        outcome = run_listener(
            self.registrar.service,
            self.spec,
            self.limits,
            self.demand.update,
            owner=self.owner,
            stop=self.stopping,
            previous_session_id=(previous.session_id or None) if previous else None,
            on_session=self._remember,
            session_factory=self.session_factory,
            opened=opened,
        )
        if outcome.closed:
            self.state_file.remember_session("")
        self.session_id = ""
        if not self.stopping.is_set():
            self.report(f"scale-set listener ended ({outcome.ended}); listening again")


class ScaleSetAutoscaler(Autoscaler):
    """The serve loop in scale-set mode (see the module docstring)."""

    def __init__(
        self,
        fleet: Fleet,
        options: ServeOptions,
        report: Report,
        *,
        registrar: ScaleSetRegistrar,
        spec: ScaleSetSpec,
        state_file: StateFile,
        limits: ListenerLimits | None = None,
        restarts: Restarts = DEFAULT_RESTARTS,
        session_factory: Callable[[ScaleSetService, int, str], MessageSession] = MessageSession,
        first_word: float = 60.0,
    ) -> None:
        if options.port is not None:
            raise FleetError("a scale set needs no webhook port", hint="drop --webhook-port")
        super().__init__(fleet, options, report)
        self.demand = ScaleSetDemand(self.intake.wake, report)
        self.reconciler = ScaleSetReconciler(fleet, options, self.demand, report)
        self.failure = ""
        self.listener = ListenerThread(
            registrar,
            spec,
            limits or ListenerLimits(min_idle=options.idle, max_runners=options.max_size),
            self.demand,
            state_file,
            report,
            on_fatal=self._fatal,
            restarts=restarts,
            session_factory=session_factory,
        )
        self.state_file = state_file
        self.first_word = first_word

    def _fatal(self, problem: str) -> None:
        self.failure = problem
        self.stop()

    def stop(self) -> None:
        super().stop()
        self.demand.heard.set()  # no more waiting for the first word

    def run(self) -> int:
        state = self.listener.registrar.state
        with serve_lock(self.fleet.name, self.state_file.path.parent):
            self.report(
                f"{state.describe()}: jobs come from GitHub's message queue over an outbound "
                f"connection (no webhook port); runners wanted = min({self.options.max_size}, "
                f"{self.options.idle} idle + assigned jobs)"
            )
            self.listener.start()
            try:
                # The first cycle waits (bounded) for the session's statistics: deciding
                # without them could retire an idle host a waiting job is about to take.
                if not self.demand.heard.wait(self.first_word) and not self.stopping.is_set():
                    self.report(
                        f"no word from the scale set within {self.first_word:.0f} s: cycles "
                        "run on the --idle target until the listener reports"
                    )
                code = super().run()
            finally:
                self.listener.stop()
        if self.failure:
            self.report(f"problem: {self.failure}")
            return 1
        return code
