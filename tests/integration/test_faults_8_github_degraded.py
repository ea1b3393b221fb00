"""Fault scenario 8: GitHub degraded (403/429 with retry-after or a rate-limit reset, 5xx, a
revoked token, clock skew) -> backoff, no busy loop, nothing terminated on uncertain state,
recovery when GitHub returns. Property 24 (JWT backdating, token refresh, retry-after and
x-ratelimit-reset honoured), through the deployed functions (moto, fake GitHub).

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import pytest

from fleet.aws.handlers.lifecycle import JitConfigError, TransientLifecycleError
from tests.integration.harness import Fleet

pytestmark = pytest.mark.integration

JIT = "/orgs/acme/actions/runners/generate-jitconfig"


def lifecycle_errors(fleet: Fleet) -> list[Exception]:
    return [r for f, r in fleet.results if f == "lifecycle" and isinstance(r, Exception)]


def assert_recovered(fleet: Fleet) -> None:
    fleet.run_until(fleet.settled, max_steps=20, reaper=True)
    assert all(j.conclusion in ("success", "cancelled") for j in fleet.github.jobs.values())
    fleet.run_until(fleet.nothing_left, max_steps=5, reaper=True)
    assert fleet.killed_busy == []


def test_fault_8_jit_issuance_rides_out_5xx_and_honours_rate_limits(make_fleet):
    fleet = make_fleet(max_size=3)
    clock = fleet.clock
    # 5xx twice: retried in the call, with growing, jittered backoff.
    fleet.github.fail_next(502, times=2, path_prefix=JIT)
    fleet.queue_jobs(1)
    fleet.pump_queue()
    sleeps = len(clock.sleeps)
    fleet.asg_tick()
    assert fleet.results[-1][1]["result"] == "jit-config-stored"
    assert len(fleet.github.calls("POST", JIT)) == 3
    backoff = clock.sleeps[sleeps:]
    assert len(backoff) == 2 and 0 < backoff[0] < backoff[1]

    # A secondary rate limit with a short retry-after: waited out in the call.
    fleet.github.fail_next(
        403, path_prefix=JIT, headers={"retry-after": "7"}, message="secondary rate limit"
    )
    fleet.queue_jobs(1)
    fleet.pump_queue()
    sleeps = len(clock.sleeps)
    fleet.asg_tick()
    assert fleet.results[-1][1]["result"] == "jit-config-stored"
    assert 7 <= max(clock.sleeps[sleeps:]) < 8

    # The primary limit exhausted until a reset 5 minutes away: the function does not hold
    # on (it would time out); it fails the event, which Lambda retries later.
    reset = int(clock()) + 300
    fleet.github.fail_next(
        403,
        path_prefix=JIT,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        message="API rate limit exceeded",
    )
    fleet.queue_jobs(1)
    fleet.pump_queue()
    sleeps = len(clock.sleeps)
    fleet.asg_tick()
    assert isinstance(lifecycle_errors(fleet)[-1], TransientLifecycleError)
    assert "retry after" in str(lifecycle_errors(fleet)[-1])
    assert all(s <= 20 for s in clock.sleeps[sleeps:])
    assert len(fleet.retries) == 1
    assert_recovered(fleet)
    assert fleet.aws.dead_letters() == []


def test_fault_8_github_outage_terminates_nothing_and_does_not_busy_loop(make_fleet):
    fleet = make_fleet(max_size=3)
    jobs = fleet.queue_jobs(2)
    fleet.pump_queue()
    fleet.cancel(jobs[1])  # one runner will be surplus: a candidate for scale-in
    fleet.step(finish=False)
    before = {s.instance.id for s in fleet.aws.group_states()}
    assert len(before) == 2

    fleet.github.fail_next(503, times=10**6)  # everything fails, for a long time
    requests = len(fleet.github.requests)
    invocations = len(fleet.results)
    sleeps = len(fleet.clock.sleeps)
    for _ in range(4):
        fleet.clock.advance(20 * 60)  # past the idle grace, the boot deadline and beyond
        fleet.step(finish=False, reaper=True)
    outage_requests = len(fleet.github.requests) - requests
    cycles = [r for f, r in fleet.results[invocations:] if f in ("scaler", "reaper")]
    # Nothing decided, nothing terminated on uncertain state.
    assert cycles and all(r.get("skipped", "").startswith("GitHub unavailable") for r in cycles)
    assert {s.instance.id for s in fleet.aws.group_states()} == before
    assert fleet.killed_busy == []
    # Bounded attempts per invocation (the client's max_attempts), with backoff between them.
    assert outage_requests <= 4 * len(cycles), (outage_requests, len(cycles))
    backoff = fleet.clock.sleeps[sleeps:]
    assert len(backoff) >= outage_requests - len(cycles) and min(backoff) >= 0.5

    fleet.github.faults.clear()  # GitHub is back
    assert_recovered(fleet)


def test_fault_8_revoked_installation_token_is_replaced(make_fleet):
    fleet = make_fleet(max_size=2)
    fleet.queue_jobs(1)
    fleet.step(finish=False)
    issued = len(fleet.github.token_bodies)
    for token in list(fleet.github.tokens):
        fleet.github.revoke(token)
    fleet.step(reaper=True)
    assert len(fleet.github.token_bodies) > issued  # fetched again after the 401
    assert [r for _, r in fleet.results if isinstance(r, Exception)] == []
    # Tokens ask for the permissions the control plane uses, nothing more.
    assert fleet.github.token_bodies[-1] == {
        "permissions": {"organization_self_hosted_runners": "write", "actions": "write"}
    }
    assert_recovered(fleet)


def test_fault_8_clock_skew_is_absorbed_or_backed_off_never_terminating(make_fleet):
    fleet = make_fleet(max_size=2)
    # 45 s fast: the App JWT is backdated 60 s, so GitHub still accepts it.
    fleet.runtimes["lifecycle"] = fleet.fresh_runtime("lifecycle", clock=lambda: fleet.clock() + 45)
    fleet.queue_jobs(1)
    fleet.step()
    assert lifecycle_errors(fleet) == []
    fleet.run_until(fleet.settled, max_steps=5)

    # 3 minutes fast: GitHub refuses the JWT ("iat" in the future). The launch is not
    # abandoned in a loop: the event fails, Lambda retries it twice, then dead-letters it.
    fleet.runtimes["lifecycle"] = fleet.fresh_runtime(
        "lifecycle", clock=lambda: fleet.clock() + 180
    )
    requests = len(fleet.github.requests)
    fleet.queue_jobs(1)
    for _ in range(3):
        fleet.step()
    errors = lifecycle_errors(fleet)
    assert len(errors) == 3 and all(isinstance(e, JitConfigError) for e in errors)
    assert "clock" in str(errors[0])
    assert len(fleet.dead_lettered) == 1 and len(fleet.aws.dead_letters()) == 1
    assert len(fleet.github.requests) - requests <= 12  # a few per attempt, no loop
    assert fleet.killed_busy == []

    # The clock is fixed: the reaper replaces the instance that never got a config.
    fleet.runtimes["lifecycle"] = fleet.fresh_runtime("lifecycle")
    fleet.clock.advance(11 * 60)
    fleet.run_until(fleet.settled, max_steps=10, reaper=True)
    assert all(j.conclusion == "success" for j in fleet.github.jobs.values())
    assert fleet.killed_busy == []
