"""A FAKE GitHub runner agent tarball, served over HTTP to runner hosts in tests.

The real actions/runner release cannot be downloaded on the build machines. The
actions_runner role only needs a tarball with the agent's layout (run.sh,
config.sh, bin/) and a real sha256 to verify; this stand-in provides exactly
that. Its run.sh proves what the product hands it: it refuses to start without
ACTIONS_RUNNER_INPUT_JITCONFIG, refuses to run as root, and runs the job hooks.

Given a JIT config issued by the FAKE GitHub of ``tests/fakes/github_jobs.py`` (base64
JSON naming the fake's job broker), ``bin/Runner.Listener`` behaves like an ephemeral
runner: it reads the agent's ``.env`` (as the real agent does), reports online (and exits 7,
given ``ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE``, when the fake says the agent is
too old), polls the
fake for a job, runs the job-started hook, runs the job's script in ``bin/Runner.Worker``
(so a job in flight is visible as a ``Runner.Worker`` process, as with the real agent),
runs the job-completed hook, reports the result and exits. Any other config (e.g. the
unit tests' ``JITSECRET-<id>``) only runs the hooks and exits.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RUN_SH = """#!/usr/bin/env bash
# FAKE runner agent (tests only): behaves like run.sh of an ephemeral JIT runner.
set -euo pipefail
if [[ $(id -u) -eq 0 ]]; then echo "fake-agent: must not run as root" >&2; exit 1; fi
if [[ -z ${ACTIONS_RUNNER_INPUT_JITCONFIG:-} ]]; then
  echo "fake-agent: no ACTIONS_RUNNER_INPUT_JITCONFIG" >&2; exit 1
fi
echo "fake-agent: listening with a JIT config of ${#ACTIONS_RUNNER_INPUT_JITCONFIG} bytes"
exec "$(dirname "$(readlink -f "$0")")/bin/Runner.Listener"
"""

LISTENER = r'''#!/usr/bin/env python3
"""FAKE Runner.Listener (tests only): one job from the fake GitHub, then exit."""
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How often it asks for a job; a test that waits for it to notice something may ask sooner.
POLL_SECONDS = float(os.environ.get("FAKE_AGENT_POLL_SECONDS", "1.0"))
OUTPUT_LIMIT = 64 * 1024


def log(message):
    print(f"fake-agent: {message}", flush=True)


def load_env():
    # The real agent reads <root>/.env and hands it to the job (hooks, PATH, ...).
    path = os.path.join(ROOT, ".env")
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                name, sep, value = line.rstrip("\n").partition("=")
                if sep and name:
                    os.environ[name] = value


def run_hook(phase):
    hook = os.environ.get(f"ACTIONS_RUNNER_HOOK_JOB_{phase.upper()}")
    if hook:
        log(f"running the job {phase} hook")
        subprocess.run([hook], check=False)


def decode(config):
    try:
        data = json.loads(base64.b64decode(config, validate=True))
    except ValueError:
        return None
    return data if isinstance(data, dict) and "broker" in data else None


def call(config, method, path, body=None):
    request = urllib.request.Request(
        config["broker"] + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": "RemoteAuth " + config["token"],
                 "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
        return answer.status, (json.loads(text) if text else None)


def main():
    load_env()
    config = decode(os.environ.pop("ACTIONS_RUNNER_INPUT_JITCONFIG", ""))
    if config is None:
        run_hook("started")
        run_hook("completed")
        log("job done, exiting (ephemeral)")
        return 0
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    runner = f"/runners/{config['runner_id']}"
    try:
        call(config, "POST", runner + "/online")
    except urllib.error.HTTPError as exc:
        if exc.code == 403 and b"Deprecated" in exc.read():
            # The real agent exits 7 here only when asked to (else 1, like any error).
            log("GitHub deems this agent version too old")
            return 7 if os.environ.get("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE") else 1
        raise
    log(f"online as {config['runner_name']}")
    job = None
    while not stopping:
        try:
            status, job = call(config, "GET", runner + "/job")
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                log("this runner was removed from GitHub: exiting")
                return 1
            raise
        if status == 200 and job:
            break
        time.sleep(POLL_SECONDS)
    if stopping:
        log("stopped before a job arrived")
        return 0
    log(f"running job {job['id']}")
    run_hook("started")
    work = os.path.join(ROOT, "_work", str(job["id"]))
    os.makedirs(work, exist_ok=True)
    script = os.path.join(work, "job.sh")
    with open(script, "w") as handle:
        handle.write(job["script"])
    worker = subprocess.run(
        [os.path.join(ROOT, "bin", "Runner.Worker"), script],
        cwd=work, capture_output=True, text=True, check=False,
    )
    output = (worker.stdout + worker.stderr)[-OUTPUT_LIMIT:]
    run_hook("completed")
    call(config, "POST", runner + f"/jobs/{job['id']}/done",
         {"exit_code": worker.returncode, "output": output})
    log(f"job {job['id']} exited {worker.returncode}; exiting (ephemeral)")
    return 0


sys.exit(main())
'''

WORKER = r'''#!/usr/bin/env python3
"""FAKE Runner.Worker (tests only): runs one job's script; visible as Runner.Worker."""
import subprocess
import sys

sys.exit(subprocess.run(["bash", "-eu", sys.argv[1]], check=False).returncode)
'''

CONFIG_SH = """#!/usr/bin/env bash
echo "fake-agent: config.sh is not used by just-in-time runners" >&2
exit 1
"""


def build_tarball(version: str = "0.0.0-fake") -> bytes:
    """A gzipped tarball laid out like actions-runner-linux-x64-<version>.tar.gz."""
    buffer = io.BytesIO()
    # gzip and tar headers carry fixed times: the same agent, the same sha256.
    gzipped = gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0)
    files = {
        "run.sh": (RUN_SH, 0o755),
        "config.sh": (CONFIG_SH, 0o755),
        "bin/Runner.Listener": (LISTENER, 0o755),
        "bin/Runner.Worker": (WORKER, 0o755),
        "bin/FAKE-AGENT": (f"fake agent {version} for tests\n", 0o644),
    }
    with gzipped, tarfile.open(fileobj=gzipped, mode="w") as tar:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            info.mode = mode
            info.mtime = 1_700_000_000  # a fixed time: the same tarball, the same sha256
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class ServedAgent:
    url: str
    sha256: str
    version: str


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_agent(
    directory: Path, bind_address: str, version: str = "0.0.0-fake", port: int = 0
) -> Iterator[ServedAgent]:
    """Serve the fake agent tarball on ``bind_address`` (a local address) until exit."""
    data = build_tarball(version)
    name = f"actions-runner-linux-x64-{version}.tar.gz"
    (directory / name).write_bytes(data)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((bind_address, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield ServedAgent(
            url=f"http://{bind_address}:{port}/{name}",
            sha256=hashlib.sha256(data).hexdigest(),
            version=version,
        )
    finally:
        server.shutdown()
        server.server_close()
