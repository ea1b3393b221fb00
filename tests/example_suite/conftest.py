"""One API container and one PostgreSQL per xdist worker, on a network of their own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import images
import psycopg
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy

try:
    from testcontainers.postgres import PostgresContainer
except ImportError:
    from testcontainers.community.postgres import PostgresContainer

# A runner has no registry for testcontainers' reaper: the fixtures remove what they start.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
STARTUP = 180


@dataclass(frozen=True)
class Stack:
    api_url: str
    database: PostgresContainer


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=600)
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack(docker_client: docker.DockerClient, worker_id: str) -> Iterator[Stack]:
    """PostgreSQL (alias db) and the API (alias api) on this worker's own network."""
    base = images.postgres_image(docker_client)
    api_tag = images.api_image(docker_client, base, f"example-suite/api:{worker_id}")
    with Network() as network:
        database = (
            PostgresContainer(base, driver=None)
            .with_network(network)
            .with_network_aliases("db")
            .waiting_for(
                LogMessageWaitStrategy("ready to accept connections").with_startup_timeout(STARTUP)
            )
        )
        with database:
            with psycopg.connect(_dsn(database), autocommit=True) as conn:
                conn.execute("CREATE TABLE items (name text PRIMARY KEY)")
            api = (
                DockerContainer(api_tag)
                .with_network(network)
                .with_network_aliases("api")
                .with_exposed_ports(8080)
                .with_env("DB_HOST", "db")
                .with_env("DB_USER", database.username)
                .with_env("DB_PASSWORD", database.password)
                .with_env("DB_NAME", database.dbname)
                .waiting_for(
                    HttpWaitStrategy(8080, "/cgi-bin/health").with_startup_timeout(STARTUP)
                )
            )
            with api:
                url = f"http://{api.get_container_host_ip()}:{api.get_exposed_port(8080)}"
                yield Stack(api_url=url, database=database)
    docker_client.images.remove(api_tag, force=True)


def _dsn(database: PostgresContainer) -> str:
    return (
        f"host={database.get_container_host_ip()} port={database.get_exposed_port(5432)} "
        f"user={database.username} password={database.password} dbname={database.dbname}"
    )


@pytest.fixture
def db(stack: Stack) -> Iterator[psycopg.Connection]:
    """A connection to this worker's database; the table is emptied after each test."""
    with psycopg.connect(_dsn(stack.database), autocommit=True) as conn:
        yield conn
        conn.execute("DELETE FROM items")
