"""The serve loop: a reconcile cycle every interval (sooner on a webhook), the webhook server,
the jobs file.
"""

from __future__ import annotations

import threading
from collections import deque

from fleet.core.clock import Report
from fleet.errors import FleetError
from fleet.local.serve.catch_up import JobSource
from fleet.local.serve.intake import Intake
from fleet.local.serve.jobs_file import MOVE_ASIDE_HINT, JobsFile
from fleet.local.serve.reconciler import CycleResult, Fleet, Reconciler, ServeOptions
from fleet.local.serve.webhook_server import WebhookServer


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
