"""``workflow_job`` deliveries on a local port: checked by ``fleet.core.webhook`` (the same code
as the AWS webhook function), recorded in the ``Intake``, answered at once.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Collection, Iterable
from typing import Any

from fleet.core.clock import Report
from fleet.core.webhook import DEFAULT_MAX_BODY_BYTES, handle_delivery
from fleet.errors import FleetError
from fleet.local.serve.intake import Intake


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
