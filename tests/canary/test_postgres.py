"""A database in a testcontainer: the most common containerized test a job runs."""

from __future__ import annotations

from canary_postgres import connect, postgres_container


def test_postgresql_in_a_testcontainer_answers_queries(postgres_image: str) -> None:
    """Start PostgreSQL, reach it through its published port, create a table, write, read."""
    with postgres_container(postgres_image) as container, connect(container) as conn:
        conn.execute("CREATE TABLE fruit (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO fruit (name) VALUES (%s), (%s)", ("apple", "pear"))
        rows = conn.execute("SELECT id, name FROM fruit ORDER BY id").fetchall()
        version = conn.execute("SELECT current_setting('server_version_num')").fetchone()
    assert rows == [(1, "apple"), (2, "pear")]
    assert version is not None and int(version[0]) >= 160000
