"""The shared circuit-breaker schema, Resilience4j-style: the exporter's own breakers
(`source="exporter"`, `breaker` = target name) and applications' breakers (`source` = the
target that reported them) all land in these families.

A call has exactly one outcome (success, failure, timeout, rejected), so the outcomes add up
to the calls made. Fallbacks and slow calls are not outcomes: a failed, timed-out or rejected
call may be answered by a fallback, and a slow call may succeed or fail; they are counted in
families of their own. A source reports what its library counts and leaves the rest out.

Libraries that count only a rolling window (opossum) report it in the `_window_` gauges: the
sum of a window cannot be turned back into a counter (see docs/application-health.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from resilience_exporter.metrics.families import Sample, family, sample

BreakerState = Literal["closed", "open", "half_open"]
BREAKER_STATES: tuple[BreakerState, ...] = get_args(BreakerState)
Outcome = Literal["success", "failure", "timeout", "rejected"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

_LABELS = ("breaker", "source")

BREAKER_STATE = family(
    "resilience_breaker_state",
    "1 for the breaker's current state, 0 for the others (closed, open, half_open).",
    "gauge",
    (*_LABELS, "state"),
    group="breaker",
)
BREAKER_TRANSITIONS = family(
    "resilience_breaker_transitions_total",
    "State transitions of the breaker.",
    "counter",
    (*_LABELS, "from_state", "to_state"),
    group="breaker",
)
BREAKER_CALLS = family(
    "resilience_breaker_calls_total",
    "Calls through the breaker by outcome: success, failure, timeout (given up on at the "
    "breaker's time limit), or rejected while open. Each call has one outcome.",
    "counter",
    (*_LABELS, "outcome"),
    group="breaker",
)
BREAKER_FAILURE_RATIO = family(
    "resilience_breaker_failure_ratio",
    "Share of failed calls in the breaker's sliding window (0-1).",
    "gauge",
    _LABELS,
    group="breaker",
)
BREAKER_FALLBACKS = family(
    "resilience_breaker_fallbacks_total",
    "Calls answered by the application's fallback instead (after a failure, a timeout or a "
    "rejection).",
    "counter",
    _LABELS,
    group="breaker",
)
BREAKER_SLOW_CALLS = family(
    "resilience_breaker_slow_calls_total",
    "Calls slower than the breaker's slow-call threshold, whatever their outcome.",
    "counter",
    _LABELS,
    group="breaker",
)
BREAKER_SLOW_CALL_RATIO = family(
    "resilience_breaker_slow_call_ratio",
    "Share of slow calls in the breaker's sliding window (0-1).",
    "gauge",
    _LABELS,
    group="breaker",
)
BREAKER_CALL_DURATION = family(
    "resilience_breaker_call_duration_seconds",
    "Quantiles of call duration over the source's recent window (opossum's rolling window, "
    "the Python helper's last calls).",
    "gauge",
    (*_LABELS, "quantile"),
    group="breaker",
)
BREAKER_WINDOW_CALLS = family(
    "resilience_breaker_window_calls",
    "Calls in the source's rolling window by outcome (success, failure, timeout, rejected), "
    "for libraries that count a window rather than totals (opossum: rollingCountTimeout, "
    "10 s by default). Each call has one outcome.",
    "gauge",
    (*_LABELS, "outcome"),
    group="breaker",
)
BREAKER_WINDOW_FALLBACKS = family(
    "resilience_breaker_window_fallbacks",
    "Calls answered by the application's fallback in the source's rolling window.",
    "gauge",
    _LABELS,
    group="breaker",
)
BREAKER_NEXT_ATTEMPT = family(
    "resilience_breaker_next_attempt_timestamp_seconds",
    "While open, when the breaker lets the next trial call through (Unix time); 0 otherwise.",
    "gauge",
    _LABELS,
    group="breaker",
)


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A point-in-time view of one breaker, whatever reported it. Fields an application does
    not report stay None and their series are left out rather than invented."""

    state: BreakerState
    failure_ratio: float | None = None
    # Only the outcomes the source counts.
    calls: dict[Outcome, int] | None = None
    transitions: dict[tuple[BreakerState, BreakerState], int] | None = None
    next_attempt_at: float | None = None
    fallbacks: int | None = None
    slow_calls: int | None = None
    slow_call_ratio: float | None = None
    # Quantile (0-1) -> seconds.
    call_duration_quantiles: dict[float, float] | None = None
    # Counts over the source's rolling window, for libraries that keep no totals.
    window_calls: dict[Outcome, int] | None = None
    window_fallbacks: int | None = None


def breaker_samples(breaker: str, source: str, view: BreakerView) -> list[Sample]:
    labels = {"breaker": breaker, "source": source}
    out = [
        sample(BREAKER_STATE, 1.0 if state == view.state else 0.0, **labels, state=state)
        for state in BREAKER_STATES
    ]
    if view.failure_ratio is not None:
        out.append(sample(BREAKER_FAILURE_RATIO, view.failure_ratio, **labels))
    for calls_family, calls in (
        (BREAKER_CALLS, view.calls),
        (BREAKER_WINDOW_CALLS, view.window_calls),
    ):
        if calls is not None:
            out += [
                sample(calls_family, calls[outcome], **labels, outcome=outcome)
                for outcome in OUTCOMES
                if outcome in calls
            ]
    if view.transitions is not None:
        out += [
            sample(BREAKER_TRANSITIONS, count, **labels, from_state=from_state, to_state=to_state)
            for (from_state, to_state), count in sorted(view.transitions.items())
        ]
    for fam, value in (
        (BREAKER_NEXT_ATTEMPT, view.next_attempt_at),
        (BREAKER_FALLBACKS, view.fallbacks),
        (BREAKER_SLOW_CALLS, view.slow_calls),
        (BREAKER_SLOW_CALL_RATIO, view.slow_call_ratio),
        (BREAKER_WINDOW_FALLBACKS, view.window_fallbacks),
    ):
        if value is not None:
            out.append(sample(fam, value, **labels))
    if view.call_duration_quantiles is not None:
        out += [
            sample(BREAKER_CALL_DURATION, seconds, **labels, quantile=f"{quantile:g}")
            for quantile, seconds in sorted(view.call_duration_quantiles.items())
        ]
    return out


class BreakerStateError(ValueError):
    """A breaker state no supported library spells that way."""


# Every spelling folds to lower case without separators before the lookup. Resilience4j's
# special states: FORCED_OPEN rejects every call (open); DISABLED and METRICS_ONLY let every
# call through (closed). A shut-down opossum breaker rejects every call (open); a disabled
# one lets every call through (closed).
_STATES: Mapping[str, BreakerState] = {
    "closed": "closed",
    "open": "open",
    "halfopen": "half_open",
    "forcedopen": "open",
    "disabled": "closed",
    "metricsonly": "closed",
    "shutdown": "open",
}
_SEPARATORS = re.compile(r"[\s_-]+")


def breaker_state(value: object) -> BreakerState:
    """The schema's state for a library's spelling of it (`HALF_OPEN`, `halfOpen`)."""
    if not isinstance(value, str):
        raise BreakerStateError(f"breaker state {value!r} is not a string")
    state = _STATES.get(_SEPARATORS.sub("", value).lower())
    if state is None:
        raise BreakerStateError(f"unknown breaker state {value!r}")
    return state
