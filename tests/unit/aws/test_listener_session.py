"""The listener's remembered session: what it writes, and that anything else reads as nothing
remembered (a hand-edited value costs one wait for the service, never a wrong take-over)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.aws.adapters.listener_session import NOTHING, RememberedSession, decode, encode

pytestmark = pytest.mark.unit


@given(st.integers(min_value=1, max_value=2**53), st.text(min_size=1, max_size=80))
def test_what_is_written_reads_back(scale_set_id, session_id):
    session = RememberedSession(scale_set_id, session_id)
    assert decode(encode(session)) == session


def test_nothing_remembered_is_the_stacks_initial_value():
    assert encode(None) == NOTHING == "{}"
    assert decode(NOTHING) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "none",
        "[1]",
        '"abc"',
        '{"sessionId": "abc"}',
        '{"scaleSetId": 1}',
        '{"scaleSetId": 1, "sessionId": ""}',
        '{"scaleSetId": "1", "sessionId": "abc"}',
        '{"scaleSetId": true, "sessionId": "abc"}',
        '{"scaleSetId": 1, "sessionId": 7}',
    ],
)
def test_anything_else_reads_as_nothing_remembered(value):
    assert decode(value) is None
