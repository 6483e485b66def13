"""`Instrumentation.track_breaker` with real aiobreaker and circuitbreaker breakers (pybreaker's
basics are in test_instrument.py) driven through closed -> open -> half-open -> closed; slow
calls, call durations and fallbacks for each library."""

from __future__ import annotations

import asyncio
import datetime
import time

import aiobreaker
import circuitbreaker
import pybreaker
import pytest

from resilience_exporter.instrument import Instrumentation

# Calls longer than this are slow. The slow calls below sleep past it (a sleep is never
# shorter); the fast ones do nothing, far below it even on a loaded machine.
SLOW = 0.25
SLEEP = SLOW + 0.05


class DependencyDownError(ConnectionError):
    pass


def test_aiobreaker_closed_open_half_open_closed() -> None:
    breaker = aiobreaker.CircuitBreaker(
        fail_max=2, timeout_duration=datetime.timedelta(hours=1), name="search"
    )
    health = Instrumentation(source="shop")
    tracker = health.track_breaker(breaker, slow_call_threshold=SLOW)
    ran: list[str] = []

    async def succeed() -> str:
        ran.append("succeed")
        return "ok"

    async def slow() -> str:
        ran.append("slow")
        await asyncio.sleep(SLEEP)
        return "ok"

    async def fail() -> None:
        ran.append("fail")
        raise DependencyDownError("search is down")

    @breaker  # type: ignore[untyped-decorator]
    async def decorated() -> str:
        return await succeed()

    async def scenario() -> None:
        assert await breaker.call_async(succeed) == "ok"
        assert await breaker.call_async(slow) == "ok"
        with pytest.raises(DependencyDownError):
            await breaker.call_async(fail)
        with pytest.raises(aiobreaker.CircuitBreakerError):
            await breaker.call_async(fail)  # the second failure trips it
        view = tracker.view()
        assert view.state == "open"
        assert view.transitions == {("closed", "open"): 1}
        assert view.next_attempt_at is not None
        assert view.next_attempt_at > time.time() + 3000
        before = len(ran)
        for _ in range(3):
            with pytest.raises(aiobreaker.CircuitBreakerError):
                await decorated()
        assert len(ran) == before, "rejected calls do not run"
        # Once the timeout has passed, the next call is the trial: it closes the breaker.
        breaker.timeout_duration = datetime.timedelta(0)
        assert await decorated() == "ok"
        # A decorated function handed to call_async is counted once.
        assert await breaker.call_async(decorated) == "ok"

    asyncio.run(scenario())
    view = tracker.view()
    assert view.state == "closed"
    assert view.calls == {"success": 4, "failure": 2, "rejected": 3}
    assert view.transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }
    assert view.next_attempt_at == 0.0
    assert view.failure_ratio == pytest.approx(2 / 6)
    assert view.slow_calls == 1
    assert view.slow_call_ratio == pytest.approx(1 / 6)
    quantiles = view.call_duration_quantiles or {}
    assert set(quantiles) == {0.5, 0.9, 0.99}
    assert quantiles[0.99] > SLOW
    assert quantiles[0.5] < SLOW
    assert view.fallbacks is None, "aiobreaker runs no fallbacks; none was declared"


def test_aiobreaker_sync_calls_and_a_failed_trial() -> None:
    breaker = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=datetime.timedelta(hours=1))
    tracker = Instrumentation(source="shop").track_breaker(breaker, name="ledger")

    def fail() -> None:
        raise DependencyDownError("ledger is down")

    with pytest.raises(aiobreaker.CircuitBreakerError):
        breaker.call(fail)
    with pytest.raises(aiobreaker.CircuitBreakerError):
        breaker.call(fail)  # rejected
    breaker.timeout_duration = datetime.timedelta(0)
    with pytest.raises(aiobreaker.CircuitBreakerError):
        breaker.call(fail)  # the trial fails: open again
    view = tracker.view()
    assert view.state == "open"
    assert view.calls == {"success": 0, "failure": 2, "rejected": 1}
    assert view.transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "open"): 1,
    }
    assert view.slow_calls is None, "durations are measured only with a slow-call threshold"
    assert view.call_duration_quantiles is None


def test_circuitbreaker_closed_open_half_open_closed_with_fallbacks() -> None:
    breaker = circuitbreaker.CircuitBreaker(
        failure_threshold=2, recovery_timeout=3600, name="prices",
        fallback_function=lambda sku: f"cached price of {sku}",
    )  # fmt: skip
    health = Instrumentation(source="shop")
    tracker = health.track_breaker(breaker, slow_call_threshold=SLOW)
    assert tracker.name == "prices"
    ran: list[str] = []

    @breaker  # type: ignore[untyped-decorator]
    def price(sku: str, *, down: bool = False, slow: bool = False) -> str:
        ran.append(sku)
        if slow:
            time.sleep(SLEEP)
        if down:
            raise DependencyDownError("prices are down")
        return f"price of {sku}"

    assert price("a") == "price of a"
    assert price("b", slow=True) == "price of b"
    for sku in ("c", "d"):
        with pytest.raises(DependencyDownError):
            price(sku, down=True)
    view = tracker.view()
    assert view.state == "open"
    assert view.transitions == {("closed", "open"): 1}
    assert view.next_attempt_at is not None
    assert view.next_attempt_at > time.time() + 3000
    # While open the decorator answers with the fallback without calling the function.
    assert price("e") == "cached price of e"
    assert price("f") == "cached price of f"
    assert ran == ["a", "b", "c", "d"]
    # circuitbreaker turns half-open when its recovery timeout has passed (it has no setter).
    breaker._recovery_timeout = 0
    view = tracker.view()
    assert view.state == "half_open"
    assert view.next_attempt_at == 0.0
    assert price("g") == "price of g"  # the trial call closes it
    view = tracker.view()
    assert view.state == "closed"
    assert view.calls == {"success": 3, "failure": 2, "rejected": 2}
    assert view.fallbacks == 2
    assert view.transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }
    assert view.failure_ratio == pytest.approx(2 / 5)
    assert view.slow_calls == 1
    assert view.slow_call_ratio == pytest.approx(1 / 5)


def test_circuitbreaker_async_and_rejections_without_fallback() -> None:
    breaker = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
    tracker = Instrumentation(source="shop").track_breaker(breaker, name="stock")

    @breaker  # type: ignore[untyped-decorator]
    async def stock(down: bool) -> int:
        if down:
            raise DependencyDownError("stock is down")
        return 7

    async def scenario() -> None:
        assert await stock(False) == 7
        with pytest.raises(DependencyDownError):
            await stock(True)
        for _ in range(2):
            with pytest.raises(circuitbreaker.CircuitBreakerError):
                await stock(False)

    asyncio.run(scenario())
    view = tracker.view()
    assert view.state == "open"
    assert view.calls == {"success": 1, "failure": 1, "rejected": 2}
    assert view.fallbacks is None, "no fallback_function: no fallback series"


def test_fallback_to_counts_the_applications_fallbacks() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600, name="reviews")
    tracker = Instrumentation(source="shop").track_breaker(breaker)
    assert tracker.view().fallbacks is None

    @tracker.fallback_to(lambda product: [])
    def reviews(product: str) -> list[str]:
        def fetch() -> list[str]:
            raise DependencyDownError("reviews are down")

        result: list[str] = breaker.call(fetch)
        return result

    async def cached(product: str) -> list[str]:
        return ["cached"]

    @tracker.fallback_to(cached, on=(pybreaker.CircuitBreakerError,))
    async def reviews_async(product: str) -> list[str]:
        return list(breaker.call(lambda: ["fresh"]))

    assert tracker.view().fallbacks == 0
    assert reviews("p1") == []  # the failure that trips the breaker, answered by the fallback
    assert reviews("p2") == []  # rejected, answered by the fallback
    assert asyncio.run(reviews_async("p3")) == ["cached"]
    view = tracker.view()
    assert view.fallbacks == 3
    assert view.calls == {"success": 0, "failure": 1, "rejected": 2}


def test_pybreaker_slow_calls_and_the_calling_block() -> None:
    breaker = pybreaker.CircuitBreaker(name="payments")
    tracker = Instrumentation(source="shop").track_breaker(
        breaker, slow_call_threshold=SLOW, window=3
    )
    breaker.call(lambda: None)
    with breaker.calling():
        time.sleep(SLEEP)  # the block's duration is the call's
    view = tracker.view()
    assert (view.slow_calls, view.slow_call_ratio) == (1, 0.5)
    for _ in range(3):
        breaker.call(lambda: None)
    view = tracker.view()
    assert view.slow_calls == 1, "a counter: slow calls stay counted"
    assert view.slow_call_ratio == 0.0, "the ratio covers the last `window` calls"


def test_what_track_breaker_refuses() -> None:
    health = Instrumentation(source="shop")
    with pytest.raises(TypeError, match="not a breaker this helper knows"):
        health.track_breaker(object())
    breaker = pybreaker.CircuitBreaker(name="payments")
    health.track_breaker(breaker)
    with pytest.raises(ValueError, match="tracked already"):
        Instrumentation(source="other").track_breaker(breaker)
    with pytest.raises(ValueError, match="slow_call_threshold"):
        health.track_breaker(circuitbreaker.CircuitBreaker(), name="x", slow_call_threshold=0)


def test_circuitbreaker_as_a_context_manager() -> None:
    """The breaker keeps its type for the application, and `with breaker:` blocks count."""
    breaker = circuitbreaker.CircuitBreaker(failure_threshold=5, name="stock")
    tracker = Instrumentation(source="shop").track_breaker(breaker)
    assert isinstance(breaker, circuitbreaker.CircuitBreaker)
    assert type(breaker).__name__ == "CircuitBreaker"
    with breaker:
        pass
    with pytest.raises(DependencyDownError), breaker:
        raise DependencyDownError("stock is down")
    assert tracker.view().calls == {"success": 1, "failure": 1, "rejected": 0}
    assert breaker.failure_count == 1, "the library still counts for itself"
