"""The docker backend while hosts come and go: docker-py lists containers, then inspects each;
a host removed in between (serve retiring it while `status` looks) must not fail the list.

The engine here is docker-py's own client with its two API calls answered in process (no
engine): the list names two hosts, and the inspect of one answers 404 as the engine does
for a removed container."""

from __future__ import annotations

import docker
import docker.errors
import pytest
import requests

from fleet.local import docker as backend

pytestmark = pytest.mark.unit

KEPT, GONE = "a" * 64, "b" * 64


def _not_found(container_id: str) -> docker.errors.NotFound:
    response = requests.Response()
    response.status_code = 404
    return docker.errors.NotFound(
        "404", response=response, explanation=f"No such container: {container_id}"
    )


@pytest.fixture
def engine(monkeypatch):
    engine = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    removed = {GONE}

    def containers(**_filters):
        return [{"Id": KEPT}, {"Id": GONE}]

    def inspect_container(container_id):
        if container_id in removed:
            raise _not_found(container_id)
        return {
            "Id": container_id,
            "Name": "/local-runner-1",
            "Created": "2026-01-01T00:00:00Z",
            "State": {"Status": "exited"},
            "Config": {"Labels": {}},
        }

    monkeypatch.setattr(engine.api, "containers", containers)
    monkeypatch.setattr(engine.api, "inspect_container", inspect_container)
    monkeypatch.setattr(backend, "client", lambda *a, **k: engine)
    return engine, removed


def test_a_host_removed_while_listed_is_left_out(engine):
    assert [c.id for c in backend.list_hosts("local")] == [KEPT]


def test_a_host_removed_before_its_probe_answers_not_running(engine):
    _, removed = engine
    (host,) = backend.list_hosts("local")
    removed.add(KEPT)
    assert backend.probe_host(host).running is False


def test_remove_fleet_counts_only_what_it_removed(engine, monkeypatch):
    client, _ = engine
    monkeypatch.setattr(client.api, "remove_container", lambda *a, **k: None)
    monkeypatch.setattr(client.api, "volumes", lambda **k: {"Volumes": []})
    monkeypatch.setattr(client.api, "networks", lambda **k: [])
    monkeypatch.setattr(client.api, "images", lambda **k: [])
    assert backend.remove_fleet("local")["containers"] == 1
