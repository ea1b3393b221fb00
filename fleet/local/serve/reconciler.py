"""`python -m fleet serve`: the autoscaler of a local fleet, for one machine.

Each cycle reads the fleet (Docker labels + what each host reports + GitHub's runners),
clears away hosts that are done (ephemeral runner finished its job) or were stopped from
outside, asks ``fleet.core.scaling.decide`` what the fleet should be, and realises that: retire
idle hosts beyond the target (deregister first, never a busy one), end hosts that never
registered, and start fresh hosts from the baked image. Demand comes from ``workflow_job``
webhooks (checked by ``fleet.core.webhook``, the same code as the Lambda function) on a local
port; GitHub's runner list is polled every cycle. The fleet itself is read from Docker and
GitHub every cycle; the jobs webhooks announced are kept in a file (``serve.jobs_file``),
saved before each webhook is answered, so that a restarted ``serve`` still serves a job
queued before the restart.

With webhooks and GitHub App settings, serve also catches up on what webhooks missed, as the
AWS reaper does: on its first cycle and every ``redeliver_every`` seconds it asks GitHub to
redeliver failed deliveries (GitHub never retries them; a redelivery keeps its delivery id,
so ``Intake`` ignores one that did arrive), and it looks up on GitHub the jobs queued or in
progress with no news for ``stale_after`` seconds, merging what GitHub says into ``Intake``
(a lost ``completed`` no longer holds a host; a lost ``in_progress`` no longer hides a busy
runner; a job of a deleted run is forgotten). GitHub trouble there is a cycle problem.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fleet.core import ledger
from fleet.core.github.actions import WorkflowJobStatus, get_job
from fleet.core.github.client import (
    GitHubApp,
    GitHubError,
    GitHubForbidden,
    GitHubNotFound,
    GitHubValidationError,
)
from fleet.core.github.deliveries import RedeliveryReport, redeliver_failed
from fleet.core.github.runners import Runner
from fleet.core.ledger import JobEvent, JobRecord, JobState
from fleet.core.scaling import Decision, FleetLimits, decide
from fleet.core.webhook import DEFAULT_MAX_BODY_BYTES, QueuedDelivery, handle_delivery
from fleet.errors import FleetError
from fleet.local.hosts import retire_host
from fleet.local.observe import HostProbe, Observation
from fleet.local.registration import Registrar, RunnerBusyError
from fleet.local.serve.jobs_file import MOVE_ASIDE_HINT, JobsFile

Report = Callable[[str], None]
Clock = Callable[[], datetime]


class Fleet(Protocol):
    """What the autoscaler needs from a fleet (``fleet.local.fleet.LocalFleet`` in production)."""

    name: str
    labels: tuple[str, ...]

    @property
    def registered(self) -> bool: ...

    def observe(self, busy_names: Iterable[str] = ()) -> Observation: ...

    def probe(self, name: str) -> HostProbe: ...

    def remove(self, name: str) -> None: ...

    def remove_orphans(self) -> list[str]: ...

    def deregister(self, registration: Runner) -> bool: ...

    def add(self, count: int, *, validate_hosts: bool = ..., canary: bool = ...) -> list[Any]: ...


@dataclass(frozen=True)
class ServeOptions:
    """How the autoscaler runs; see ``python -m fleet serve --help``."""

    idle: int = 1
    min_size: int = 0
    max_size: int = 10
    interval: float = 15.0
    idle_grace: float = 120.0
    boot_deadline: float = 600.0
    max_lifetime: float = 8 * 3600.0
    max_launch_per_cycle: int = 4
    bind: str = "127.0.0.1"
    port: int | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    allowed_owners: tuple[str, ...] | None = None
    validate: bool = False
    once: bool = False
    max_cycles: int | None = None
    # Catching up with GitHub (only with webhooks and GitHub App settings); 0 turns either off.
    redeliver_every: float = 300.0
    redeliver_lookback: float = 3600.0  # how far back the first redelivery pass looks
    stale_after: float = 600.0
    max_job_lookups: int = 20  # per cycle: bounds the API calls a backlog can cost

    def limits(self) -> FleetLimits:
        try:
            return FleetLimits(
                min_size=self.min_size,
                max_size=self.max_size,
                warm_idle=self.idle,
                max_lifetime=timedelta(seconds=self.max_lifetime),
                boot_deadline=timedelta(seconds=self.boot_deadline),
                max_scale_up_per_cycle=self.max_launch_per_cycle,
                idle_grace=timedelta(seconds=self.idle_grace),
            )
        except ValueError as exc:
            raise FleetError(str(exc), hint="see `python -m fleet serve --help`") from exc


# --- jobs from webhooks --------------------------------------------------------------------


SNAPSHOT_FORMAT = 1


def _read_snapshot(data: Any) -> tuple[list[tuple[JobRecord, datetime]], list[str]]:
    """The jobs (record, last heard of) and delivery ids of an ``Intake.snapshot``."""
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a job intake snapshot of format {SNAPSHOT_FORMAT}")
    jobs, deliveries = data.get("jobs"), data.get("deliveries")
    if not isinstance(jobs, list) or not isinstance(deliveries, list):
        raise ValueError("a job intake snapshot holds a list of jobs and a list of deliveries")
    entries = []
    for index, entry in enumerate(jobs):
        try:
            record = JobRecord.from_dict(entry["record"])
            heard = datetime.fromisoformat(entry["heard"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"job {index} of the snapshot is not readable: {exc!r}") from exc
        if heard.tzinfo is None:
            raise ValueError(f"job {index} of the snapshot has a time without a time zone")
        entries.append((record, heard))
    if not all(isinstance(d, str) for d in deliveries):
        raise ValueError("delivery ids in a job intake snapshot are strings")
    return entries, deliveries


class Intake:
    """Jobs seen through webhooks: a job ledger in memory, deduplicated on delivery id, that
    hands a snapshot to ``persist`` on each accepted delivery and on ``save`` (serve's jobs
    file).

    Bounded: at most ``max_jobs`` jobs and ``max_deliveries`` remembered delivery ids;
    finished jobs are forgotten after ``keep_completed``, stuck ones after ``keep_open``.
    """

    def __init__(
        self,
        *,
        max_jobs: int = 10_000,
        max_deliveries: int = 10_000,
        keep_completed: timedelta = timedelta(hours=1),
        keep_open: timedelta = timedelta(hours=24),
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._jobs: OrderedDict[int, tuple[JobRecord, datetime]] = OrderedDict()
        self._deliveries: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._max_deliveries = max_deliveries
        self._keep_completed = keep_completed
        self._keep_open = keep_open
        self._clock = clock
        self.wake = threading.Event()  # set on news: the autoscaler runs a cycle early
        # Where `save` hands snapshots (serve's jobs file); None keeps the intake in memory.
        self.persist: Callable[[dict[str, Any]], None] | None = None
        self._persist_lock = threading.Lock()
        self._entries: dict[int, tuple[JobRecord, datetime, dict[str, Any]]] = {}

    def save(self) -> None:
        """Hand a snapshot to ``persist``; every writer goes through here, so snapshots are
        written in the order they were taken. Its OSError reaches the caller: `accept`'s
        (a webhook not recorded is answered 503) and the cycle's. The look-ups' changes
        (`merge`, `drop`) are saved by the save that ends each cycle."""
        if self.persist is None:
            return
        with self._persist_lock:
            self.persist(self.snapshot())

    def _trim(self) -> None:
        """Forget the oldest jobs and delivery ids beyond the bounds (lock held)."""
        while len(self._jobs) > self._max_jobs:
            self._jobs.popitem(last=False)
        while len(self._deliveries) > self._max_deliveries:
            self._deliveries.popitem(last=False)

    def accept(self, delivery: QueuedDelivery) -> bool:
        """Record one delivery's event; False if this delivery was seen before."""
        with self._lock:
            if delivery.delivery_id in self._deliveries:
                return False
            self._deliveries[delivery.delivery_id] = None
            job_id = delivery.job.job_id
            current = self._jobs.pop(job_id, None)
            record, _ = ledger.apply(current[0] if current else None, delivery.job)
            self._jobs[job_id] = (record, self._clock())
            self._trim()
        self.wake.set()
        self.save()
        return True

    def merge(self, event: JobEvent) -> bool:
        """Merge what GitHub says about a job this intake holds (``ledger.apply``: a duplicate
        or older state changes nothing); the job counts as heard from now. True if changed."""
        with self._lock:
            current = self._jobs.pop(event.job_id, None)
            if current is None:
                return False  # forgotten meanwhile: not brought back
            record, changed = ledger.apply(current[0], event)
            self._jobs[event.job_id] = (record, self._clock())
        return changed

    def drop(self, job_id: int) -> bool:
        """Forget a job GitHub no longer knows (its run was deleted). True if it was held."""
        with self._lock:
            return self._jobs.pop(job_id, None) is not None

    def snapshot(self) -> dict[str, Any]:
        """Everything this intake holds, as JSON-ready data (``restore`` reads it back).

        Each job's entry is made again only when the job changed since the last snapshot
        (records are immutable: a changed job holds another record object).
        """
        with self._lock:
            cache, self._entries = self._entries, {}
            jobs = []
            for job_id, (record, heard) in self._jobs.items():
                cached = cache.get(job_id)
                if cached is None or cached[0] is not record or cached[1] != heard:
                    entry = {"record": record.to_dict(), "heard": heard.isoformat()}
                    cached = (record, heard, entry)
                self._entries[job_id] = cached
                jobs.append(cached[2])
            return {
                "format": SNAPSHOT_FORMAT,
                "jobs": jobs,
                "deliveries": list(self._deliveries),
            }

    def restore(self, data: Any) -> int:
        """Merge a ``snapshot`` into this intake (jobs it holds already are joined with
        ``ledger.merge``); returns how many jobs the snapshot held. ValueError names what
        is wrong with data that is not a snapshot."""
        entries, deliveries = _read_snapshot(data)
        with self._lock:
            for record, heard in entries:
                current = self._jobs.pop(record.job_id, None)
                if current is not None:
                    record, heard = ledger.merge(current[0], record), max(heard, current[1])
                self._jobs[record.job_id] = (record, heard)
            for delivery_id in deliveries:
                self._deliveries[delivery_id] = None
            self._trim()
        if entries:
            self.wake.set()
        return len(entries)

    def _prune(self) -> None:
        now = self._clock()
        for job_id, (record, seen) in list(self._jobs.items()):
            keep = self._keep_completed if record.state is JobState.COMPLETED else self._keep_open
            if now - seen > keep:
                del self._jobs[job_id]

    def records(self) -> list[JobRecord]:
        with self._lock:
            self._prune()
            return [record for record, _ in self._jobs.values()]

    def last_news(self) -> list[tuple[JobRecord, datetime]]:
        """Each job and when it was last heard of (a delivery, or a look-up on GitHub)."""
        with self._lock:
            self._prune()
            return list(self._jobs.values())

    def queued(self) -> int:
        """Jobs waiting for a runner of this fleet."""
        return sum(1 for r in self.records() if r.state is JobState.QUEUED)

    def busy_runner_names(self) -> set[str]:
        """Runners with a job in progress (GitHub's busy flag lags; this does not)."""
        return {
            r.runner_name
            for r in self.records()
            if r.state is JobState.IN_PROGRESS and r.runner_name
        }


class _WebhookHandler(http.server.BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per delivery is written by do_POST, without the payload

    def _answer(self, status: int, reason: str) -> None:
        body = b"" if status == 204 else json.dumps({"status": status, "reason": reason}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, "ok")
        else:
            self._answer(404, "webhooks are POSTed; GET /healthz for a health check")

    def do_POST(self) -> None:
        owner = self.server
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(411, "Content-Length required")
            return
        if length < 0 or length > owner.max_body_bytes:
            # Too big to read: answer without reading it (the connection closes).
            self._answer(413, f"payload larger than {owner.max_body_bytes} bytes")
            return
        body = self.rfile.read(length)
        headers = {key: value for key, value in self.headers.items()}
        outcome = handle_delivery(
            headers,
            body,
            secret=owner.secret,
            fleet_labels=owner.labels,
            max_body_bytes=owner.max_body_bytes,
            allowed_owners=owner.allowed_owners,
        )
        duplicate = False
        if outcome.event is not None:
            try:
                duplicate = not owner.intake.accept(outcome.event)
            except OSError as exc:
                # Held in memory but not on disk: GitHub marks the delivery failed, and a
                # restarted serve asks for it again (redelivery).
                owner.report(f"webhook not recorded in the jobs file: {exc}")
                self._answer(503, "could not record the job; redeliver later")
                return
        delivery = headers.get("X-GitHub-Delivery", "-")[:100]
        owner.report(
            f"webhook {delivery}: {outcome.status} {outcome.reason}"
            + (" (duplicate delivery)" if duplicate else "")
        )
        self._answer(outcome.status, outcome.reason)


class WebhookServer(http.server.ThreadingHTTPServer):
    """``workflow_job`` deliveries on a local port, answered at once (work is queued)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        bind: str,
        port: int,
        *,
        secret: str,
        labels: Iterable[str],
        intake: Intake,
        report: Report,
        allowed_owners: Collection[str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not secret:
            raise FleetError(
                "a webhook port needs a webhook secret",
                hint="set FLEET_WEBHOOK_SECRET or --webhook-secret-file (the App's webhook secret)",
            )
        self.secret = secret
        self.labels = tuple(labels)
        self.intake = intake
        self.report = report
        self.allowed_owners = allowed_owners
        self.max_body_bytes = max_body_bytes
        try:
            super().__init__((bind, port), _WebhookHandler)
        except OSError as exc:
            raise FleetError(
                f"cannot listen for webhooks on {bind}:{port}: {exc.strerror}",
                hint="choose a free port (--webhook-port) or address (--bind)",
            ) from exc
        self.timeout = 10
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="webhooks")

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# --- catching up on what webhooks missed --------------------------------------------------

# Installation tokens for job look-ups ask for this and nothing else.
JOB_PERMISSIONS = {"actions": "read"}
OPEN_STATES = (JobState.QUEUED, JobState.IN_PROGRESS)


def stale_jobs(
    last_news: Iterable[tuple[JobRecord, datetime]],
    *,
    now: datetime,
    stale_after: timedelta,
    limit: int,
) -> list[JobRecord]:
    """Pure: jobs queued or in progress not heard of for longer than ``stale_after``, longest
    silent first, at most ``limit`` of them."""
    silent = sorted(
        (
            (seen, record)
            for record, seen in last_news
            if record.state in OPEN_STATES and now - seen > stale_after
        ),
        key=lambda pair: (pair[0], pair[1].job_id),
    )
    return [record for _, record in silent[: max(0, limit)]]


@dataclass
class RedeliverySchedule:
    """Pure: when a redelivery pass is due and from when it looks (``now`` is passed in).

    The first pass is due at once and looks back ``lookback``; the next one ``every`` later,
    from ``overlap`` before the last good pass (GitHub's clock and ours differ, and a delivery
    may be listed late). A failed pass also waits ``every``, and the next one looks from where
    the failed one would have. ``every`` of zero turns redelivery off.
    """

    every: timedelta
    lookback: timedelta = timedelta(hours=1)
    overlap: timedelta = timedelta(minutes=5)
    next_at: datetime | None = None
    uncovered_from: datetime | None = None

    def due(self, now: datetime) -> datetime | None:
        """The ``since`` of a pass due at ``now``, or None if none is."""
        if self.every <= timedelta(0):
            return None
        if self.next_at is not None and now < self.next_at:
            return None
        return self.uncovered_from or now - self.lookback

    def done(self, now: datetime, since: datetime, *, ok: bool) -> None:
        """Record a pass started at ``now`` that looked from ``since``."""
        self.next_at = now + self.every
        self.uncovered_from = now - self.overlap if ok else since


class JobSource(Protocol):
    """What serve asks GitHub to catch up on missed webhooks (``GitHubJobSource``)."""

    def redeliver_failed(self, since: datetime, now: datetime) -> RedeliveryReport: ...

    def job(self, repository: str, job_id: int) -> WorkflowJobStatus: ...


class GitHubJobSource:
    """``JobSource`` through the fleet's GitHub App: the App JWT for its webhook deliveries,
    an installation token that may only read Actions for a repository's jobs."""

    def __init__(self, registrar: Registrar) -> None:
        self.client = registrar.client
        # Its own token cache: the registrar's tokens may only administer runners.
        self.app = GitHubApp(registrar.client, registrar.app.signer, permissions=JOB_PERMISSIONS)
        self._installations: dict[str, int] = {}

    def redeliver_failed(self, since: datetime, now: datetime) -> RedeliveryReport:
        return redeliver_failed(self.client, self.app.jwt_auth, since=since, now=now)

    def job(self, repository: str, job_id: int) -> WorkflowJobStatus:
        installation = self._installations.get(repository)
        if installation is None:
            installation = self.app.installation_id_for_repo(repository)
            self._installations[repository] = installation
        auth = self.app.installation_auth(installation)
        return get_job(self.client, auth, repository, job_id)


# --- the reconciler -------------------------------------------------------------------------


@dataclass
class CycleResult:
    """What one cycle saw and did (for the log and the tests)."""

    decision: Decision | None = None
    observed: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # finished or stopped from outside
    deregistered: list[str] = field(default_factory=list)  # ghost registrations
    retired: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    kept_busy: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)  # delivery guids GitHub sends again
    converged_jobs: list[int] = field(default_factory=list)  # looked up, GitHub knew more
    dropped_jobs: list[int] = field(default_factory=list)  # looked up, GitHub knows none
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        seen = ", ".join(f"{k} {v}" for k, v in self.observed.items() if v) or "no hosts"
        did = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("removed", self.removed),
                ("deregistered", self.deregistered),
                ("retired", self.retired),
                ("terminated", self.terminated),
                ("launched", self.launched),
                ("kept busy", self.kept_busy),
                ("redelivered", self.redelivered),
                ("updated from GitHub job", [str(job) for job in self.converged_jobs]),
                ("dropped deleted job", [str(job) for job in self.dropped_jobs]),
            )
            if names
        ]
        queued = self.decision.queued if self.decision else 0
        return f"{seen}; queued {queued}" + (f"; {'; '.join(did)}" if did else "")


class Reconciler:
    """One fleet, one cycle at a time: catch up with GitHub (given ``jobs``), observe, clear
    away, decide, realise."""

    def __init__(
        self,
        fleet: Fleet,
        options: ServeOptions,
        intake: Intake,
        report: Report,
        clock: Clock = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        jobs: JobSource | None = None,
    ) -> None:
        self.fleet = fleet
        self.options = options
        self.limits = options.limits()
        self.intake = intake
        self.report = report
        self.clock = clock
        self.monotonic = monotonic
        self.jobs = jobs
        self.redelivery = RedeliverySchedule(
            every=timedelta(seconds=options.redeliver_every),
            lookback=timedelta(seconds=options.redeliver_lookback),
        )
        self._launch_failures = 0
        self._launch_not_before = 0.0

    def _busy(self, name: str) -> bool:
        return name in self.intake.busy_runner_names()

    def _deregister(self, registration: Runner | None, result: CycleResult) -> None:
        if registration is None:
            return
        try:
            self.fleet.deregister(registration)
        except RunnerBusyError:
            result.errors.append(
                f"GitHub still shows {registration.name} running a job: registration kept"
            )

    def cycle(self) -> CycleResult:
        """One reconcile cycle. GitHub trouble ends the cycle before anything is removed."""
        result = CycleResult()
        if self.jobs is not None:
            # First, so the decision counts what GitHub says rather than a lost webhook.
            self._redeliver(self.jobs, result)
            self._look_up_stale_jobs(self.jobs, result)
        try:
            seen = self.fleet.observe(self.intake.busy_runner_names())
        except (GitHubError, FleetError) as exc:
            # Uncertain state: touch nothing this cycle.
            result.errors.append(f"cannot read the fleet's state, nothing changed: {exc}")
            return result
        result.observed = {
            state: sum(1 for h in seen.hosts if h.state == state)
            for state in ("booting", "idle", "busy", "finished", "gone")
        }
        try:
            self._clear_away(seen, result)
            queued = self.intake.queued()
            decision = decide(queued, seen.runners, self.limits, self.clock())
            result.decision = decision
            self._shrink(seen, decision, result)
            self._grow(decision, result)
        except (GitHubError, FleetError) as exc:
            result.errors.append(str(exc))
        return result

    def _redeliver(self, jobs: JobSource, result: CycleResult) -> None:
        now = self.clock()
        since = self.redelivery.due(now)
        if since is None:
            return
        try:
            report = jobs.redeliver_failed(since, now)
        except (GitHubError, ValueError, KeyError) as exc:  # the latter two: a garbled answer
            self.redelivery.done(now, since, ok=False)
            result.errors.append(
                f"redelivery of failed webhook deliveries: {exc}; "
                f"next try in {self.options.redeliver_every:.0f} s"
            )
            return
        self.redelivery.done(now, since, ok=True)
        result.redelivered += report.redelivered
        result.errors += [f"GitHub refused a redelivery: {error}" for error in report.errors]

    def _look_up_stale_jobs(self, jobs: JobSource, result: CycleResult) -> None:
        """Ask GitHub where jobs stand that no webhook spoke of for ``stale_after`` seconds.

        A looked-up job counts as heard from, so it is asked about again only after another
        ``stale_after``. GitHub trouble ends this cycle's look-ups; the next cycle goes on.
        """
        if self.options.stale_after <= 0:
            return
        stale = stale_jobs(
            self.intake.last_news(),
            now=self.clock(),
            stale_after=timedelta(seconds=self.options.stale_after),
            limit=self.options.max_job_lookups,
        )
        for record in stale:
            try:
                status = jobs.job(record.repository, record.job_id)
            except GitHubNotFound:
                # Its run was deleted (or the App cannot see it): no runner will ever take it.
                if self.intake.drop(record.job_id):
                    result.dropped_jobs.append(record.job_id)
                continue
            except (GitHubError, ValueError, KeyError) as exc:
                hint = ""
                if isinstance(exc, GitHubForbidden | GitHubValidationError):
                    hint = " (the App needs Repository permissions > Actions: Read-only)"
                result.errors.append(
                    f"looking up stale job {record.job_id} of {record.repository}: {exc}{hint}"
                )
                return
            if self.intake.merge(status.to_event()):
                result.converged_jobs.append(record.job_id)

    def _clear_away(self, seen: Observation, result: CycleResult) -> None:
        for host in (*seen.gone, *seen.finished):
            self._deregister(host.registration, result)
            self.fleet.remove(host.name)
            result.removed.append(host.name)
        for ghost in seen.ghosts:
            if ghost.busy:
                continue  # GitHub thinks a job runs there: left for GitHub to time out
            try:
                if self.fleet.deregister(ghost):
                    result.deregistered.append(ghost.name)
            except RunnerBusyError:
                continue
        self.fleet.remove_orphans()

    def _shrink(self, seen: Observation, decision: Decision, result: CycleResult) -> None:
        hosts = seen.by_name()
        for name in decision.retire:
            if retire_host(self.fleet, name, hosts[name].registration, self.report, self._busy):
                result.retired.append(name)
            else:
                result.kept_busy.append(name)
        for name in decision.terminate:
            # Never registered in time (or above max_size while booting): no job can run
            # there unless GitHub or the host says so, which the re-check catches.
            if retire_host(self.fleet, name, hosts[name].registration, self.report, self._busy):
                result.terminated.append(name)
            else:
                result.kept_busy.append(name)

    def _grow(self, decision: Decision, result: CycleResult) -> None:
        if decision.launch <= 0:
            return
        if self.monotonic() < self._launch_not_before:
            result.errors.append(
                f"launch of {decision.launch} host(s) postponed: the last launch failed"
            )
            return
        try:
            rows = self.fleet.add(
                decision.launch, validate_hosts=self.options.validate, canary=False
            )
        except (GitHubError, FleetError) as exc:
            self._back_off(result, f"starting {decision.launch} host(s) failed: {exc}")
            return
        good = {"registered"} if self.fleet.registered else {"booted", "validated"}
        failed = [row for row in rows if row.state not in good]
        for row in rows:
            if row in failed:
                self.fleet.remove(row.name)
            else:
                result.launched.append(row.name)
        if failed:
            problems = "; ".join(p for row in failed for p in row.problems[:2]) or failed[0].state
            self._back_off(result, f"{len(failed)} new host(s) failed ({problems}); removed")
        else:
            self._launch_failures = 0

    def _back_off(self, result: CycleResult, problem: str) -> None:
        """No launch storm: the next attempt waits 10 s, 20 s, ... up to 5 minutes."""
        self._launch_failures += 1
        delay = min(300.0, 5.0 * 2**self._launch_failures)
        self._launch_not_before = self.monotonic() + delay
        result.errors.append(f"{problem}; next launch in {delay:.0f} s")


class Autoscaler:
    """The serve loop: a reconcile cycle every ``interval`` (sooner on a webhook), until
    ``stop()`` or, with ``once``/``max_cycles``, after that many cycles.

    ``jobs`` (GitHub) is asked to catch up on missed webhooks only when webhooks are on
    (``options.port``): without them there is no job to catch up on. ``cycles`` keeps the
    last ``keep_cycles`` results; ``cycle_count`` counts them all.
    """

    def __init__(
        self,
        fleet: Fleet,
        options: ServeOptions,
        report: Report,
        intake: Intake | None = None,
        jobs: JobSource | None = None,
        *,
        keep_cycles: int = 1000,
        jobs_file: JobsFile | None = None,
    ) -> None:
        self.fleet = fleet
        self.options = options
        self.report = report
        self.intake = intake or Intake()
        self.jobs_file = jobs_file
        self.restored = self._restore(jobs_file) if jobs_file is not None else 0
        self.reconciler = Reconciler(
            fleet,
            options,
            self.intake,
            report,
            jobs=jobs if options.port is not None else None,
        )
        self.stopping = threading.Event()
        self.server: WebhookServer | None = None
        self.cycles: deque[CycleResult] = deque(maxlen=keep_cycles)
        self.cycle_count = 0

    def _restore(self, jobs_file: JobsFile) -> int:
        """Jobs the last serve left in the jobs file; from now on every change is saved."""
        snapshot = jobs_file.load()
        restored = 0
        if snapshot is not None:
            try:
                restored = self.intake.restore(snapshot)
            except ValueError as exc:
                raise FleetError(
                    f"serve's job file {jobs_file.path} holds no job intake: {exc}",
                    hint=MOVE_ASIDE_HINT,
                ) from exc
        self.intake.persist = jobs_file.save
        try:
            self.intake.save()  # fails now, not at the first webhook
        except OSError as exc:
            raise FleetError(
                f"cannot write serve's job file {jobs_file.path}: {exc.strerror or exc}",
                hint="run as root, or pass --jobs-file with a path serve can write",
            ) from exc
        return restored

    def _save_jobs(self, result: CycleResult) -> None:
        """Save after a cycle too: it forgets jobs long finished or long silent."""
        if self.jobs_file is None:
            return
        try:
            self.intake.save()
        except OSError as exc:
            result.errors.append(f"cannot save the jobs file {self.jobs_file.path}: {exc}")

    def stop(self) -> None:
        self.stopping.set()
        self.intake.wake.set()

    def start_webhooks(self) -> None:
        if self.options.port is None:
            return
        self.server = WebhookServer(
            self.options.bind,
            self.options.port,
            secret=self.options.webhook_secret or "",
            labels=self.fleet.labels,
            intake=self.intake,
            report=self.report,
            allowed_owners=self.options.allowed_owners,
        )
        self.server.start()
        self.report(f"webhooks: listening on http://{self.options.bind}:{self.server.port}/")

    def run(self) -> int:
        """Run cycles until stopped; 0 if the last cycle had no errors, else 1."""
        self.start_webhooks()
        limits = self.reconciler.limits
        self.report(
            f"serving fleet {self.fleet.name!r}: {limits.warm_idle} idle, "
            f"{limits.min_size}..{limits.max_size} hosts, a cycle every "
            f"{self.options.interval:.0f} s"
            + ("" if self.fleet.registered else " (not registered with GitHub)")
        )
        if self.reconciler.jobs is not None:
            self.report(self._catch_up_note())
        if self.jobs_file is not None:
            self.report(
                f"jobs kept in {self.jobs_file.path}"
                + (f" ({self.restored} from the last run)" if self.restored else "")
            )
        last: CycleResult | None = None
        try:
            while not self.stopping.is_set():
                self.intake.wake.clear()
                last = self.reconciler.cycle()
                self._save_jobs(last)
                self.cycles.append(last)
                self.cycle_count += 1
                self.report(last.summary())
                for error in last.errors:
                    self.report(f"problem: {error}")
                if self.options.once or (
                    self.options.max_cycles is not None
                    and self.cycle_count >= self.options.max_cycles
                ):
                    break
                self.intake.wake.wait(self.options.interval)
        finally:
            if self.server is not None:
                self.server.stop()
            self.report("stopped (runner hosts keep running; `python -m fleet down` removes them)")
        return 0 if last is None or not last.errors else 1

    def _catch_up_note(self) -> str:
        options = self.options
        redelivery = (
            f"failed webhook deliveries redelivered every {options.redeliver_every:.0f} s"
            if options.redeliver_every > 0
            else "no redelivery of failed webhook deliveries"
        )
        lookups = (
            f"jobs without news for {options.stale_after:.0f} s looked up on GitHub"
            if options.stale_after > 0
            else "no look-up of stale jobs"
        )
        return f"catching up with GitHub: {redelivery}; {lookups}"
