"""A FAKE EC2 instance metadata service (IMDSv2 only) for many fake instances (tests only).

In the end-to-end simulation an "EC2 instance" is a privileged Docker container; one
``FakeImds`` answers for all of them and tells them apart by the client's IP address, the
way each real instance has its own IMDS. What it does, as EC2 documents it:

* ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1..21600; missing
  or out of range is 400) answers a session token as text/plain. A PUT carrying
  ``X-Forwarded-For`` is refused (403). The token response leaves with the instance's
  ``hop_limit`` as the socket's IP TTL (``IP_TTL``), so a container one network hop further
  away (a job container on the Docker bridge, with a hop limit of 1) never receives it.
  Every other response uses TTL 64; the TTL is set per response, keep-alive or not.
* ``GET /latest/meta-data/...`` needs a token issued to the same IP, unexpired under the
  injected clock; without one the answer is 401 (tokens are required, there is no IMDSv1).
  Served: the listing, ``instance-id``, ``placement/region``,
  ``placement/availability-zone``, ``autoscaling/target-lifecycle-state`` (settable by the
  test at any time), ``iam/info``, ``iam/security-credentials/`` (the role name) and
  ``iam/security-credentials/<role>``: what botocore's ``InstanceMetadataFetcher`` (and so
  awscli v1) and ``InstanceMetadataRegionFetcher`` ask for. A leaf may be asked for with a
  trailing slash (botocore asks for ``placement/availability-zone/``).
* An unknown path is 404, and so is any request from an IP that no instance has; other
  methods are 405. Every answered request is logged in ``requests`` (IP, method, path,
  status and the IP TTL the server applied to the response).

What it does not do: IMDSv1, IPv6 (it serves one IPv4 address), ``/latest/dynamic/`` and
``/latest/user-data``, tags, spot or events metadata, the remaining-TTL header on GET
answers, or disabling the endpoint. Tokens are random strings kept in memory, not signed;
their TTL is only checked against the injected clock. The hop limit is only applied, not
simulated: whether a TTL-limited answer is dropped is up to the network between the
instance and this server (on loopback nothing is dropped).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

TOKEN_PATH = "/latest/api/token"
METADATA_ROOT = "/latest/meta-data"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600
DEFAULT_IP_TTL = 64
_MAX_DISCARDED_BODY = 64 * 1024
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class FakeInstance:
    """One fake EC2 instance as its metadata service describes it.

    ``credentials`` is called on every credentials request and returns ``AccessKeyId``,
    ``SecretAccessKey``, ``Token`` and ``Expiration`` (a datetime; naive means UTC).
    ``lifecycle_state`` may be changed by the test at any time; ``None`` means the instance
    is in no Auto Scaling group, so the path is 404.
    """

    instance_id: str
    region: str
    availability_zone: str
    role_name: str
    credentials: Callable[[], dict[str, Any]]
    hop_limit: int = 1  # the launch template's http_put_response_hop_limit
    lifecycle_state: str | None = "InService"
    account_id: str = "123456789012"


class LoggedRequest(NamedTuple):
    """One answered request: who asked, what, the status and the IP TTL of the answer."""

    ip: str
    method: str
    path: str
    status: int
    ip_ttl: int


@dataclass(frozen=True)
class _Token:
    ip: str
    expires_at: float


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_STAMP)


class FakeImds:
    """The fake IMDS: a threaded HTTP server in a daemon thread (``start``/``stop`` or ``with``)."""

    def __init__(
        self,
        address: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        request_timeout: float = 10.0,
    ) -> None:
        self.clock = clock
        self.request_timeout = request_timeout
        self.requests: list[LoggedRequest] = []
        self._address = address
        self._port = port
        self._instances: dict[str, FakeInstance] = {}
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeImds:
        if self._server is not None:
            raise RuntimeError("the fake IMDS is already running")
        server = _Server((self._address, self._port), _Handler)
        server.imds = self
        self._server = server
        # serve_forever notices stop() at its next poll: 10 ms (each test's fake stops).
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.01,), name="fake-imds", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeImds:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake IMDS is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234`` (botocore's ``base_url``)."""
        return f"http://{self._address}:{self.port}"

    # -- instances --------------------------------------------------------------------------

    def register(self, ip: str, instance: FakeInstance) -> None:
        """Answer requests from ``ip`` as ``instance`` (replacing any instance there)."""
        if not 1 <= instance.hop_limit <= 64:
            raise ValueError(f"hop_limit must be 1..64, not {instance.hop_limit}")
        with self._lock:
            self._instances[ip] = instance

    def forget(self, ip: str) -> None:
        """Stop answering ``ip``; its tokens die with it."""
        with self._lock:
            self._instances.pop(ip, None)
            for token in [t for t, held in self._tokens.items() if held.ip == ip]:
                del self._tokens[token]

    def instance(self, ip: str) -> FakeInstance | None:
        with self._lock:
            return self._instances.get(ip)

    # -- what the handler asks --------------------------------------------------------------

    def _issue_token(self, ip: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(42)
        with self._lock:
            self._tokens[token] = _Token(ip=ip, expires_at=self.clock() + ttl_seconds)
        return token

    def _token_valid(self, ip: str, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            held = self._tokens.get(token)
            if held is None or held.ip != ip:
                return False
            if self.clock() >= held.expires_at:
                del self._tokens[token]
                return False
            return True

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)


def _metadata_tree(instance: FakeInstance, now: datetime) -> dict[str, Any]:
    """The metadata an instance serves: a dict is a directory, a string a leaf."""

    def credentials() -> str:
        issued = instance.credentials()
        return json.dumps(
            {
                "Code": "Success",
                "LastUpdated": _stamp(now),
                "Type": "AWS-HMAC",
                "AccessKeyId": issued["AccessKeyId"],
                "SecretAccessKey": issued["SecretAccessKey"],
                "Token": issued["Token"],
                "Expiration": _stamp(issued["Expiration"]),
            },
            indent=2,
        )

    digest = hashlib.sha256(instance.role_name.encode()).hexdigest().upper()
    info = json.dumps(
        {
            "Code": "Success",
            "LastUpdated": _stamp(now),
            "InstanceProfileArn": (
                f"arn:aws:iam::{instance.account_id}:instance-profile/{instance.role_name}"
            ),
            "InstanceProfileId": f"AIPA{digest[:17]}",
        },
        indent=2,
    )
    tree: dict[str, Any] = {
        "instance-id": instance.instance_id,
        "placement": {
            "availability-zone": instance.availability_zone,
            "region": instance.region,
        },
        "iam": {
            "info": info,
            "security-credentials": {instance.role_name: credentials},
        },
    }
    if instance.lifecycle_state is not None:
        tree["autoscaling"] = {"target-lifecycle-state": instance.lifecycle_state}
    return tree


def _lookup(tree: dict[str, Any], path: str) -> str | None:
    """The body for ``path`` under the metadata root, or None if there is nothing there."""
    node: Any = tree
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        return "\n".join(
            f"{name}/" if isinstance(child, dict) else name for name, child in sorted(node.items())
        )
    return node() if callable(node) else node


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    imds: FakeImds


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""
    _next_ip_ttl = DEFAULT_IP_TTL

    def setup(self) -> None:
        self.timeout = self.server.imds.request_timeout  # a half-sent request cannot hang on
        super().setup()

    # -- every response passes here: set its IP TTL, then log it ------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        ttl, self._next_ip_ttl = self._next_ip_ttl, DEFAULT_IP_TTL
        self.connection.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        super().send_response(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        applied = self.connection.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        self.server.imds._log(
            LoggedRequest(
                ip=self.client_address[0],
                method=getattr(self, "command", None) or "",
                path=getattr(self, "path", ""),
                status=int(code),
                ip_ttl=applied,
            )
        )

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(
        self,
        status: int,
        body: str = "",
        *,
        content_type: str = "text/plain",
        ip_ttl: int = DEFAULT_IP_TTL,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode()
        self._next_ip_ttl = ip_ttl
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None:
            return
        try:
            size = int(length)
        except ValueError:
            size = -1
        if not 0 <= size <= _MAX_DISCARDED_BODY:
            self.close_connection = True
            return
        self.rfile.read(size)

    # -- methods ----------------------------------------------------------------------------

    def _request(self) -> tuple[FakeImds, str, FakeInstance | None, str]:
        """Read what a request is: the server, the caller's address, its instance, the path."""
        self._discard_body()
        imds = self.server.imds
        ip = self.client_address[0]
        return imds, ip, imds.instance(ip), urlsplit(self.path).path

    def do_PUT(self) -> None:
        imds, ip, instance, path = self._request()
        if instance is None:
            self._reply(404, "Not Found\n")
        elif path != TOKEN_PATH:
            self._reply(405, "Method Not Allowed\n")
        elif self.headers.get("X-Forwarded-For") is not None:
            self._reply(403, "Forbidden\n")
        else:
            ttl = self._requested_ttl()
            if ttl is None:
                self._reply(400, "Missing or Invalid Parameters\n")
                return
            token = imds._issue_token(ip, ttl)
            self._reply(200, token, ip_ttl=instance.hop_limit, headers={TTL_HEADER: str(ttl)})

    def _requested_ttl(self) -> int | None:
        raw = self.headers.get(TTL_HEADER)
        if raw is None or not raw.strip().isdigit():
            return None
        ttl = int(raw.strip())
        return ttl if 1 <= ttl <= MAX_TOKEN_TTL else None

    def do_GET(self) -> None:
        imds, ip, instance, path = self._request()
        if instance is None:
            self._reply(404, "Not Found\n")
        elif path == TOKEN_PATH:
            self._reply(405, "Method Not Allowed\n")
        elif not imds._token_valid(ip, self.headers.get(TOKEN_HEADER)):
            self._reply(401, "Unauthorized\n")
        elif path != METADATA_ROOT and not path.startswith(METADATA_ROOT + "/"):
            self._reply(404, "Not Found\n")
        else:
            now = datetime.fromtimestamp(imds.clock(), UTC)
            body = _lookup(_metadata_tree(instance, now), path[len(METADATA_ROOT) :])
            if body is None:
                self._reply(404, "Not Found\n")
            else:
                self._reply(200, body)

    def _not_allowed(self) -> None:
        self._discard_body()
        self._reply(405, "Method Not Allowed\n")

    do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed
