"""The local webhook endpoint under slow, stalled and malformed clients (docs/security.md,
"The local webhook endpoint"). Loopback only; every wait is bounded by a deadline."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from fleet.local.serve.autoscaler import Autoscaler
from fleet.local.serve.intake import Intake
from fleet.local.serve.reconciler import ServeOptions
from fleet.local.serve.webhook_server import WORKERS, WebhookServer
from tests.fakes.payloads import SECRET, signed, workflow_job
from tests.unit.local.test_serve import LABELS, MemoryFleet

pytestmark = pytest.mark.unit

STALLED = 1000
HALF_A_REQUEST_LINE = b"POST / HT"
HEADERS_AND_NO_BODY = b"POST / HTTP/1.1\r\nHost: fleet\r\nContent-Length: 100\r\n\r\n"


@pytest.fixture
def server(request) -> Iterator[WebhookServer]:
    options = getattr(request, "param", {})
    endpoint = WebhookServer(
        "127.0.0.1",
        0,
        secret=SECRET,
        labels=LABELS,
        intake=Intake(),
        report=lambda _m: None,
        **options,
    )
    endpoint.start()
    yield endpoint
    endpoint.stop()


def connect(port: int, first_bytes: bytes) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(first_bytes)
    return client


def wait_until(condition, within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def answers_until_closed(clients: list[socket.socket], within: float) -> dict[int, bytes]:
    """What each client receives until the server closes its connection (by index); clients
    still open at the deadline are missing from the result."""
    received: dict[int, bytearray] = {n: bytearray() for n in range(len(clients))}
    closed: dict[int, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for n, client in enumerate(clients):
            client.setblocking(False)
            selector.register(client, selectors.EVENT_READ, n)
        deadline = time.monotonic() + within
        while len(closed) < len(clients) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except ConnectionError:
                    data = b""
                if data:
                    received[key.data] += data
                else:
                    selector.unregister(key.fileobj)
                    closed[key.data] = bytes(received[key.data])
    return closed


def post_signed(port: int, delivery: str) -> tuple[requests.Response, float]:
    headers, body = signed(workflow_job("queued", labels=list(LABELS)), delivery=delivery)
    started = time.monotonic()
    answer = requests.post(f"http://127.0.0.1:{port}/", data=body, headers=headers, timeout=5)
    return answer, time.monotonic() - started


@pytest.mark.parametrize("server", [{"read_timeout": 2.0}], indirect=True)
def test_a_thousand_stalled_connections_do_not_delay_a_signed_delivery(server):
    """Half a request line, or headers and no body, on 1,000 connections: a signed delivery
    is still answered within 1 s, the threads stay bounded, and every stalled connection is
    answered 408 and closed by the server within 15 s (here the read timeout is 2 s)."""
    threads_before = threading.active_count()
    stalled = [
        connect(server.port, HEADERS_AND_NO_BODY if n % 2 else HALF_A_REQUEST_LINE)
        for n in range(STALLED)
    ]
    try:
        assert wait_until(lambda: server.open_connections >= STALLED, within=10)
        answer, seconds = post_signed(server.port, "under-load")
        assert answer.status_code == 202
        assert seconds < 1.0, f"answered after {seconds:.2f} s"
        assert server.intake.queued() == 1
        # The event loop's thread and the pool's, whatever the number of connections.
        assert threading.active_count() <= threads_before + 1 + WORKERS
        started = time.monotonic()
        closed = answers_until_closed(stalled, within=15)
        assert len(closed) == STALLED, f"{STALLED - len(closed)} still open after 15 s"
        assert time.monotonic() - started < 15
        assert {answer.split(b"\r\n", 1)[0] for answer in closed.values()} == {
            b"HTTP/1.1 408 Request Timeout"
        }
        assert wait_until(lambda: server.open_connections == 0, within=5)
    finally:
        for client in stalled:
            client.close()


def test_serve_listens_with_a_read_timeout_under_15_seconds():
    options = ServeOptions(port=0, bind="127.0.0.1", webhook_secret=SECRET)
    autoscaler = Autoscaler(MemoryFleet(), options, lambda _m: None)
    autoscaler.start_webhooks()
    try:
        assert autoscaler.server is not None
        assert 0 < autoscaler.server.read_timeout <= 15
    finally:
        autoscaler.server.stop()


@pytest.mark.parametrize("server", [{"max_connections": 20}], indirect=True)
def test_at_the_connection_limit_the_oldest_connection_makes_way(server):
    stalled = [connect(server.port, HALF_A_REQUEST_LINE) for _ in range(20)]
    try:
        assert wait_until(lambda: server.open_connections >= 20, within=5)
        answer, seconds = post_signed(server.port, "at-the-limit")
        assert answer.status_code == 202 and seconds < 1.0
        closed = answers_until_closed(stalled[:1], within=5)
        assert closed == {0: b""}, "the oldest stalled connection was closed"
        assert server.open_connections <= 20
    finally:
        for client in stalled:
            client.close()


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GARBAGE\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"POST / SMTP/2\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed"),
        (b"POST / HTTP/1.1\r\nHost: f\r\n\r\n", b"HTTP/1.1 411 Length Required"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 411 Length Required",
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"HTTP/1.1 413 Content Too Large"),
        (
            b"POST / HTTP/1.1\r\nX-Padding: " + b"a" * 20_000 + b"\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
    ids=["not-http", "not-http-1", "method", "no-length", "chunked", "oversize", "huge-head"],
)
def test_malformed_and_oversize_requests_are_answered_and_closed(
    server, request_bytes, status_line
):
    client = connect(server.port, request_bytes)
    try:
        closed = answers_until_closed([client], within=5)
        assert 0 in closed, "the server closed the connection"
        assert closed[0].split(b"\r\n", 1)[0] == status_line
        assert server.intake.queued() == 0
    finally:
        client.close()


@pytest.mark.parametrize("server", [{"read_timeout": 0.5}], indirect=True)
def test_a_body_trickled_slower_than_the_read_timeout_is_cut_off(server):
    headers, body = signed(workflow_job("queued", labels=list(LABELS)), delivery="trickle")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    client = connect(
        server.port, f"POST / HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
    )
    try:
        for n in range(0, 30):  # a byte every 0.05 s: 1.5 s for 30 bytes, past the 0.5 s timeout
            try:
                client.sendall(body[n : n + 1])
            except OSError:
                break
            time.sleep(0.05)
        closed = answers_until_closed([client], within=5)
        assert closed[0].split(b"\r\n", 1)[0] == b"HTTP/1.1 408 Request Timeout"
        assert server.intake.queued() == 0
    finally:
        client.close()
