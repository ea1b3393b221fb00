"""Scaling decisions (properties 16, 19, 25; fault scenarios 2, 4, 6) by example and by property.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.scaling import Decision, FleetLimits, FleetRunner, RunnerStatus, decide

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
BUSY, IDLE, BOOTING, OFFLINE = (
    RunnerStatus.BUSY,
    RunnerStatus.IDLE,
    RunnerStatus.BOOTING,
    RunnerStatus.OFFLINE,
)
LIMITS = FleetLimits(
    min_size=0,
    max_size=20,
    warm_idle=0,
    max_scale_up_per_cycle=10,
    boot_deadline=timedelta(minutes=10),
    max_lifetime=timedelta(hours=8),
    idle_grace=timedelta(minutes=5),
)


def runner(
    n: int,
    status: RunnerStatus,
    age_minutes: float,
    idle_minutes: float | None = None,
    name: str | None = None,
) -> FleetRunner:
    idle_since = NOW - timedelta(minutes=idle_minutes) if idle_minutes is not None else None
    return FleetRunner(
        f"i-{n:04d}", status, NOW - timedelta(minutes=age_minutes), name=name, idle_since=idle_since
    )


def test_an_empty_fleet_launches_one_runner_per_queued_job():
    d = decide(3, [], LIMITS, NOW)
    assert (d.desired_capacity, d.launch, d.retire, d.terminate) == (3, 3, (), ())


def test_booting_runners_count_against_queued_jobs():
    d = decide(3, [runner(1, BOOTING, 1), runner(2, BOOTING, 2)], LIMITS, NOW)
    assert (d.desired_capacity, d.launch) == (3, 1)


def test_idle_runners_count_against_queued_jobs_and_busy_ones_do_not():
    fleet = [runner(1, IDLE, 3, 1), runner(2, BUSY, 30), runner(3, BUSY, 30)]
    d = decide(2, fleet, LIMITS, NOW)
    assert (d.desired_capacity, d.launch) == (4, 1)


def test_surplus_idle_runners_are_retired_oldest_first_after_the_grace_period():
    fleet = [
        runner(1, IDLE, 60, 50),
        runner(2, IDLE, 90, 20),
        runner(3, IDLE, 10, 2),
        runner(4, IDLE, 120, 1),
    ]
    d = decide(1, fleet, LIMITS, NOW)
    # Three surplus; runners 3 and 4 are still within the grace period, so two go now,
    # the longest-running first.
    assert d.retire == ("i-0002", "i-0001")
    assert d.desired_capacity == 2 and d.launch == 0


def test_warm_idle_runners_are_kept_and_topped_up():
    limits = FleetLimits(max_size=20, warm_idle=2, idle_grace=timedelta(0))
    assert decide(0, [runner(1, IDLE, 60, 60)], limits, NOW).launch == 1
    d = decide(0, [runner(n, IDLE, 60, 60) for n in range(4)], limits, NOW)
    assert len(d.retire) == 2 and d.desired_capacity == 2


def test_min_size_is_kept_even_when_idle():
    limits = FleetLimits(min_size=2, max_size=5, idle_grace=timedelta(0))
    d = decide(0, [runner(n, IDLE, 60, 60) for n in range(3)], limits, NOW)
    assert len(d.retire) == 1 and d.desired_capacity == 2


def test_a_busy_runner_past_max_lifetime_is_reported_but_never_retired():
    fleet = [runner(1, BUSY, 9 * 60), runner(2, IDLE, 9 * 60, 10)]
    d = decide(0, fleet, LIMITS, NOW)
    assert d.retire == ("i-0002",)
    assert d.overdue_busy == ("i-0001",)
    assert "i-0001" not in d.terminate


def test_a_two_hour_job_survives():
    d = decide(0, [runner(1, BUSY, 150)], LIMITS, NOW)
    assert d.retire == () and d.terminate == () and d.desired_capacity == 1


def test_instances_that_never_registered_in_time_are_terminated_and_replaced():
    fleet = [runner(1, BOOTING, 11), runner(2, BOOTING, 3)]
    d = decide(2, fleet, LIMITS, NOW)
    assert d.terminate == ("i-0001",)
    assert (d.kept, d.launch, d.desired_capacity) == (1, 1, 2)


def test_a_storm_is_bounded_by_the_scale_up_rate_and_max_size():
    d = decide(500, [], LIMITS, NOW)
    assert (d.desired_capacity, d.launch) == (10, 10)
    booting = [runner(n, BOOTING, 1) for n in range(10)]
    d = decide(490, booting, LIMITS, NOW)
    assert (d.desired_capacity, d.launch) == (20, 10)
    d = decide(480, [runner(n, BOOTING, 1) for n in range(20)], LIMITS, NOW)
    assert (d.desired_capacity, d.launch) == (20, 0)
    assert any("max_size" in reason for reason in d.reasons)


def test_min_size_is_restored_at_once_even_beyond_the_scale_up_rate():
    limits = FleetLimits(min_size=15, max_size=30, max_scale_up_per_cycle=5)
    d = decide(40, [], limits, NOW)
    assert (d.desired_capacity, d.launch) == (20, 20)


def test_lowering_max_below_the_fleet_sheds_idle_then_booting_never_busy():
    limits = FleetLimits(max_size=3)
    fleet = [
        runner(1, BUSY, 30),
        runner(2, BUSY, 30),
        runner(3, IDLE, 30, 1),
        runner(4, BOOTING, 2),
        runner(5, BOOTING, 1),
    ]
    d = decide(5, fleet, limits, NOW)
    assert d.retire == ("i-0003",)
    assert d.terminate == ("i-0005",), "the newest booting instance goes first"
    assert d.desired_capacity == 3 and d.launch == 0


def test_busy_runners_above_max_are_left_to_finish():
    limits = FleetLimits(max_size=2)
    d = decide(0, [runner(n, BUSY, 30) for n in range(4)], limits, NOW)
    assert d.retire == () and d.terminate == ()
    assert d.desired_capacity == 2 and d.kept == 4


def test_offline_runners_are_not_available_and_not_touched():
    d = decide(1, [runner(1, OFFLINE, 60 * 24)], LIMITS, NOW)
    assert d.retire == () and d.terminate == ()
    assert (d.desired_capacity, d.launch, d.offline) == (2, 1, 1)


def test_the_same_instance_twice_is_an_error():
    with pytest.raises(ValueError, match="listed twice"):
        decide(0, [runner(1, IDLE, 1), runner(1, BUSY, 1)], LIMITS, NOW)


def test_negative_queue_is_an_error():
    with pytest.raises(ValueError, match="queued"):
        decide(-1, [], LIMITS, NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_size": -1}, "min_size"),
        ({"min_size": 5, "max_size": 4}, "max_size"),
        ({"max_size": 0}, "max_size"),
        ({"warm_idle": -1}, "warm_idle"),
        ({"max_scale_up_per_cycle": 0}, "max_scale_up_per_cycle"),
        ({"boot_deadline": timedelta(0)}, "boot_deadline"),
        ({"max_lifetime": timedelta(minutes=5)}, "max_lifetime"),
        ({"idle_grace": timedelta(seconds=-1)}, "idle_grace"),
    ],
)
def test_invalid_limits_name_the_bad_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FleetLimits(**kwargs)


def test_decisions_are_fast_for_large_fleets():
    rng = random.Random(7)
    fleet = [
        runner(n, rng.choice(list(RunnerStatus)), rng.uniform(0, 600), rng.uniform(0, 60))
        for n in range(50_000)
    ]
    started = time.perf_counter()
    decide(1000, fleet, FleetLimits(max_size=60_000, max_scale_up_per_cycle=500), NOW)
    assert time.perf_counter() - started < 1.0


# -- properties ----------------------------------------------------------------------------

limits_strategy = st.builds(
    lambda lo, span, warm, up, boot, extra, grace: FleetLimits(
        min_size=lo,
        max_size=max(1, lo + span),
        warm_idle=warm,
        max_scale_up_per_cycle=up,
        boot_deadline=timedelta(minutes=boot),
        max_lifetime=timedelta(minutes=boot + extra),
        idle_grace=timedelta(minutes=grace),
    ),
    lo=st.integers(0, 5),
    span=st.integers(0, 25),
    warm=st.integers(0, 5),
    up=st.integers(1, 8),
    boot=st.integers(1, 20),
    extra=st.integers(1, 600),
    grace=st.integers(0, 30),
)

fleet_strategy = st.lists(
    st.tuples(
        st.sampled_from(list(RunnerStatus)),
        st.one_of(st.floats(0, 20), st.floats(0, 900)),  # minutes since launch
        st.one_of(st.floats(0, 10), st.floats(0, 900)),  # minutes idle
    ),
    max_size=40,
).map(
    lambda rows: [
        FleetRunner(
            f"i-{n:04d}",
            status,
            NOW - timedelta(minutes=age),
            idle_since=NOW - timedelta(minutes=min(age, idle)),
        )
        for n, (status, age, idle) in enumerate(rows)
    ]
)


def by_id(runners: list[FleetRunner]) -> dict[str, FleetRunner]:
    return {r.instance_id: r for r in runners}


def available_after(d: Decision, runners: list[FleetRunner]) -> int:
    removed = set(d.retire) | set(d.terminate)
    still = [r for r in runners if r.instance_id not in removed and r.status in (IDLE, BOOTING)]
    return len(still) + d.launch


@settings(max_examples=200, deadline=None)
@given(queued=st.integers(0, 60), runners=fleet_strategy, limits=limits_strategy)
def test_scaling_invariants(queued, runners, limits):
    d = decide(queued, runners, limits, NOW)
    index = by_id(runners)
    retire, terminate = set(d.retire), set(d.terminate)

    # Never retire or terminate a busy runner; retire only idle ones, terminate only booting.
    assert all(index[i].status is IDLE for i in retire)
    assert all(index[i].status is BOOTING for i in terminate)
    assert not retire & terminate
    assert len(retire) == len(d.retire) and len(terminate) == len(d.terminate)

    # Desired capacity within [min, max]; launch consistent with what is kept.
    assert limits.min_size <= d.desired_capacity <= limits.max_size
    assert d.kept == len(runners) - len(retire) - len(terminate)
    assert d.launch == max(0, d.desired_capacity - d.kept)

    # Scale-up per cycle bounded by the rate limit (above the min_size floor).
    assert d.desired_capacity - max(d.kept, limits.min_size) <= limits.max_scale_up_per_cycle

    # Runners past max lifetime are retired only when idle, and then always.
    for r in runners:
        if r.age(NOW) > limits.max_lifetime and r.status is IDLE:
            assert r.instance_id in retire
    # Never-registered instances past the boot deadline are terminated.
    for r in runners:
        if r.status is BOOTING and r.age(NOW) > limits.boot_deadline:
            assert r.instance_id in terminate

    # Every queued job (and the warm idle target) is matched to capacity while below max and
    # not held back by the scale-up rate.
    rate_bound = d.desired_capacity - max(d.kept, limits.min_size) == limits.max_scale_up_per_cycle
    if d.desired_capacity < limits.max_size and not rate_bound:
        assert available_after(d, runners) >= queued + limits.warm_idle

    # Surplus retirement never cuts into demand: the fleet keeps what queued + warm need.
    healthy = [
        r
        for r in runners
        if r.instance_id not in terminate
        and not (r.status is IDLE and r.age(NOW) > limits.max_lifetime)
    ]
    if len(healthy) <= limits.max_size:
        kept_available = available_after(d, runners) - d.launch
        before = sum(r.status in (IDLE, BOOTING) for r in healthy)
        assert kept_available >= min(before, queued + limits.warm_idle)


@settings(max_examples=150, deadline=None)
@given(
    queued=st.integers(0, 60),
    runners=fleet_strategy,
    warm=st.integers(0, 5),
    lo=st.integers(0, 5),
    grace=st.integers(0, 30),
)
def test_every_queued_job_is_matched_to_capacity_when_max_and_rate_do_not_bind(
    queued, runners, warm, lo, grace
):
    limits = FleetLimits(
        min_size=lo,
        max_size=500,
        warm_idle=warm,
        max_scale_up_per_cycle=500,
        idle_grace=timedelta(minutes=grace),
    )
    d = decide(queued, runners, limits, NOW)
    assert available_after(d, runners) >= queued + warm
    # ... and no more launched than that needs (plus what min_size asks for).
    busy_or_offline = sum(r.status in (BUSY, OFFLINE) for r in runners)
    assert d.desired_capacity <= max(lo, d.kept, busy_or_offline + queued + warm)


@settings(max_examples=50, deadline=None)
@given(
    queued=st.integers(0, 60), runners=fleet_strategy, limits=limits_strategy, seed=st.integers()
)
def test_the_order_runners_are_listed_in_does_not_matter(queued, runners, limits, seed):
    shuffled = list(runners)
    random.Random(seed).shuffle(shuffled)
    a, b = decide(queued, runners, limits, NOW), decide(queued, shuffled, limits, NOW)
    assert (a.desired_capacity, a.launch, set(a.retire), set(a.terminate)) == (
        b.desired_capacity,
        b.launch,
        set(b.retire),
        set(b.terminate),
    )


@settings(max_examples=60, deadline=None)
@given(queued=st.integers(0, 60), runners=fleet_strategy, limits=limits_strategy)
def test_more_queued_jobs_never_shrink_the_fleet(queued, runners, limits):
    fewer = decide(queued, runners, limits, NOW)
    more = decide(queued + 1, runners, limits, NOW)
    assert more.desired_capacity >= fewer.desired_capacity
    assert set(more.retire) <= set(fewer.retire)
