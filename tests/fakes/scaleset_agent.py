"""A FAKE runner agent driven step by step from a test (tests only), and a threaded loopback
server for the fake GitHub with scale sets.

``StepAgent`` speaks to the job broker of ``tests/fakes/github_jobs.py`` exactly as the
stand-in agent (``tests/fakes/runner_agent.py``) does, from its JIT config, but one call at a
time, so a test decides when a runner comes online, takes its job and finishes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from pytest_httpserver import HTTPServer


class StepAgent:
    def __init__(self, encoded_jit_config: str) -> None:
        self.config = json.loads(base64.b64decode(encoded_jit_config))
        self.job: dict[str, Any] | None = None

    def _call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.config['broker']}/runners/{self.config['runner_id']}{path}",
            json=body,
            headers={"Authorization": "RemoteAuth " + self.config["token"]},
            timeout=10,
        )

    def online(self) -> None:
        self._call("POST", "/online").raise_for_status()

    def take_job(self) -> dict[str, Any] | None:
        answer = self._call("GET", "/job")
        answer.raise_for_status()
        self.job = answer.json() if answer.status_code == 200 else None
        return self.job

    def finish(self, exit_code: int = 0) -> None:
        assert self.job is not None, "no job taken"
        body = {"exit_code": exit_code, "output": "done"}
        self._call("POST", f"/jobs/{self.job['id']}/done", body).raise_for_status()


class _QuickStopServer(HTTPServer):
    """``stop()`` returns within 20 ms: ``serve_forever`` checks for shutdown every 20 ms
    instead of every 0.5 s (what each test that stopped a server waited)."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


@contextmanager
def threaded_server() -> Iterator[HTTPServer]:
    """A loopback server that answers requests side by side (a long poll holds a thread)."""
    server = _QuickStopServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()
