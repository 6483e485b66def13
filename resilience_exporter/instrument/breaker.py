"""Counting what a `pybreaker.CircuitBreaker` does, through its listener interface."""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any

from resilience_exporter.breakers import BreakerState, BreakerView, Outcome
from resilience_exporter.healthmap import breaker_state

if TYPE_CHECKING:
    from collections.abc import Callable

    import pybreaker


class BreakerTracker:
    """A pybreaker listener that counts calls by outcome, state transitions, and the share of
    failures among the last `window` calls (pybreaker itself only counts consecutive
    failures). Rejected calls never reach a listener, so the breaker's `call` is wrapped to
    see them: `@breaker` and `with breaker.calling()` both go through it."""

    def __init__(self, breaker: pybreaker.CircuitBreaker, *, window: int = 100) -> None:
        import pybreaker as _pybreaker  # only when an application has pybreaker

        self.breaker = breaker
        self._rejection = _pybreaker.CircuitBreakerError
        self._lock = threading.Lock()
        self._calls: dict[Outcome, int] = {"success": 0, "failure": 0, "rejected": 0}
        self._transitions: dict[tuple[BreakerState, BreakerState], int] = {}
        self._recent: collections.deque[bool] = collections.deque(maxlen=window)
        self._opened_at: float | None = time.time() if self._state() == "open" else None
        self._entered = threading.local()
        breaker.add_listener(self._listener())
        self._wrap_call()

    def _state(self) -> BreakerState:
        return breaker_state(self.breaker.current_state)

    def _listener(self) -> pybreaker.CircuitBreakerListener:
        import pybreaker as _pybreaker

        tracker = self

        class Listener(_pybreaker.CircuitBreakerListener):
            def before_call(
                self, cb: pybreaker.CircuitBreaker, func: Callable[..., Any], *a: Any, **k: Any
            ) -> None:
                tracker._entered.value = True

            def success(self, cb: pybreaker.CircuitBreaker) -> None:
                tracker._count("success")

            def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
                tracker._count("failure")

            def state_change(
                self,
                cb: pybreaker.CircuitBreaker,
                old_state: pybreaker.CircuitBreakerState | None,
                new_state: pybreaker.CircuitBreakerState,
            ) -> None:
                tracker._changed(old_state.name if old_state else None, new_state.name)

        return Listener()

    def _wrap_call(self) -> None:
        original = self.breaker.call
        tracker = self

        def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            tracker._entered.value = False
            try:
                return original(func, *args, **kwargs)
            except tracker._rejection:
                # Raised without the guarded function being called: a rejected call. The
                # same error raised after a call (the trip itself) was already a failure.
                if not getattr(tracker._entered, "value", False):
                    tracker._count("rejected")
                raise

        # An instance attribute shadows the method for every caller of `breaker.call`.
        setattr(self.breaker, "call", call)  # noqa: B010

    def _count(self, outcome: Outcome) -> None:
        with self._lock:
            self._calls[outcome] += 1
            if outcome != "rejected":
                self._recent.append(outcome == "failure")

    def _changed(self, old: str | None, new: str) -> None:
        to_state = breaker_state(new)
        with self._lock:
            if to_state == "open":
                self._opened_at = time.time()
            if old is None:
                return
            key = (breaker_state(old), to_state)
            if key[0] != key[1]:
                self._transitions[key] = self._transitions.get(key, 0) + 1

    @property
    def name(self) -> str:
        return self.breaker.name or f"breaker-{id(self.breaker):x}"

    def view(self) -> BreakerView:
        state = self._state()
        with self._lock:
            ratio = sum(self._recent) / len(self._recent) if self._recent else None
            next_attempt = 0.0
            if state == "open" and self._opened_at is not None:
                next_attempt = self._opened_at + float(self.breaker.reset_timeout)
            return BreakerView(
                state=state,
                failure_ratio=ratio,
                calls=dict(self._calls),
                transitions=dict(self._transitions),
                next_attempt_at=next_attempt,
            )
