"""Several containers cooperating on one user-defined network, the way a suite starts its
service under test next to its database: reached by network alias, ready by wait strategy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from canary_api import API_PORT, api_container, ensure_api_image
from canary_postgres import PostgresContainer, connect, postgres_container
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

REQUEST_SECONDS = 10


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    with Network() as created:
        yield created


@pytest.fixture(scope="module")
def database(postgres_image: str, network: Network) -> Iterator[PostgresContainer]:
    container = postgres_container(postgres_image).with_network(network)
    with container.with_network_aliases("db") as started:
        with connect(started) as conn:
            conn.execute("CREATE TABLE visits (id serial PRIMARY KEY)")
        yield started


@pytest.fixture(scope="module")
def api(
    docker_client: docker.DockerClient,
    postgres_image: str,
    busybox_binary: Path,
    network: Network,
    database: PostgresContainer,
) -> Iterator[DockerContainer]:
    image = ensure_api_image(docker_client, postgres_image, busybox_binary)
    settings = {
        "host": "db",  # the alias: only resolvable on the shared network
        "user": database.username,
        "password": database.password,
        "name": database.dbname,
    }
    with api_container(image, network, settings) as started:
        yield started


def _url(api: DockerContainer) -> str:
    return f"http://{api.get_container_host_ip()}:{api.get_exposed_port(API_PORT)}/cgi-bin/visits"


def test_the_api_writes_to_postgresql_reached_by_its_alias(
    api: DockerContainer, database: PostgresContainer
) -> None:
    """POSTs through the API land in the database the test reads directly."""
    with connect(database) as conn:
        before = conn.execute("SELECT count(*) FROM visits").fetchone()[0]
    answers = [requests.post(_url(api), timeout=REQUEST_SECONDS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    assert [int(a.text) for a in answers] == [before + 1, before + 2, before + 3]
    with connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM visits").fetchone()[0] == before + 3
