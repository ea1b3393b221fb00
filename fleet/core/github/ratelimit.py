"""Token bucket that caps how fast the fleet asks GitHub for just-in-time runner configs.

Pure: the clock is injected and nothing here sleeps unless a sleep function is passed in.
The bucket's state (tokens, last refill time) is a small dataclass, so a backend can keep
one bucket per GitHub App in shared storage and every process then honours the same rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_JIT_PER_MINUTE = 150.0
# Refill arithmetic on epoch-sized floats leaves crumbs like 0.9999999999: count them as whole.
_EPSILON = 1e-6


class RateLimitExceeded(Exception):
    """Raised when a token is not available within the wait the caller allowed."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(
            f"JIT issuance rate limit reached: next token in {wait_seconds:.1f}s; "
            "retry later or raise the fleet's jit_rate_per_minute"
        )
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class BucketState:
    """What a backend stores to share one bucket between processes."""

    tokens: float
    updated_at: float


class TokenBucket:
    """At most ``burst + rate_per_minute * t / 60`` acquisitions in any window of ``t`` seconds."""

    def __init__(
        self,
        rate_per_minute: float = DEFAULT_JIT_PER_MINUTE,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        state: BucketState | None = None,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        # Default burst: ten seconds' worth, so a storm cannot spend a minute's budget at once.
        burst = max(1.0, rate_per_minute / 6) if burst is None else burst
        if burst < 1:
            raise ValueError(f"burst must be >= 1 (one token), got {burst}")
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        if state is None:
            state = BucketState(tokens=self.burst, updated_at=clock())
        self._tokens = min(self.burst, state.tokens)
        self._updated = state.updated_at

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)  # a clock stepping back never mints tokens
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_second)
        self._updated = max(self._updated, now)

    @property
    def available(self) -> float:
        """Tokens available now (fractional)."""
        self._refill()
        return self._tokens

    def state(self) -> BucketState:
        """Snapshot for storage (see ``BucketState``)."""
        self._refill()
        return BucketState(tokens=self._tokens, updated_at=self._updated)

    def wait_time(self, tokens: float = 1.0) -> float:
        """Seconds until ``tokens`` can be acquired (0 if they can be now)."""
        if tokens > self.burst:
            raise ValueError(f"cannot acquire {tokens} tokens from a bucket of {self.burst}")
        self._refill()
        missing = tokens - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self.rate_per_second

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if available now; never waits."""
        if self.wait_time(tokens) > 0:
            return False
        self._tokens = max(0.0, self._tokens - tokens)
        return True

    def acquire(self, sleep: Sleep, *, max_wait: float, tokens: float = 1.0) -> float:
        """Take ``tokens``, sleeping (through ``sleep``) up to ``max_wait`` seconds.

        Returns the time slept; raises ``RateLimitExceeded`` without sleeping when the wait
        would be longer than ``max_wait``.
        """
        slept = 0.0
        for _ in range(100):  # bounded even if ``sleep`` does not move the clock
            wait = self.wait_time(tokens)
            if wait <= 0:
                self._tokens = max(0.0, self._tokens - tokens)
                return slept
            if slept + wait > max_wait:
                raise RateLimitExceeded(wait)
            sleep(wait)
            slept += wait
        raise RateLimitExceeded(self.wait_time(tokens))
