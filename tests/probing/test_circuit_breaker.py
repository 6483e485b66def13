"""The breaker's state machine with an injected clock and random source: deterministic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from exporter_process import Scrape

from resilience_exporter.configuration import loader
from resilience_exporter.configuration.targets import BreakerConfig, TargetConfig
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.metrics.breaker_schema import BreakerState, BreakerView
from resilience_exporter.metrics.encoding import Format, render_lines
from resilience_exporter.metrics.families import Sample
from resilience_exporter.metrics.snapshots import SnapshotStore
from resilience_exporter.probing.circuit_breaker import CircuitBreaker
from resilience_exporter.probing.runner import TargetRunner
from resilience_exporter.reasons import Failure

REFUSED = Failure("refused", "connection refused")
AUTH = Failure("auth", "password authentication failed", persistent=True)


class FakeClock:
    """Monotonic and wall clock at once, moved by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedRandom:
    """Returns `fraction` of each requested range and remembers the ranges asked for."""

    def __init__(self, fraction: float = 1.0) -> None:
        self.fraction = fraction
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a + (b - a) * self.fraction


def settings(**overrides: Any) -> BreakerConfig:
    values: dict[str, Any] = {"backoff_base": "10s", "backoff_cap": "80s", **overrides}
    return BreakerConfig.model_validate(values)


def make(
    fraction: float = 1.0, **overrides: Any
) -> tuple[CircuitBreaker, FakeClock, ScriptedRandom]:
    clock = FakeClock()
    rng = ScriptedRandom(fraction)
    breaker = CircuitBreaker(settings(**overrides), clock=clock, wall_clock=clock, rng=rng)
    return breaker, clock, rng


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read afresh: mypy would otherwise keep the state narrowed by an earlier assert."""
    return breaker.state


def fail(breaker: CircuitBreaker, times: int, failure: Failure = REFUSED) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure(failure)


def succeed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_success()


def test_opens_after_the_configured_consecutive_failures() -> None:
    breaker, _, _ = make(consecutive_failures=3, minimum_calls=10)
    fail(breaker, 2)
    succeed(breaker, 1)  # a success resets the run
    fail(breaker, 2)
    assert state(breaker) == "closed"
    fail(breaker, 1)
    assert state(breaker) == "open"
    assert breaker.transitions[("closed", "open")] == 1
    assert breaker.last_failure == REFUSED


def test_opens_on_the_failure_ratio_of_the_window_once_enough_calls() -> None:
    breaker, _, _ = make(consecutive_failures=100, window=4, minimum_calls=4, failure_ratio=0.5)
    fail(breaker, 1)
    succeed(breaker, 1)
    fail(breaker, 1)
    assert state(breaker) == "closed", "3 calls: fewer than minimum_calls"
    assert breaker.failure_ratio == pytest.approx(2 / 3)
    succeed(breaker, 1)
    assert state(breaker) == "closed", "a success never opens"
    fail(breaker, 1)  # window: S F S F -> 0.5
    assert state(breaker) == "open"
    assert breaker.failure_ratio == 0.5


def test_the_window_slides() -> None:
    breaker, _, _ = make(consecutive_failures=100, window=4, minimum_calls=2, failure_ratio=0.75)
    for _ in range(3):
        fail(breaker, 1)
        succeed(breaker, 1)
    assert breaker.failure_ratio == 0.5
    succeed(breaker, 2)  # the window now holds F S S S
    assert breaker.failure_ratio == 0.25
    assert state(breaker) == "closed"


def test_open_rejects_every_call_until_the_back_off_then_half_opens() -> None:
    breaker, clock, rng = make(fraction=0.5, consecutive_failures=1)
    opened_at = clock.now
    fail(breaker, 1)
    assert rng.ranges == [(0.0, 10.0)]
    assert breaker.view().next_attempt_at == opened_at + 5.0
    for _ in range(4):
        clock.advance(1.0)
        assert not breaker.allow()
    assert breaker.calls == {"success": 0, "failure": 1, "rejected": 4}
    clock.advance(1.0)
    assert breaker.allow()
    assert state(breaker) == "half_open"
    assert breaker.view().next_attempt_at == 0.0
    assert breaker.transitions[("open", "half_open")] == 1


def test_back_off_ceiling_doubles_per_opening_up_to_the_cap_and_resets_on_close() -> None:
    breaker, clock, rng = make(fraction=1.0, consecutive_failures=1)
    for _ in range(6):
        fail(breaker, 1)  # closed or half_open -> open
        clock.advance(1_000.0)
        assert breaker.allow()
    ceilings = [high for _, high in rng.ranges]
    assert ceilings == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0]
    assert all(low == 0.0 for low, _ in rng.ranges)
    breaker.record_success()
    assert state(breaker) == "closed"
    fail(breaker, 1)
    assert rng.ranges[-1] == (0.0, 10.0), "a closed breaker starts over from the base"


def test_full_jitter_can_draw_anything_below_the_ceiling() -> None:
    breaker, _, _ = make(fraction=0.0, consecutive_failures=1)
    fail(breaker, 1)
    assert breaker.allow(), "a zero draw lets the next call through as a trial"
    assert state(breaker) == "half_open"


def test_half_open_closes_after_m_successes_and_reopens_on_a_failure() -> None:
    breaker, clock, rng = make(consecutive_failures=1, half_open_successes=2)
    fail(breaker, 1)
    clock.advance(10.0)
    succeed(breaker, 1)
    assert state(breaker) == "half_open"
    fail(breaker, 1)
    assert state(breaker) == "open"
    assert breaker.transitions[("half_open", "open")] == 1
    assert rng.ranges[-1] == (0.0, 20.0)
    clock.advance(20.0)
    succeed(breaker, 2)
    assert state(breaker) == "closed"
    assert breaker.last_failure is None
    assert breaker.failure_ratio == 0.0
    assert breaker.view() == BreakerView(
        state="closed",
        failure_ratio=0.0,
        calls={"success": 3, "failure": 2, "rejected": 0},
        transitions={
            ("closed", "open"): 1,
            ("open", "half_open"): 2,
            ("half_open", "closed"): 1,
            ("half_open", "open"): 1,
        },
        next_attempt_at=0.0,
    )


def test_a_persistent_failure_opens_at_once_for_the_whole_cap() -> None:
    breaker, clock, rng = make(consecutive_failures=5)
    fail(breaker, 1, AUTH)
    assert state(breaker) == "open"
    assert rng.ranges == [], "no jitter: the longest back-off"
    assert breaker.view().next_attempt_at == clock.now + 80.0
    clock.advance(79.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()
    fail(breaker, 1, AUTH)  # still wrong in half_open: the cap again
    assert breaker.view().next_attempt_at == clock.now + 80.0
    samples = breaker.last_error_samples("orders-db", "exporter")
    assert [dict(s.labels) for s in samples] == [
        {"breaker": "orders-db", "source": "exporter", "reason": "auth", "persistent": "true"}
    ]


def test_last_error_is_exported_only_while_not_closed() -> None:
    breaker, _, _ = make(consecutive_failures=2)
    fail(breaker, 1)
    assert breaker.last_error_samples("b", "exporter") == []
    fail(breaker, 1)
    (last,) = breaker.last_error_samples("b", "exporter")
    assert dict(last.labels)["reason"] == "refused"
    assert dict(last.labels)["persistent"] == "false"


def test_a_huge_number_of_openings_stays_at_the_cap() -> None:
    breaker, clock, rng = make(consecutive_failures=1)
    for _ in range(1_100):
        fail(breaker, 1)
        clock.advance(100.0)
    assert rng.ranges[-1] == (0.0, 80.0)


# --- configuration -------------------------------------------------------------------------

TARGET = """\
defaults: {{interval: 15s, timeout: 5s}}
targets:
  - name: orders-db
    kind: postgres
    dsn: postgresql://monitor@127.0.0.1:5432/postgres
{breaker}
"""


def parse(breaker: str) -> TargetConfig:
    (target,) = loader.parse(TARGET.format(breaker=breaker), "c.yml").targets
    return target


def test_defaults_suit_a_15s_interval() -> None:
    defaults = parse("").breaker
    assert defaults.enabled
    assert defaults.consecutive_failures == 3
    assert (defaults.failure_ratio, defaults.window, defaults.minimum_calls) == (0.5, 10, 5)
    assert defaults.half_open_successes == 1
    assert defaults.backoff_base_seconds == 15.0, "the base defaults to the interval"
    assert defaults.backoff_cap == 300.0


def test_durations_are_prometheus_style() -> None:
    breaker = parse("    breaker: {backoff_base: 1m30s, backoff_cap: 1h}").breaker
    assert breaker.backoff_base_seconds == 90.0
    assert breaker.backoff_cap == 3600.0


def test_the_default_base_is_clamped_to_a_shorter_cap() -> None:
    breaker = parse("    breaker: {backoff_cap: 10s}").breaker
    assert breaker.backoff_base_seconds == 10.0


@pytest.mark.parametrize(
    ("block", "key", "message"),
    [
        ("{backoff_base: 15 seconds}", "breaker.backoff_base", "not a duration"),
        ("{backoff_base: 10m, backoff_cap: 5m}", "breaker", "must not exceed"),
        ("{window: 5, minimum_calls: 6}", "breaker", "minimum_calls must not exceed"),
        ("{failure_ratio: 1.5}", "breaker.failure_ratio", "less than or equal to 1"),
        ("{consecutive_failures: 0}", "breaker.consecutive_failures", "greater than or equal"),
        ("{half_open_sucesses: 2}", "breaker.half_open_sucesses", "unknown key"),
    ],
)
def test_invalid_breaker_blocks_are_rejected_with_file_line_and_key(
    block: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"    breaker: {block}")
    (issue,) = caught.value.issues
    assert issue.file == "c.yml"
    assert issue.line == 6
    assert issue.key == f"targets[0].{key}"
    assert message in issue.message


# --- the runner: no probe call at all while open -------------------------------------------


class CountingProbe:
    """A probe that fails with a refused connection and counts what the runner asked of it."""

    def __init__(self) -> None:
        self.calls = {"open": 0, "probe": 0, "close": 0}
        self.healthy = False

    async def open(self) -> None:
        self.calls["open"] += 1

    async def probe(self) -> Sequence[Sample]:
        self.calls["probe"] += 1
        if not self.healthy:
            raise ConnectionRefusedError("refused")
        return ()

    def local_samples(self) -> Sequence[Sample]:
        return ()

    def classify(self, exc: BaseException) -> Failure:
        return REFUSED

    async def close(self) -> None:
        self.calls["close"] += 1


async def test_the_runner_makes_no_probe_call_while_open_and_reopens_clients_for_trials() -> None:
    target = parse("    interval: 1s\n    timeout: 1s")
    clock = FakeClock()
    breaker = CircuitBreaker(
        settings(consecutive_failures=2, backoff_base="4s", backoff_cap="4s"),
        clock=clock,
        wall_clock=clock,
        rng=ScriptedRandom(1.0),
    )
    runner = TargetRunner(target, SnapshotStore(), breaker=breaker)
    probe = CountingProbe()
    runner.probe = probe
    for _ in range(2):
        snapshot = await runner.run_once()
        assert snapshot.failure is not None
        assert snapshot.failure.reason == "refused"
        clock.advance(1.0)
    assert state(breaker) == "open"
    assert probe.calls == {"open": 1, "probe": 2, "close": 1}, "closed when the breaker opened"
    for _ in range(3):  # 4 s of back-off: the ticks at +1, +2, +3 s are rejected
        snapshot = await runner.run_once()
        assert snapshot.up is False
        assert snapshot.failure is not None
        assert snapshot.failure.reason == "breaker_open"
        assert snapshot.failure.cause == REFUSED
        clock.advance(1.0)
    assert probe.calls == {"open": 1, "probe": 2, "close": 1}, "no call at all while open"
    assert breaker.calls["rejected"] == 3
    probe.healthy = True
    snapshot = await runner.run_once()
    assert snapshot.up is True
    assert snapshot.breaker == "closed"
    assert probe.calls == {"open": 2, "probe": 3, "close": 1}, "reopened for the trial"
    exported = Scrape(render_lines(Format.TEXT, snapshot.lines).decode())
    assert exported.has("resilience_breaker_state")
    errors = {
        dict(labels)["reason"]: value
        for labels, value in exported.series("resilience_probe_errors_total").items()
    }
    assert errors["refused"] == 2
    assert "breaker_open" not in errors, "rejected calls are not failed probes"
    await runner.stop()
    assert probe.calls["close"] == 2
