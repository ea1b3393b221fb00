"""The API answers from the database it reaches over the suite's network."""

from __future__ import annotations

import asyncio

import httpx
import pytest


def test_the_api_sees_what_the_test_wrote_to_the_database(stack, db) -> None:
    db.execute("INSERT INTO items (name) VALUES ('apple'), ('pear')")
    answer = httpx.get(f"{stack.api_url}/cgi-bin/items", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": 2, "names": ["apple", "pear"]}


def test_an_empty_table_is_an_empty_list(stack, db) -> None:
    answer = httpx.get(f"{stack.api_url}/cgi-bin/items", timeout=30)
    assert answer.json() == {"items": 0, "names": []}


@pytest.mark.asyncio
async def test_concurrent_requests_all_get_the_same_answer(stack, db) -> None:
    db.execute("INSERT INTO items (name) VALUES ('plum')")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        answers = await asyncio.gather(*(client.get("/cgi-bin/items") for _ in range(8)))
    assert {a.status_code for a in answers} == {200}
    assert {a.text for a in answers} == {answers[0].text}
    assert answers[0].json()["names"] == ["plum"]


@pytest.mark.parametrize("name", ["fig", "kiwi", "lime", "date"])
def test_each_worker_has_its_own_database(stack, db, name) -> None:
    """Under xdist each worker writes to its own PostgreSQL: no row of another shows up."""
    db.execute("INSERT INTO items (name) VALUES (%s)", (name,))
    assert httpx.get(f"{stack.api_url}/cgi-bin/items", timeout=30).json()["names"] == [name]
