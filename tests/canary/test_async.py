"""Async tests on one session-scoped event loop, talking to the worker's own PostgreSQL
through psycopg's async driver: the shape of a suite with a session-wide async engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio
from canary_postgres import PostgresContainer, WorkerDatabase

CONNECTIONS = 4

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _conninfo(container: PostgresContainer) -> dict[str, object]:
    return {
        "host": container.get_container_host_ip(),
        "port": container.get_exposed_port(5432),
        "user": container.username,
        "password": container.password,
        "dbname": container.dbname,
        "connect_timeout": 10,
        "autocommit": True,
    }


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def async_database(
    worker_database: tuple[WorkerDatabase, PostgresContainer],
) -> AsyncIterator[tuple[psycopg.AsyncConnection, asyncio.AbstractEventLoop]]:
    """One async connection for the whole session, opened on the session's loop."""
    _, container = worker_database
    conn = await psycopg.AsyncConnection.connect(**_conninfo(container))
    try:
        yield conn, asyncio.get_running_loop()
    finally:
        await conn.close()


async def test_the_session_connection_reads_this_workers_database(
    async_database: tuple[psycopg.AsyncConnection, asyncio.AbstractEventLoop],
    worker_database: tuple[WorkerDatabase, PostgresContainer],
) -> None:
    conn, loop = async_database
    assert asyncio.get_running_loop() is loop  # the fixture's loop serves the tests too
    cursor = await conn.execute("SELECT worker FROM owner")
    assert await cursor.fetchall() == [(worker_database[0].worker,)]


async def test_concurrent_async_connections_each_get_a_server_session(
    async_database: tuple[psycopg.AsyncConnection, asyncio.AbstractEventLoop],
    worker_database: tuple[WorkerDatabase, PostgresContainer],
) -> None:
    conn, loop = async_database
    assert asyncio.get_running_loop() is loop

    async def backend_pid() -> int:
        async with await psycopg.AsyncConnection.connect(**_conninfo(worker_database[1])) as c:
            cursor = await c.execute("SELECT pg_backend_pid()")
            row = await cursor.fetchone()
            return row[0]

    pids = await asyncio.gather(*(backend_pid() for _ in range(CONNECTIONS)))
    shared = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert len(set(pids)) == CONNECTIONS
    assert shared[0] not in pids
