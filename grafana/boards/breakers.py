"""Resilience / Circuit breakers: the exporter's own breakers and applications', their
state, transitions, rejected calls, failure ratio."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import TARGET, breakers, increase, rate, sel
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    state = "resilience_breaker_state"
    half_open = breakers(state, 'state="half_open"')
    is_open = breakers(state, 'state="open"')
    return Dashboard(
        uid="resilience-breakers",
        title="Resilience / Circuit breakers",
        file_name="breakers.json",
        description="The exporter's own breakers (source=exporter) and applications' "
        "(source = application): state, transitions, rejected calls, failure ratio.",
        target_selector="resilience_up" + sel(),
        rows=(
            Row(
                title="State",
                panels=(
                    Panel(
                        title="Breaker state",
                        kind="state",
                        queries=(
                            Query(
                                expr=f"sum by (source, breaker) ({half_open})"
                                f" + 2 * sum by (source, breaker) ({is_open})",
                                legend="{{source}} / {{breaker}}",
                            ),
                        ),
                        unit="none",
                        mapping="breaker_state",
                        description="Closed, half-open or open, over time.",
                        alerts=(
                            "ResilienceBreakerOpenTooLong",
                            "ResilienceApplicationBreakerOpen",
                        ),
                        width=24,
                    ),
                    Panel(
                        title="Transitions",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (source, breaker, to_state) "
                                + breakers("resilience_breaker_transitions_total", wrap=increase),
                                legend="{{source}} / {{breaker}} → {{to_state}}",
                            ),
                        ),
                        unit="short",
                        description="State changes in each interval, by the state entered.",
                    ),
                    Panel(
                        title="Opens in 15 minutes",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"breaker:resilience_breaker_opens:increase15m{sel(TARGET)}",
                                legend="{{source}} / {{breaker}}",
                            ),
                        ),
                        unit="short",
                        description="How often each breaker opened in the last 15 minutes.",
                        threshold=Threshold(alert="ResilienceBreakerFlapping", key="opens_per_15m"),
                    ),
                ),
            ),
            Row(
                title="Calls",
                panels=(
                    Panel(
                        title="Calls by outcome",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (source, breaker, outcome) "
                                f"({breakers('resilience_breaker_calls_total', wrap=rate)})",
                                legend="{{source}} / {{breaker}} {{outcome}}",
                            ),
                        ),
                        unit="ops",
                        description="Calls through each breaker per second: success, "
                        "failure, rejected.",
                    ),
                    Panel(
                        title="Rejected calls",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (source, breaker) "
                                + breakers(
                                    "resilience_breaker_calls_total",
                                    'outcome="rejected"',
                                    wrap=rate,
                                ),
                                legend="{{source}} / {{breaker}}",
                            ),
                        ),
                        unit="ops",
                        description="Calls failed fast because the breaker was open.",
                        alerts=("ResilienceApplicationBreakerOpen",),
                    ),
                    Panel(
                        title="Failure ratio",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="max by (source, breaker) "
                                f"({breakers('resilience_breaker_failure_ratio')})",
                                legend="{{source}} / {{breaker}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of failed calls in each breaker's window.",
                    ),
                    Panel(
                        title="Next trial call of open breakers",
                        kind="table",
                        queries=(
                            Query(
                                expr="max by (source, breaker) ("
                                f"{breakers('resilience_breaker_next_attempt_timestamp_seconds')}"
                                " > 0) * 1000",
                                format="table",
                                instant=True,
                            ),
                        ),
                        unit="dateTimeAsIso",
                        description="When each open breaker lets its next trial call through.",
                        incident="while a breaker is open",
                    ),
                ),
            ),
        ),
    )
