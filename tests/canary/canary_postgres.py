"""PostgreSQL in a testcontainer, reached the way a test suite reaches it."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

try:
    from testcontainers.community.postgres import PostgresContainer
except ImportError:  # testcontainers before the modules moved to testcontainers.community
    from testcontainers.postgres import PostgresContainer

STARTUP_SECONDS = 120


@dataclass(frozen=True)
class WorkerDatabase:
    """One xdist worker's own PostgreSQL container, as recorded for the other workers."""

    worker: str
    container_id: str
    host: str
    port: int


def postgres_container(image: str) -> PostgresContainer:
    """PostgreSQL that counts as started once the server logs it accepts connections.

    PostgresContainer then also waits until a query over TCP succeeds, which the official
    image's init-time server (socket only) cannot answer.
    """
    return PostgresContainer(image, driver=None).waiting_for(
        LogMessageWaitStrategy("ready to accept connections").with_startup_timeout(STARTUP_SECONDS)
    )


def connect(container: PostgresContainer) -> psycopg.Connection:
    """A psycopg connection through the published port on the container's host."""
    return psycopg.connect(
        host=container.get_container_host_ip(),
        port=container.get_exposed_port(5432),
        user=container.username,
        password=container.password,
        dbname=container.dbname,
        connect_timeout=10,
        autocommit=True,
    )
