"""A FAKE GitHub runner agent tarball, served over HTTP to runner hosts in tests.

The real actions/runner release cannot be downloaded on the build machines. The
actions_runner role only needs a tarball with the agent's layout (run.sh,
config.sh, bin/) and a real sha256 to verify; this stand-in provides exactly
that. Its run.sh proves what the product hands it: it refuses to start without
ACTIONS_RUNNER_INPUT_JITCONFIG, refuses to run as root, and runs the job hooks.
"""

from __future__ import annotations

import functools
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
if [[ -n ${ACTIONS_RUNNER_HOOK_JOB_STARTED:-} ]]; then "$ACTIONS_RUNNER_HOOK_JOB_STARTED"; fi
if [[ -n ${ACTIONS_RUNNER_HOOK_JOB_COMPLETED:-} ]]; then "$ACTIONS_RUNNER_HOOK_JOB_COMPLETED"; fi
echo "fake-agent: job done, exiting (ephemeral)"
"""

CONFIG_SH = """#!/usr/bin/env bash
echo "fake-agent: config.sh is not used by just-in-time runners" >&2
exit 1
"""


def build_tarball(version: str = "0.0.0-fake") -> bytes:
    """A gzipped tarball laid out like actions-runner-linux-x64-<version>.tar.gz."""
    buffer = io.BytesIO()
    files = {
        "run.sh": (RUN_SH, 0o755),
        "config.sh": (CONFIG_SH, 0o755),
        "bin/Runner.Listener": ('#!/bin/sh\nexec "$(dirname "$0")/../run.sh"\n', 0o755),
        "bin/FAKE-AGENT": (f"fake agent {version} for tests\n", 0o644),
    }
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            info.mode = mode
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
    directory: Path, bind_address: str, version: str = "0.0.0-fake"
) -> Iterator[ServedAgent]:
    """Serve the fake agent tarball on ``bind_address`` (a local address) until exit."""
    data = build_tarball(version)
    name = f"actions-runner-linux-x64-{version}.tar.gz"
    (directory / name).write_bytes(data)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((bind_address, 0), handler)
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
