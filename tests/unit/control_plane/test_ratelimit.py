"""The token bucket that keeps JIT issuance under a configured rate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.github.ratelimit import BucketState, RateLimitExceeded, TokenBucket
from tests.fakes.github_api import FakeClock

pytestmark = pytest.mark.unit


def test_default_is_150_per_minute_with_a_ten_second_burst(clock):
    bucket = TokenBucket(clock=clock)
    assert bucket.rate_per_second == pytest.approx(2.5)
    assert bucket.burst == pytest.approx(25)


def test_burst_then_the_steady_rate(clock):
    bucket = TokenBucket(60, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(1.0)
    clock.advance(0.5)
    assert not bucket.try_acquire()
    clock.advance(0.5)
    assert bucket.try_acquire()


def test_tokens_do_not_pile_up_beyond_the_burst(clock):
    bucket = TokenBucket(60, burst=2, clock=clock)
    clock.advance(3600)
    assert bucket.available == pytest.approx(2)


def test_a_clock_stepping_back_mints_no_tokens(clock):
    bucket = TokenBucket(60, burst=1, clock=clock)
    assert bucket.try_acquire()
    clock.advance(-100)
    assert not bucket.try_acquire()
    clock.advance(100.5)
    assert not bucket.try_acquire()
    clock.advance(0.5)
    assert bucket.try_acquire()


def test_acquire_sleeps_through_the_injected_sleep(clock):
    bucket = TokenBucket(120, burst=1, clock=clock)
    assert bucket.acquire(clock.sleep, max_wait=5) == 0
    assert bucket.acquire(clock.sleep, max_wait=5) == pytest.approx(0.5)
    assert clock.sleeps == [pytest.approx(0.5)]


def test_acquire_raises_instead_of_waiting_longer_than_allowed(clock):
    bucket = TokenBucket(6, burst=1, clock=clock)
    bucket.try_acquire()
    with pytest.raises(RateLimitExceeded) as caught:
        bucket.acquire(clock.sleep, max_wait=5)
    assert caught.value.wait_seconds == pytest.approx(10)
    assert clock.sleeps == []


def test_state_can_be_stored_and_restored(clock):
    bucket = TokenBucket(60, burst=5, clock=clock)
    for _ in range(4):
        bucket.try_acquire()
    state = bucket.state()
    restored = TokenBucket(60, burst=5, clock=clock, state=state)
    assert restored.available == pytest.approx(1)
    assert state == BucketState(tokens=pytest.approx(1), updated_at=clock())


@pytest.mark.parametrize("kwargs", [{"rate_per_minute": 0}, {"burst": 0.5}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        TokenBucket(**{"rate_per_minute": 60, **kwargs})


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=600),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_window(rate, burst, gaps):
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate, burst=burst, clock=clock)
    granted: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        if bucket.try_acquire():
            granted.append(clock())
    # In every window [granted[i], granted[j]]: count <= burst + rate * window.
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            window = granted[j] - granted[i]
            assert j - i + 1 <= burst + rate / 60 * window + 1e-6
