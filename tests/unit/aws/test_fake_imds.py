"""The fake IMDS (tests/fakes/imds.py): IMDSv2 tokens per instance IP, hop limits, metadata,
and botocore's own credential fetcher against it. Loopback only: Linux answers all of 127/8,
so 127.0.0.1 and 127.0.0.2 are two instances."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import pytest
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher

from tests.fakes.imds import FakeImds, FakeInstance

pytestmark = pytest.mark.unit

EXPIRATION = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_instance(instance_id: str, *, hop_limit: int = 1) -> FakeInstance:
    return FakeInstance(
        instance_id=instance_id,
        region="eu-west-1",
        availability_zone="eu-west-1b",
        role_name="runner-fleet-main-runner",
        credentials=lambda: {
            "AccessKeyId": f"ASIA{instance_id[-6:].upper()}",
            "SecretAccessKey": f"secret-of-{instance_id}",
            "Token": f"session-of-{instance_id}",
            "Expiration": EXPIRATION,
        },
        hop_limit=hop_limit,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def imds(clock: Clock) -> Iterator[FakeImds]:
    with FakeImds("127.0.0.1", clock=clock) as server:
        server.register("127.0.0.1", make_instance("i-0000000000aaaaaa"))
        server.register("127.0.0.2", make_instance("i-0000000000bbbbbb", hop_limit=3))
        yield server


def call(
    imds: FakeImds,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    source: str = "127.0.0.1",
) -> tuple[int, str, http.client.HTTPMessage]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", imds.port, timeout=5, source_address=(source, 0)
    )
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.headers
    finally:
        connection.close()


def token_for(imds: FakeImds, *, source: str = "127.0.0.1", ttl: str = "21600") -> str:
    status, body, _ = call(
        imds,
        "PUT",
        "/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": ttl},
        source=source,
    )
    assert status == 200, body
    return body


def get(imds: FakeImds, path: str, token: str | None, *, source: str = "127.0.0.1"):
    headers = {"X-aws-ec2-metadata-token": token} if token is not None else {}
    status, body, _ = call(imds, "GET", path, headers, source=source)
    return status, body


def test_a_token_opens_the_instances_own_metadata(imds: FakeImds) -> None:
    status, token, headers = call(
        imds, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    assert status == 200
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-aws-ec2-metadata-token-ttl-seconds"] == "300"
    assert len(token) >= 32

    assert get(imds, "/latest/meta-data/instance-id", token) == (200, "i-0000000000aaaaaa")
    assert get(imds, "/latest/meta-data/placement/region", token) == (200, "eu-west-1")
    assert get(imds, "/latest/meta-data/placement/availability-zone", token) == (
        200,
        "eu-west-1b",
    )
    assert get(imds, "/latest/meta-data/autoscaling/target-lifecycle-state", token) == (
        200,
        "InService",
    )
    imds.instance("127.0.0.1").lifecycle_state = "Terminated"
    assert get(imds, "/latest/meta-data/autoscaling/target-lifecycle-state", token) == (
        200,
        "Terminated",
    )
    assert get(imds, "/latest/meta-data/", token) == (
        200,
        "autoscaling/\niam/\ninstance-id\nplacement/",
    )
    assert get(imds, "/latest/meta-data/iam/security-credentials/", token) == (
        200,
        "runner-fleet-main-runner",
    )
    status, body = get(imds, "/latest/meta-data/iam/info", token)
    assert status == 200
    info = json.loads(body)
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"] == (
        "arn:aws:iam::123456789012:instance-profile/runner-fleet-main-runner"
    )
    assert info["LastUpdated"] == "2027-01-15T08:00:00Z"

    status, body = get(
        imds, "/latest/meta-data/iam/security-credentials/runner-fleet-main-runner", token
    )
    assert status == 200
    assert json.loads(body) == {
        "Code": "Success",
        "LastUpdated": "2027-01-15T08:00:00Z",
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAAAAAAA",
        "SecretAccessKey": "secret-of-i-0000000000aaaaaa",
        "Token": "session-of-i-0000000000aaaaaa",
        "Expiration": "2031-01-02T03:04:05Z",
    }
    assert get(imds, "/latest/meta-data/ami-id", token)[0] == 404
    assert get(imds, "/latest/meta-data/iam/security-credentials/other-role", token)[0] == 404


def test_a_get_without_a_token_is_unauthorized(imds: FakeImds) -> None:
    assert get(imds, "/latest/meta-data/instance-id", None) == (401, "Unauthorized\n")
    assert get(imds, "/latest/meta-data/instance-id", "made-up")[0] == 401
    assert [(r.method, r.path, r.status) for r in imds.requests] == [
        ("GET", "/latest/meta-data/instance-id", 401),
        ("GET", "/latest/meta-data/instance-id", 401),
    ]


def test_a_token_expires_under_the_injected_clock(imds: FakeImds, clock: Clock) -> None:
    token = token_for(imds, ttl="60")
    clock.now = START + 59
    assert get(imds, "/latest/meta-data/instance-id", token)[0] == 200
    clock.now = START + 60
    assert get(imds, "/latest/meta-data/instance-id", token)[0] == 401
    clock.now = START  # gone for good, even if the clock went back
    assert get(imds, "/latest/meta-data/instance-id", token)[0] == 401


def test_a_token_from_another_instance_is_refused(imds: FakeImds) -> None:
    token_a = token_for(imds, source="127.0.0.1")
    token_b = token_for(imds, source="127.0.0.2")

    assert get(imds, "/latest/meta-data/instance-id", token_b, source="127.0.0.2") == (
        200,
        "i-0000000000bbbbbb",
    )
    assert get(imds, "/latest/meta-data/instance-id", token_a, source="127.0.0.2")[0] == 401
    assert get(imds, "/latest/meta-data/instance-id", token_b, source="127.0.0.1")[0] == 401
    assert {r.ip for r in imds.requests} == {"127.0.0.1", "127.0.0.2"}


def test_an_unregistered_or_forgotten_ip_gets_nothing(imds: FakeImds) -> None:
    token = token_for(imds, source="127.0.0.2")
    imds.forget("127.0.0.2")
    assert get(imds, "/latest/meta-data/instance-id", token, source="127.0.0.2")[0] == 404
    status, _, _ = call(
        imds,
        "PUT",
        "/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        source="127.0.0.3",
    )
    assert status == 404
    assert imds.requests[-1][:4] == ("127.0.0.3", "PUT", "/latest/api/token", 404)
    imds.register("127.0.0.2", make_instance("i-0000000000cccccc"))  # a new instance, same IP
    assert get(imds, "/latest/meta-data/instance-id", token, source="127.0.0.2")[0] == 401


@pytest.mark.parametrize("ttl", [None, "0", "21601", "-5", "sixty", ""])
def test_a_bad_ttl_header_is_a_bad_request(imds: FakeImds, ttl: str | None) -> None:
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    status, _, _ = call(imds, "PUT", "/latest/api/token", headers)
    assert status == 400


@pytest.mark.parametrize("ttl", ["1", "21600"])
def test_the_ttl_bounds_are_accepted(imds: FakeImds, ttl: str) -> None:
    assert get(imds, "/latest/meta-data/instance-id", token_for(imds, ttl=ttl))[0] == 200


def test_a_forwarded_put_is_forbidden(imds: FakeImds) -> None:
    status, body, _ = call(
        imds,
        "PUT",
        "/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.9"},
    )
    assert (status, body) == (403, "Forbidden\n")


def test_other_methods_are_not_allowed(imds: FakeImds) -> None:
    assert call(imds, "POST", "/latest/api/token")[0] == 405
    assert call(imds, "GET", "/latest/api/token")[0] == 405


def test_the_token_answer_leaves_with_the_hop_limit_as_ip_ttl(imds: FakeImds) -> None:
    token_a = token_for(imds, source="127.0.0.1")  # hop limit 1
    token_b = token_for(imds, source="127.0.0.2")  # hop limit 3
    get(imds, "/latest/meta-data/instance-id", token_a, source="127.0.0.1")
    get(imds, "/latest/meta-data/instance-id", token_b, source="127.0.0.2")
    assert [(r.ip, r.method, r.status, r.ip_ttl) for r in imds.requests] == [
        ("127.0.0.1", "PUT", 200, 1),
        ("127.0.0.2", "PUT", 200, 3),
        ("127.0.0.1", "GET", 200, 64),
        ("127.0.0.2", "GET", 200, 64),
    ]


def test_the_ttl_is_set_per_response_on_a_kept_alive_connection(imds: FakeImds) -> None:
    connection = http.client.HTTPConnection(
        "127.0.0.1", imds.port, timeout=5, source_address=("127.0.0.2", 0)
    )
    ask_token = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    try:
        connection.request("PUT", "/latest/api/token", headers=ask_token)
        token = connection.getresponse().read().decode()
        connection.request(
            "GET", "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
        )
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"i-0000000000bbbbbb")
        # An answer from http.server's own error path (an unknown method: 501) right after
        # a token on the same connection also leaves with the default TTL.
        connection.request("PUT", "/latest/api/token", headers=ask_token)
        connection.getresponse().read()
        connection.request("BREW", "/latest/meta-data/instance-id")
        assert connection.getresponse().status == 501
    finally:
        connection.close()
    assert [(r.method, r.status, r.ip_ttl) for r in imds.requests] == [
        ("PUT", 200, 3),
        ("GET", 200, 64),
        ("PUT", 200, 3),
        ("BREW", 501, 64),
    ]


def test_a_half_sent_request_does_not_hold_a_thread(clock: Clock) -> None:
    with FakeImds(clock=clock, request_timeout=0.2) as imds:
        with socket.create_connection(("127.0.0.1", imds.port), timeout=5) as client:
            client.sendall(b"PUT /latest/api/tok")
            assert client.recv(1024) == b""  # the server gave up and closed, well before 5 s
        assert imds.requests == []


def test_botocore_fetches_the_role_credentials(
    imds: FakeImds, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    fetcher = InstanceMetadataFetcher(base_url=imds.url, timeout=5, num_attempts=1)

    credentials = fetcher.retrieve_iam_role_credentials()

    assert credentials == {
        "role_name": "runner-fleet-main-runner",
        "access_key": "ASIAAAAAAA",
        "secret_key": "secret-of-i-0000000000aaaaaa",
        "token": "session-of-i-0000000000aaaaaa",
        "expiry_time": "2031-01-02T03:04:05Z",
    }
    assert [(r.method, r.path, r.status) for r in imds.requests] == [
        ("PUT", "/latest/api/token", 200),
        ("GET", "/latest/meta-data/iam/security-credentials/", 200),
        ("GET", "/latest/meta-data/iam/security-credentials/runner-fleet-main-runner", 200),
    ]
    region = InstanceMetadataRegionFetcher(base_url=imds.url, timeout=5).retrieve_region()
    assert region == "eu-west-1"


def test_a_botocore_session_finds_the_credentials_through_the_endpoint_setting(
    imds: FakeImds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As awscli v1 on an instance would: nothing configured but the IMDS endpoint."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_EC2_METADATA_DISABLED",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)

    credentials = botocore.session.Session().get_credentials()

    assert credentials is not None
    assert credentials.method == "iam-role"
    assert credentials.get_frozen_credentials().access_key == "ASIAAAAAAA"
