"""The breaker libraries `BreakerTracker` reads, each through its own hooks.

- pybreaker and aiobreaker (a fork of pybreaker for asyncio) announce successes, failures and
  state changes to listeners. A rejected call reaches no listener, so the breaker's `call`
  (and aiobreaker's `call_async`), which the decorators and pybreaker's `calling()` use too,
  is replaced on the instance by a wrapper that sees whether the guarded function ran.
- circuitbreaker has no listeners and no events: its half-open state is computed from the
  time, and a decorated function is rejected (or answered by the fallback) without any call
  into the breaker. The breaker's class is swapped for a subclass that observes `__enter__` /
  `__exit__` (every guarded call goes through them) and `fallback_function` (which the
  decorator reads exactly once for each rejected call, and calls when it is set).
"""

from __future__ import annotations

import contextvars
import functools
import time
import types
from collections.abc import Callable, Generator
from typing import Any, Protocol

from resilience_exporter.metrics.breaker_schema import BreakerState, Outcome, breaker_state

SUPPORTED = ("pybreaker", "aiobreaker", "circuitbreaker")
_GUARDED = "__resilience_exporter_guarded__"
_TRACKED = "__resilience_exporter_tracker__"


class BreakerRecorder(Protocol):
    """What an adapter reports, from the library's hooks (`BreakerTracker` is the one)."""

    def record_outcome(self, outcome: Outcome) -> None: ...
    def record_duration(self, seconds: float) -> None: ...
    def record_transition(self, new: BreakerState, old: BreakerState | None = None) -> None: ...
    def enable_fallbacks(self) -> None: ...
    def record_fallback(self) -> None: ...


class BreakerLibrary(Protocol):
    """What the tracker asks of a library adapter."""

    # False for libraries whose state changes with time and no event (circuitbreaker): the
    # tracker then compares each state it reads with the last one.
    announces_transitions: bool

    def name(self) -> str | None: ...
    def state(self) -> BreakerState: ...
    def next_attempt_at(self, opened_at: float | None) -> float: ...


def library_of(breaker: object) -> str | None:
    for cls in type(breaker).__mro__:
        package = cls.__module__.split(".")[0]
        if package in SUPPORTED:
            return package
    return None


def attach(breaker: Any, tracker: BreakerRecorder) -> BreakerLibrary:
    if getattr(breaker, _TRACKED, None) is not None:
        raise ValueError(f"breaker {breaker!r} is tracked already")
    library = library_of(breaker)
    adapter: BreakerLibrary
    if library == "pybreaker":
        adapter = PybreakerAdapter(breaker, tracker)
    elif library == "aiobreaker":
        adapter = AiobreakerAdapter(breaker, tracker)
    elif library == "circuitbreaker":
        adapter = CircuitbreakerAdapter(breaker, tracker)
    else:
        raise TypeError(
            f"{type(breaker).__module__}.{type(breaker).__qualname__} is not a breaker this "
            f"helper knows ({', '.join(SUPPORTED)})"
        )
    return adapter


def _timed_generator(
    generator: Generator[Any, Any, Any], started: float, tracker: BreakerRecorder
) -> Generator[Any, Any, Any]:
    try:
        return (yield from generator)
    finally:
        tracker.record_duration(time.perf_counter() - started)


def _wrap_calls(
    breaker: Any, tracker: BreakerRecorder, rejection: type[BaseException], *, with_async: bool
) -> None:
    """Replace `call` (and `call_async`) on the instance. A call ends in `rejection` without
    the guarded function having run: it was rejected. The guarded function is timed; a trial
    call re-entering `call` from the open state is passed through, not wrapped twice."""
    original = breaker.call

    def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # aiobreaker's decorated functions call the breaker themselves.
        if getattr(func, _GUARDED, False) or getattr(func, "_ignore_on_call", False):
            return original(func, *args, **kwargs)
        ran = False

        @functools.wraps(func)
        def guarded(*a: Any, **k: Any) -> Any:
            nonlocal ran
            ran = True
            started = time.perf_counter()
            try:
                result = func(*a, **k)
            except BaseException:
                tracker.record_duration(time.perf_counter() - started)
                raise
            if isinstance(result, types.GeneratorType):  # pybreaker's calling()
                return _timed_generator(result, started, tracker)
            tracker.record_duration(time.perf_counter() - started)
            return result

        setattr(guarded, _GUARDED, True)
        try:
            return original(guarded, *args, **kwargs)
        except rejection:
            if not ran:
                tracker.record_outcome("rejected")
            raise

    # Instance attributes shadow the methods for every caller (decorators, calling()).
    setattr(breaker, "call", call)  # noqa: B010
    setattr(breaker, _TRACKED, tracker)
    if not with_async:
        return
    original_async = breaker.call_async

    async def call_async(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(func, _GUARDED, False) or getattr(func, "_ignore_on_call", False):
            return await original_async(func, *args, **kwargs)
        ran = False

        @functools.wraps(func)
        async def guarded(*a: Any, **k: Any) -> Any:
            nonlocal ran
            ran = True
            started = time.perf_counter()
            try:
                return await func(*a, **k)
            finally:
                tracker.record_duration(time.perf_counter() - started)

        setattr(guarded, _GUARDED, True)
        try:
            return await original_async(guarded, *args, **kwargs)
        except rejection:
            if not ran:
                tracker.record_outcome("rejected")
            raise

    setattr(breaker, "call_async", call_async)  # noqa: B010


class PybreakerAdapter:
    announces_transitions = True

    def __init__(self, breaker: Any, tracker: BreakerRecorder) -> None:
        import pybreaker

        self.breaker = breaker

        class Listener(pybreaker.CircuitBreakerListener):
            def success(self, cb: pybreaker.CircuitBreaker) -> None:
                tracker.record_outcome("success")

            def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
                tracker.record_outcome("failure")

            def state_change(
                self,
                cb: pybreaker.CircuitBreaker,
                old_state: pybreaker.CircuitBreakerState | None,
                new_state: pybreaker.CircuitBreakerState,
            ) -> None:
                tracker.record_transition(
                    breaker_state(new_state.name),
                    breaker_state(old_state.name) if old_state else None,
                )

        breaker.add_listener(Listener())
        # Tornado's call_async is left alone: it is not counted.
        _wrap_calls(breaker, tracker, pybreaker.CircuitBreakerError, with_async=False)

    def name(self) -> str | None:
        return self.breaker.name or None

    def state(self) -> BreakerState:
        return breaker_state(self.breaker.current_state)

    def next_attempt_at(self, opened_at: float | None) -> float:
        return 0.0 if opened_at is None else opened_at + float(self.breaker.reset_timeout)


class AiobreakerAdapter:
    announces_transitions = True

    def __init__(self, breaker: Any, tracker: BreakerRecorder) -> None:
        import aiobreaker

        self.breaker = breaker

        class Listener(aiobreaker.CircuitBreakerListener):  # type: ignore[misc]
            def success(self, cb: Any) -> None:
                tracker.record_outcome("success")

            def failure(self, cb: Any, exception: Exception) -> None:
                tracker.record_outcome("failure")

            def state_change(self, cb: Any, old: Any, new: Any) -> None:
                tracker.record_transition(
                    breaker_state(new.state.name), breaker_state(old.state.name) if old else None
                )

        breaker.add_listener(Listener())
        _wrap_calls(breaker, tracker, aiobreaker.CircuitBreakerError, with_async=True)

    def name(self) -> str | None:
        name = self.breaker.name
        return str(name) if name else None

    def state(self) -> BreakerState:
        return breaker_state(self.breaker.current_state.name)

    def next_attempt_at(self, opened_at: float | None) -> float:
        if opened_at is None:
            return 0.0
        return opened_at + float(self.breaker.timeout_duration.total_seconds())


class CircuitbreakerAdapter:
    announces_transitions = False

    def __init__(self, breaker: Any, tracker: BreakerRecorder) -> None:
        self.breaker = breaker
        base: type[Any] = type(breaker)
        # Start times of the calls in progress, per thread and per asyncio task.
        started: contextvars.ContextVar[tuple[float, ...]] = contextvars.ContextVar(
            f"circuitbreaker-{id(breaker):x}", default=()
        )
        adapter = self

        class Tracked(base):  # type: ignore[misc]
            def __enter__(self) -> Any:
                tracker.record_transition(adapter.state())  # e.g. the half-open trial call
                started.set((*started.get(), time.perf_counter()))
                return base.__enter__(self)

            def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any:
                stack = started.get()
                if stack:
                    started.set(stack[:-1])
                    tracker.record_duration(time.perf_counter() - stack[-1])
                failed = exc_type is not None and self.is_failure(exc_type, exc)
                try:
                    return base.__exit__(self, exc_type, exc, traceback)
                finally:
                    tracker.record_outcome("failure" if failed else "success")
                    tracker.record_transition(adapter.state())

            @property
            def fallback_function(self) -> Any:
                fallback = base.fallback_function.fget(self)
                if fallback is None:
                    if self.opened:
                        tracker.record_outcome("rejected")
                    return None

                @functools.wraps(fallback)
                def answer(*args: Any, **kwargs: Any) -> Any:
                    tracker.record_outcome("rejected")
                    tracker.record_fallback()
                    return fallback(*args, **kwargs)

                return answer

        Tracked.__name__ = Tracked.__qualname__ = base.__name__
        Tracked.__module__ = base.__module__
        setattr(Tracked, _TRACKED, tracker)
        breaker.__class__ = Tracked
        if base.fallback_function.fget(breaker) is not None:
            tracker.enable_fallbacks()

    def name(self) -> str | None:
        name = self.breaker.name
        return str(name) if name else None

    def state(self) -> BreakerState:
        return breaker_state(self.breaker.state)

    def next_attempt_at(self, opened_at: float | None) -> float:
        # `open_until` is recomputed from the clock at every read, rounded to whole seconds;
        # the time the tracker saw it open plus the recovery timeout is stable.
        if opened_at is None:
            return float(self.breaker.open_until.timestamp())
        return opened_at + float(self.breaker._recovery_timeout)
