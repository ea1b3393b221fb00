"""``workflow_job`` deliveries on a local port: checked by ``fleet.core.webhook`` (the same code
as the AWS webhook function), recorded in the ``Intake``, answered at once.

The endpoint may face the internet (``--bind 0.0.0.0``), so a slow or stalled client must not
be able to hold it (docs/security.md, "The local webhook endpoint"). Connections are read by
one asyncio event loop in one thread, not a thread each, so a thousand clients that send half
a request cost a thousand sockets and no threads. Each request must arrive whole (head and
body) within ``read_timeout`` seconds, or it is answered 408 and closed. At most
``max_connections`` are open; one more closes the oldest (the one most likely stalled). The
head is bounded (``max_header_bytes``: 431), the body too (``max_body_bytes``: 413, not
read); what is not HTTP/1.x is answered 400, a POST without ``Content-Length`` 411, and every
answer closes its connection. Only complete deliveries reach a small thread pool
(``workers``) that verifies them and writes the jobs file, so the process runs a fixed
number of threads: the loop's and the pool's.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import socket
import threading
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor

from fleet.core.clock import Report
from fleet.core.webhook import DEFAULT_MAX_BODY_BYTES, handle_delivery
from fleet.errors import FleetError
from fleet.local.serve.intake import Intake

READ_TIMEOUT = 10.0  # seconds for a whole request to arrive; GitHub sends it in one go
MAX_CONNECTIONS = 2048
MAX_HEADER_BYTES = 16 * 1024
WORKERS = 4
BACKLOG = 1024  # connections the kernel holds until the loop accepts them
_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


class _Refused(Exception):
    """A request answered without reaching the webhook pipeline."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _response(status: int, reason: str) -> bytes:
    body = b"" if status == 204 else json.dumps({"status": status, "reason": reason}).encode()
    phrase = _REASONS.get(status) or http.client.responses.get(status, "")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path, headers) of a request head; ``_Refused`` if it is not HTTP/1.x."""
    line, _, rest = head.partition(b"\r\n")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Refused(400, "not an HTTP/1.x request line")
    try:
        message = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as exc:
        raise _Refused(431, f"request headers refused: {exc.__class__.__name__}") from exc
    return parts[0], parts[1], {key: value for key, value in message.items()}


class WebhookServer:
    """``workflow_job`` deliveries on a local port, answered at once (work is queued)."""

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
        read_timeout: float = READ_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_header_bytes: int = MAX_HEADER_BYTES,
        workers: int = WORKERS,
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
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        try:
            # Bound here, so a port in use is an error of the command, not of a thread.
            self._socket = socket.create_server((bind, port), backlog=BACKLOG)
        except OSError as exc:
            raise FleetError(
                f"cannot listen for webhooks on {bind}:{port}: {exc.strerror}",
                hint="choose a free port (--webhook-port) or address (--bind)",
            ) from exc
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="webhooks")
        self._started = threading.Event()
        self._connections: dict[asyncio.Task[None], None] = {}  # oldest first
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=10)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        else:
            self._socket.close()
        self._pool.shutdown(wait=True)

    # --- the event loop's thread ---------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            self._server = await asyncio.start_server(
                self._connection, sock=self._socket, limit=self.max_header_bytes, backlog=BACKLOG
            )

        self._loop.run_until_complete(listen())
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            oldest = next(iter(self._connections))
            oldest.cancel()  # most likely a stalled client; its slot serves this one
        self._connections[task] = None
        try:
            answer = await self._answer(reader)
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), self.read_timeout)
        except asyncio.CancelledError:
            pass  # made way for a newer connection, or the server stops: just close
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request (whole, within ``read_timeout``) and answer it."""
        try:
            async with asyncio.timeout(self.read_timeout):
                method, path, headers, body = await self._read(reader)
        except _Refused as refused:
            return _response(refused.status, refused.reason)
        except TimeoutError:
            return _response(408, f"no whole request within {self.read_timeout:.0f} s")
        except (asyncio.LimitOverrunError, ValueError):
            return _response(431, f"request head larger than {self.max_header_bytes} bytes")
        except (asyncio.IncompleteReadError, ConnectionError):
            return b""  # the client went away: nobody to answer
        if method == "GET":
            if path == "/healthz":
                return _response(200, "ok")
            return _response(404, "webhooks are POSTed; GET /healthz for a health check")
        loop = asyncio.get_running_loop()
        status, reason = await loop.run_in_executor(self._pool, self._deliver, headers, body)
        return _response(status, reason)

    async def _read(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        method, path, headers = _parse_head(head)
        if method == "GET":
            return method, path, headers, b""
        if method != "POST":
            raise _Refused(405, "webhooks are POSTed")
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            raise _Refused(411, "Content-Length required (chunked bodies are not read)")
        try:
            length = int(headers.get("Content-Length", ""))
        except ValueError:
            raise _Refused(411, "Content-Length required") from None
        if length < 0 or length > self.max_body_bytes:
            # Too big to read: answer without reading it (the connection closes).
            raise _Refused(413, f"payload larger than {self.max_body_bytes} bytes")
        return method, path, headers, await reader.readexactly(length)

    # --- the pool's threads -------------------------------------------------------------

    def _deliver(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """One complete delivery through the webhook pipeline into the intake."""
        outcome = handle_delivery(
            headers,
            body,
            secret=self.secret,
            fleet_labels=self.labels,
            max_body_bytes=self.max_body_bytes,
            allowed_owners=self.allowed_owners,
        )
        duplicate = False
        if outcome.event is not None:
            try:
                duplicate = not self.intake.accept(outcome.event)
            except OSError as exc:
                # Held in memory but not on disk: GitHub marks the delivery failed, and a
                # restarted serve asks for it again (redelivery).
                self.report(f"webhook not recorded in the jobs file: {exc}")
                return 503, "could not record the job; redeliver later"
        delivery = headers.get("X-GitHub-Delivery", "-")[:100]
        self.report(
            f"webhook {delivery}: {outcome.status} {outcome.reason}"
            + (" (duplicate delivery)" if duplicate else "")
        )
        return outcome.status, outcome.reason
