"""The circuit breaker every target's probe runs behind (see docs/breakers.md).

closed → open after `consecutive_failures` failures in a row, or when the failure ratio of
the last `window` calls reaches `failure_ratio` (once `minimum_calls` were made), or at once
on a persistent failure; open → half_open once the back-off has elapsed; half_open → closed
after `half_open_successes` successes, back to open on a failure.

The back-off of the n-th consecutive opening (n = 0, 1, ...) is drawn with full jitter from
uniform(0, min(cap, base * 2**n)); a persistent failure waits the whole cap. The clock and
the random source are injected so that the state machine is deterministic under test.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from resilience_exporter.configuration.targets import BreakerConfig
from resilience_exporter.metrics.breaker_schema import BreakerState, BreakerView, Outcome
from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.reasons import Failure

BREAKER_LAST_ERROR = family(
    "resilience_breaker_last_error_info",
    "1 while the breaker is open or half-open, labelled with the reason of the last real "
    "failure and whether it is persistent (true: the back-off is the whole cap).",
    "gauge",
    ("breaker", "source", "reason", "persistent"),
    group="breaker",
)

# Transitions exported from the start (at 0), so that rate() sees the first one.
TRANSITIONS: tuple[tuple[BreakerState, BreakerState], ...] = (
    ("closed", "open"),
    ("open", "half_open"),
    ("half_open", "closed"),
    ("half_open", "open"),
)
# 2**60 times any sane base is beyond any cap; this keeps the float power finite.
_MAX_EXPONENT = 60


class UniformSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


class CircuitBreaker:
    """One target's breaker. Callers ask `allow()` before each call and report its outcome
    with `record_success()` or `record_failure(failure)`; a call not allowed is rejected."""

    def __init__(
        self,
        settings: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: UniformSource | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng: UniformSource = rng if rng is not None else random.Random()
        self.state: BreakerState = "closed"
        self.last_failure: Failure | None = None
        self._window: deque[bool] = deque(maxlen=settings.window)  # True: the call failed
        self._consecutive_failures = 0
        self._half_open_successes = 0
        self._openings = 0  # consecutive openings since the breaker was last closed
        self._next_attempt: float | None = None  # on `clock`, while open
        self.calls: dict[Outcome, int] = {"success": 0, "failure": 0, "rejected": 0}
        self.transitions: dict[tuple[BreakerState, BreakerState], int] = dict.fromkeys(
            TRANSITIONS, 0
        )

    # --- calls ---------------------------------------------------------------------------
    def allow(self) -> bool:
        """May a call go through now? While open, no (the call counts as rejected) until the
        back-off has elapsed; then the breaker turns half-open and lets trial calls through."""
        if self.state == "open":
            assert self._next_attempt is not None
            if self._clock() < self._next_attempt:
                self.calls["rejected"] += 1
                return False
            self._transition("half_open")
            self._half_open_successes = 0
            self._next_attempt = None
        return True

    def record_success(self) -> None:
        self.calls["success"] += 1
        if self.state == "half_open":
            self._half_open_successes += 1
            if self._half_open_successes >= self.settings.half_open_successes:
                self._close()
            return
        self._window.append(False)
        self._consecutive_failures = 0

    def record_failure(self, failure: Failure) -> None:
        self.calls["failure"] += 1
        self.last_failure = failure
        if self.state == "half_open":
            self._open(failure)
            return
        self._window.append(True)
        self._consecutive_failures += 1
        if failure.persistent or self._tripped():
            self._open(failure)

    def _tripped(self) -> bool:
        if self._consecutive_failures >= self.settings.consecutive_failures:
            return True
        return (
            len(self._window) >= self.settings.minimum_calls
            and self.failure_ratio >= self.settings.failure_ratio
        )

    # --- transitions ---------------------------------------------------------------------
    def _open(self, failure: Failure) -> None:
        self._transition("open")
        self._next_attempt = self._clock() + self.backoff(persistent=failure.persistent)
        self._openings += 1
        self._consecutive_failures = 0

    def backoff(self, *, persistent: bool) -> float:
        """Seconds to stay open for the next opening."""
        cap = self.settings.backoff_cap
        if persistent:
            return cap
        ceiling = self.settings.backoff_base_seconds * 2.0 ** min(self._openings, _MAX_EXPONENT)
        return self._rng.uniform(0.0, min(cap, ceiling))

    def _close(self) -> None:
        self._transition("closed")
        self._openings = 0
        self._consecutive_failures = 0
        self._window.clear()
        self.last_failure = None

    def _transition(self, to_state: BreakerState) -> None:
        key = (self.state, to_state)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        self.state = to_state

    # --- what is exported ----------------------------------------------------------------
    @property
    def failure_ratio(self) -> float:
        """Share of failures among the last `window` calls made while closed."""
        return sum(self._window) / len(self._window) if self._window else 0.0

    @property
    def next_attempt_at(self) -> float | None:
        """While open, the Unix time at which the next trial call is let through."""
        if self._next_attempt is None:
            return None
        return self._wall_clock() + max(self._next_attempt - self._clock(), 0.0)

    def view(self) -> BreakerView:
        return BreakerView(
            state=self.state,
            failure_ratio=self.failure_ratio,
            calls=dict(self.calls),
            transitions=dict(self.transitions),
            next_attempt_at=self.next_attempt_at or 0.0,
        )

    def last_error_samples(self, breaker: str, source: str) -> list[Sample]:
        failure = self.last_failure
        if self.state == "closed" or failure is None:
            return []
        persistent = "true" if failure.persistent else "false"
        return [
            sample(
                BREAKER_LAST_ERROR,
                1.0,
                breaker=breaker,
                source=source,
                reason=failure.reason,
                persistent=persistent,
            )
        ]
