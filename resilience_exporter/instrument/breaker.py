"""Counting what an application's circuit breaker does, whatever library it comes from.

`BreakerTracker` keeps the counts of the shared schema (calls by outcome, transitions, the
failure share of the last calls, and, with a slow-call threshold, call durations and slow
calls); an adapter per library (`breaker_libraries.py`) feeds it from the library's own hooks.
"""

from __future__ import annotations

import collections
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from resilience_exporter.instrument.breaker_libraries import BreakerLibrary, attach
from resilience_exporter.metrics.breaker_schema import BreakerState, BreakerView, Outcome

P = ParamSpec("P")
R = TypeVar("R")
# The call-duration quantiles a tracker with a slow-call threshold reports over its window.
QUANTILES = (0.5, 0.9, 0.99)


class BreakerTracker:
    """Counts calls by outcome, state transitions, and the share of failures among the last
    `window` calls. With `slow_call_threshold` (seconds) the duration of every call that ran is
    kept for the last `window` calls: slow calls are counted, and the slow-call share and the
    duration quantiles are reported. Fallbacks are counted where the library runs them
    (circuitbreaker's `fallback_function`) or through `fallback_to`."""

    def __init__(
        self,
        breaker: Any,
        *,
        window: int = 100,
        slow_call_threshold: float | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must hold at least one call")
        if slow_call_threshold is not None and slow_call_threshold <= 0:
            raise ValueError("slow_call_threshold must be a positive number of seconds")
        self.breaker = breaker
        self.slow_call_threshold = slow_call_threshold
        self._lock = threading.Lock()
        self._calls: dict[Outcome, int] = {"success": 0, "failure": 0, "rejected": 0}
        self._transitions: dict[tuple[BreakerState, BreakerState], int] = {}
        self._recent: collections.deque[bool] = collections.deque(maxlen=window)
        self._durations: collections.deque[float] = collections.deque(maxlen=window)
        self._slow_calls = 0
        self._fallbacks: int | None = None
        self._opened_at: float | None = None
        self._library: BreakerLibrary = attach(breaker, self)
        self._last_state: BreakerState = self._library.state()
        if self._last_state == "open":
            self._opened_at = time.time()

    @property
    def name(self) -> str:
        return self._library.name() or f"breaker-{id(self.breaker):x}"

    # What the adapters report

    def record_outcome(self, outcome: Outcome) -> None:
        with self._lock:
            self._calls[outcome] += 1
            if outcome != "rejected":
                self._recent.append(outcome == "failure")

    def record_duration(self, seconds: float) -> None:
        if self.slow_call_threshold is None:
            return
        with self._lock:
            self._durations.append(seconds)
            if seconds > self.slow_call_threshold:
                self._slow_calls += 1

    def record_transition(self, new: BreakerState, old: BreakerState | None = None) -> None:
        """A change the library announced (`old` given) or one seen by comparing with the
        state last seen (libraries without events)."""
        with self._lock:
            old = self._last_state if old is None else old
            self._last_state = new
            if old == new:
                return
            if new == "open":
                self._opened_at = time.time()
            self._transitions[(old, new)] = self._transitions.get((old, new), 0) + 1

    def enable_fallbacks(self) -> None:
        with self._lock:
            if self._fallbacks is None:
                self._fallbacks = 0

    def record_fallback(self) -> None:
        with self._lock:
            self._fallbacks = (self._fallbacks or 0) + 1

    # What the application may use

    def fallback_to(
        self,
        fallback: Callable[..., Any],
        *,
        on: tuple[type[BaseException], ...] = (Exception,),
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """A decorator: when the decorated function (which calls through the breaker) raises
        one of `on` (a rejection or a failure), `fallback` is called with the same arguments
        and its answer returned; each such call counts as a fallback. Works for coroutine
        functions too (the fallback may then be sync or async)."""
        self.enable_fallbacks()

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(func):
                coroutine = cast(Callable[P, Awaitable[Any]], func)

                @functools.wraps(func)
                async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                    try:
                        return await coroutine(*args, **kwargs)
                    except on:
                        self.record_fallback()
                        answer = fallback(*args, **kwargs)
                        return await answer if inspect.isawaitable(answer) else answer

                return cast(Callable[P, R], run_async)

            @functools.wraps(func)
            def run(*args: P.args, **kwargs: P.kwargs) -> R:
                try:
                    return func(*args, **kwargs)
                except on:
                    self.record_fallback()
                    return cast(R, fallback(*args, **kwargs))

            return run

        return decorate

    def view(self) -> BreakerView:
        state = self._library.state()
        if not self._library.announces_transitions:
            self.record_transition(state)
        with self._lock:
            opened_at = self._opened_at
        next_attempt = self._library.next_attempt_at(opened_at) if state == "open" else 0.0
        with self._lock:
            ratio = sum(self._recent) / len(self._recent) if self._recent else None
            timed = self.slow_call_threshold is not None
            durations = sorted(self._durations)
            return BreakerView(
                state=state,
                failure_ratio=ratio,
                calls=dict(self._calls),
                transitions=dict(self._transitions),
                next_attempt_at=next_attempt,
                fallbacks=self._fallbacks,
                slow_calls=self._slow_calls if timed else None,
                slow_call_ratio=(
                    sum(d > cast(float, self.slow_call_threshold) for d in durations)
                    / len(durations)
                    if durations
                    else None
                ),
                call_duration_quantiles=(
                    {q: _nearest_rank(durations, q) for q in QUANTILES} if durations else None
                ),
            )


def _nearest_rank(ordered: list[float], quantile: float) -> float:
    rank = max(1, -(-len(ordered) * quantile // 1))  # ceil without float surprises
    return ordered[int(rank) - 1]
