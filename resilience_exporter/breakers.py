"""The shared circuit-breaker schema, Resilience4j-style: the exporter's own breakers
(`source="exporter"`, `breaker` = target name) and applications' breakers (`source` = the
target that reported them) all land in these families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from resilience_exporter.families import Sample, family, sample

BreakerState = Literal["closed", "open", "half_open"]
BREAKER_STATES: tuple[BreakerState, ...] = get_args(BreakerState)
Outcome = Literal["success", "failure", "rejected"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

_LABELS = ("breaker", "source")

BREAKER_STATE = family(
    "resilience_breaker_state",
    "1 for the breaker's current state, 0 for the others (closed, open, half_open).",
    "gauge", (*_LABELS, "state"), group="breaker",
)  # fmt: skip
BREAKER_TRANSITIONS = family(
    "resilience_breaker_transitions_total",
    "State transitions of the breaker.",
    "counter", (*_LABELS, "from_state", "to_state"), group="breaker",
)  # fmt: skip
BREAKER_CALLS = family(
    "resilience_breaker_calls_total",
    "Calls through the breaker by outcome: success, failure, or rejected while open.",
    "counter", (*_LABELS, "outcome"), group="breaker",
)  # fmt: skip
BREAKER_FAILURE_RATIO = family(
    "resilience_breaker_failure_ratio",
    "Share of failed calls in the breaker's sliding window (0-1).",
    "gauge", _LABELS, group="breaker",
)  # fmt: skip
BREAKER_NEXT_ATTEMPT = family(
    "resilience_breaker_next_attempt_timestamp_seconds",
    "While open, when the breaker lets the next trial call through (Unix time); 0 otherwise.",
    "gauge", _LABELS, group="breaker",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A point-in-time view of one breaker, whatever reported it. Fields an application does
    not report stay None and their series are left out rather than invented."""

    state: BreakerState
    failure_ratio: float | None = None
    calls: dict[Outcome, int] | None = None
    transitions: dict[tuple[BreakerState, BreakerState], int] | None = None
    next_attempt_at: float | None = None


def breaker_samples(breaker: str, source: str, view: BreakerView) -> list[Sample]:
    out = [
        sample(
            BREAKER_STATE,
            1.0 if state == view.state else 0.0,
            breaker=breaker,
            source=source,
            state=state,
        )
        for state in BREAKER_STATES
    ]
    if view.failure_ratio is not None:
        out.append(
            sample(BREAKER_FAILURE_RATIO, view.failure_ratio, breaker=breaker, source=source)
        )
    if view.calls is not None:
        for outcome in OUTCOMES:
            count = view.calls.get(outcome, 0)
            out.append(
                sample(BREAKER_CALLS, count, breaker=breaker, source=source, outcome=outcome)
            )
    if view.transitions is not None:
        for (from_state, to_state), count in sorted(view.transitions.items()):
            out.append(
                sample(
                    BREAKER_TRANSITIONS,
                    count,
                    breaker=breaker,
                    source=source,
                    from_state=from_state,
                    to_state=to_state,
                )
            )
    if view.next_attempt_at is not None:
        out.append(
            sample(BREAKER_NEXT_ATTEMPT, view.next_attempt_at, breaker=breaker, source=source)
        )
    return out
