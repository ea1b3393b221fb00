"""The idle-cost part of bench/scale_set.py: serve's scale-set listener, alone, against the
FAKE scale-set service with its real long-poll hold.

The fake GitHub with scale sets runs here (threaded loopback server, the quiet long poll held
``hold`` seconds); the listener runs in a child process (``python -m bench._scale_set_idle
SECONDS STATE_DIR``) so that the CPU time it reports (getrusage of its own process, from its
session's first statistics for SECONDS) is the listener's alone. It is ``serve --scale-set``'s
``ListenerThread`` from the fleet's GitHub settings in the environment (``FLEET_GITHUB_*``),
with serve's default limits, and no reconcile loop: no Docker. The fake records every request
it gets; ``bench.scale_set.idle_cost`` counts them over the window.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.scale_set import (
    LABELS,
    SCALE_SET,
    IdleCost,
    Request,
    idle_cost,
)

ROOT = Path(__file__).resolve().parents[1]
STARTUP_GRACE = 5.0  # the child listens this much beyond the window (its first poll is inside)


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def listener_child(seconds: float, directory: Path) -> dict[str, float]:
    """In the child: serve's listener thread (no reconcile loop, no Docker), from the fleet's
    GitHub settings in the environment, for ``seconds`` after its session opened."""
    from fleet.core.scaleset_listener import ListenerLimits
    from fleet.local.registration import Registrar, load_settings
    from fleet.local.scale_set import join_scale_set
    from fleet.local.serve.scale_set_mode import ListenerThread, ScaleSetDemand

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    settings = load_settings()
    if settings is None:
        raise SystemExit("the listener child needs FLEET_GITHUB_* settings in its environment")
    registrar, spec, state_file = join_scale_set(
        Registrar(settings), "bench", SCALE_SET, LABELS, say, directory
    )
    demand = ScaleSetDemand(threading.Event(), say)
    fatal: list[str] = []
    listener = ListenerThread(
        registrar,
        spec,
        ListenerLimits(min_idle=1, max_runners=10),  # serve's defaults
        demand,
        state_file,
        say,
        on_fatal=fatal.append,
    )
    listener.start()
    if not demand.heard.wait(60) or fatal:
        raise SystemExit(f"the listener opened no session within 60 s {fatal}")
    started, (user0, system0) = time.time(), _cpu()
    time.sleep(seconds)
    ended, (user1, system1) = time.time(), _cpu()
    listener.stop()
    return {
        "started": started,
        "ended": ended,
        "user": user1 - user0,
        "system": system1 - system0,
        "runs": listener.runs,
    }


def measure_idle_cost(window: float, hold: float) -> IdleCost:
    """The fake here, the listener in a child process (its CPU is its own)."""
    from bench._scale_set_github import fake_github, github_settings
    from tests.fakes.github import app_key_pair
    from tests.fakes.scaleset_agent import threaded_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake's access log
    private, public = app_key_pair()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as work, threaded_server() as server:
        fake = fake_github(server, public, hold)
        env = {**os.environ, **github_settings(Path(work), private, fake.base_url)}
        seconds = window + STARTUP_GRACE
        print(f"idle cost: the listener for {seconds:.0f} s against a {hold:.0f} s long poll")
        argv = [sys.executable, "-m", "bench._scale_set_idle", str(seconds), work]
        child = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 300
        )
        if child.returncode != 0:
            raise RuntimeError(f"the listener child failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        seen = [Request(r.at, r.method, r.path) for r in list(fake.requests)]
    return idle_cost(
        seen,
        listening_from=result["started"],
        window=window,
        hold=hold,
        cpu_seconds=result["user"] + result["system"],
        cpu_window=result["ended"] - result["started"],
    )


def main(argv: list[str]) -> int:
    """The child: ``SECONDS STATE_DIR``; prints one JSON line (times, CPU seconds)."""
    if len(argv) != 2:
        print("usage: python -m bench._scale_set_idle SECONDS STATE_DIR", file=sys.stderr)
        return 2
    print(json.dumps(listener_child(float(argv[0]), Path(argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
