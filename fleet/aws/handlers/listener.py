"""Listener function (``githubMode: scaleSet``): GitHub's runner scale set instead of webhooks.

Started by a schedule every minute, with one concurrent execution (reserved concurrency 1,
so a tick that finds it running is throttled and dropped, never queued behind it). Each run:

1. creates or adopts the fleet's scale set (``FLEET_SCALE_SET_NAME``, default the fleet's
   name, which workflows name in ``runs-on``) in the fleet's runner group;
2. opens a session. The session a run holds is remembered in an SSM String parameter
   (``FLEET_LISTENER_SESSION_PARAMETER``, ``adapters.listener_session``) as soon as it opens
   and cleared when the run closes it; a run that died without closing it (timeout, crash)
   left its id there, and this run *takes it over*: deletes it and opens its own at once
   (``core.scaleset_listener``, as a restarted local ``serve`` does). One concurrent
   execution means the remembered session is never a live run's. The id is used once
   (cleared as it is read), so a take-over that fails is not retried by every later run. A
   409 that remains (a session opened but not yet remembered when its run died, or a failed
   take-over) is waited out for up to three minutes, then the run gives up and the next tick
   tries;
3. listens until ``LISTEN_MARGIN_SECONDS`` before the function's timeout: each message's
   jobs are acquired and every update runs one scaling cycle (``scaler.run_cycle``) with
   the scale set's count of jobs waiting for a runner (assigned - running) in place of the
   ledger's: ``core.scaling.decide`` then asks for min(max, warm idle + assigned) instances,
   retires only idle runners, and never a busy one;
4. closes its session, so the next run opens one at once.

The gap between two runs is at most a minute (the schedule), while the queue keeps every
message nobody deleted: nothing is lost, a job waits at most that long longer. New instances
get scale-set JIT configs from the lifecycle function. No webhook and no public URL exist in
this mode.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from fleet.aws.handlers import scaler
from fleet.aws.handlers.runtime import Runtime, shared_runtime
from fleet.core.scaleset_listener import (
    ListenerLimits,
    ScaleSetSpec,
    ScaleUpdate,
    run_listener,
)

log = logging.getLogger(__name__)

# Stop listening this long before the timeout: one more long poll (70 s read timeout) plus
# closing the session and a last cycle must fit.
LISTEN_MARGIN_SECONDS = 100.0


def listener_limits(rt: Runtime) -> ListenerLimits:
    limits = rt.settings.limits
    return ListenerLimits(min_idle=limits.warm_idle, max_runners=limits.max_size)


def scale(rt: Runtime, update: ScaleUpdate) -> None:
    """One scaling cycle with the scale set's demand (see the module docstring)."""
    stats = update.statistics
    waiting = max(0, stats.total_assigned_jobs - stats.total_running_jobs)
    report = scaler.run_cycle(rt, queued=waiting)
    log.info(
        "scale set update: %s",
        json.dumps(
            {
                "desired_runners": update.desired,
                "assigned": stats.total_assigned_jobs,
                "running": stats.total_running_jobs,
                "acquired": list(update.acquired),
                "started": [m.runner_name for m in update.started],
                "completed": [(m.runner_name, m.result) for m in update.completed],
                "desired_capacity": report.desired_capacity,
                "skipped": report.skipped,
            }
        ),
    )


def handle(
    event: dict[str, Any],
    rt: Runtime,
    *,
    remaining_seconds: float,
    stop: threading.Event | None = None,
    max_polls: int | None = None,
) -> dict[str, Any]:
    """One listening run of at most ``remaining_seconds - LISTEN_MARGIN_SECONDS``."""
    s = rt.settings
    if not s.scale_set:
        return {"skipped": "githubMode is webhook: no listener"}
    budget = remaining_seconds - LISTEN_MARGIN_SECONDS
    if budget <= 0:
        return {"skipped": f"{remaining_seconds:.0f}s left: too little to listen"}
    memory = rt.listener_session
    previous = memory.load()
    if previous is not None:
        # Used once: a take-over the service refuses (anything but deleted or unknown) must
        # not fail every run after this one; the next run then waits the session out.
        memory.clear()
    report = run_listener(
        rt.scale_sets,
        ScaleSetSpec(name=s.scale_set_name, runner_group=s.runner_group),
        listener_limits(rt),
        lambda update: scale(rt, update),
        owner=f"{s.fleet_name}-listener",
        stop=stop or threading.Event(),
        clock=rt.clock,
        until=rt.clock() + budget,
        max_polls=max_polls,
        previous_session_id=previous.session_id if previous else None,
        on_session=memory.remember,
    )
    if report.closed:
        memory.clear()
    result = {
        "scale_set_id": report.scale_set_id,
        "previous_session": previous.session_id if previous else None,
        "polls": report.polls,
        "messages": report.messages,
        "acquired": report.acquired,
        "failures": report.failures,
        "session_closed": report.closed,
        "ended": report.ended,
    }
    log.info("listener run: %s", json.dumps(result))
    return result


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return handle(event, shared_runtime(), remaining_seconds=remaining)
