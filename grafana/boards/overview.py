"""Resilience / Overview: every target's up state, circuit breakers, the most saturated
pools, firing alerts."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import DOWN_INCIDENT, TARGET, breakers, sel
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def pool_health_description(thresholds: Thresholds) -> str:
    health = thresholds.records["PoolHealth"]
    return (
        "Every pool's state over time: the exporter's own, applications' and PgBouncer's "
        "(source pgbouncer, pool database/user). Degraded: "
        f"{health['degraded_in_use_ratio']:.0%} or more of its connections in use, more than "
        f"{health['degraded_waiting']} requests waiting, or a p95 acquire of "
        f"{health['degraded_acquire_seconds']} s; exhausted: "
        f"{health['exhausted_in_use_ratio']:.0%} in use or a p95 acquire of "
        f"{health['exhausted_acquire_seconds']} s (records.PoolHealth in alerts/thresholds.yml)."
    )


def dashboard(thresholds: Thresholds) -> Dashboard:
    up = "resilience_up" + sel(TARGET)
    return Dashboard(
        uid="resilience-overview",
        title="Resilience / Overview",
        file_name="overview.json",
        description="Every target's up state, circuit breakers, the most saturated pools, "
        "firing alerts.",
        target_selector="resilience_up" + sel(),
        rows=(
            Row(
                title="Targets",
                panels=(
                    Panel(
                        title="Targets up",
                        kind="stat",
                        queries=(Query(expr=f"count({up} == 1) or vector(0)", legend="up"),),
                        unit="short",
                        description="Targets whose last probe succeeded.",
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="Targets down",
                        kind="stat",
                        queries=(Query(expr=f"count({up} == 0) or vector(0)", legend="down"),),
                        unit="short",
                        description="Targets whose last probe failed.",
                        alerts=("ResilienceTargetDown",),
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="Exporters scraped",
                        kind="stat",
                        queries=(
                            Query(
                                expr=f"sum(up{sel()})",
                                legend="scraped",
                            ),
                        ),
                        unit="short",
                        description="Exporter processes Prometheus scrapes successfully.",
                        alerts=("ResilienceExporterDown",),
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="Probe latency p95 (worst target)",
                        kind="stat",
                        queries=(
                            Query(
                                expr="max(target:resilience_probe_duration_seconds:p95_rate5m"
                                f"{sel(TARGET)})",
                                legend="p95",
                            ),
                        ),
                        unit="s",
                        description="The slowest target's 95th percentile probe duration "
                        "over 5 minutes.",
                        threshold=Threshold(alert="ResilienceProbeLatencyHigh", key="seconds"),
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="Up state of every target",
                        kind="state",
                        queries=(Query(expr=f"max by (kind, target) ({up})", legend="{{target}}"),),
                        unit="none",
                        mapping="up_down",
                        description="Each target's up state over time.",
                        alerts=("ResilienceTargetDown",),
                        width=24,
                        height=7,
                    ),
                    Panel(
                        title="Targets down and why",
                        kind="table",
                        queries=(
                            Query(
                                expr=f"max by (kind, target, reason) ({up} == 0)",
                                format="table",
                                instant=True,
                            ),
                        ),
                        unit="none",
                        description="Targets down now and the reason of their last failure.",
                        alerts=("ResilienceTargetDown",),
                        incident=DOWN_INCIDENT,
                        width=24,
                        height=6,
                    ),
                ),
            ),
            Row(
                title="Breakers and pools",
                panels=(
                    Panel(
                        title="Circuit breakers by state",
                        kind="bargauge",
                        queries=(
                            Query(
                                expr="count by (state) "
                                f"({breakers('resilience_breaker_state')} == 1)",
                                legend="{{state}}",
                                instant=True,
                            ),
                        ),
                        unit="short",
                        description="How many breakers (the exporter's and applications') "
                        "are closed, half-open and open.",
                        alerts=("ResilienceBreakerOpenTooLong",),
                        width=8,
                    ),
                    Panel(
                        title="Most saturated pools",
                        kind="bargauge",
                        queries=(
                            Query(
                                expr="topk(10, max by (source, pool) "
                                f"(pool:resilience_pool_in_use:ratio{sel(TARGET)}))",
                                legend="{{source}} / {{pool}}",
                                instant=True,
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="The ten pools with the largest share of their "
                        "connections in use.",
                        threshold=Threshold(alert="ResiliencePoolNearlyExhausted", key="ratio"),
                        width=16,
                    ),
                    Panel(
                        title="Pool health",
                        kind="state",
                        queries=(
                            Query(
                                expr="max by (source, pool) "
                                f"(pool:resilience_pool_health:level{sel(TARGET)})",
                                legend="{{source}} / {{pool}}",
                            ),
                        ),
                        unit="none",
                        mapping="pool_health",
                        description=pool_health_description(thresholds),
                        alerts=(
                            "ResiliencePoolNearlyExhausted",
                            "ResiliencePoolRequestsWaiting",
                            "ResiliencePoolConnectionLeak",
                        ),
                        width=24,
                        height=7,
                    ),
                ),
            ),
            Row(
                title="Alerts",
                panels=(
                    Panel(
                        title="Firing alerts",
                        kind="table",
                        queries=(
                            Query(
                                expr='ALERTS{alertstate="firing", alertname=~"Resilience.*"}',
                                format="table",
                                instant=True,
                            ),
                        ),
                        unit="none",
                        description="The resilience alerts firing now (from the rules in alerts/).",
                        incident="while an alert fires (e.g. a target down for longer than "
                        "ResilienceTargetDown's `for:`)",
                        width=24,
                    ),
                ),
            ),
        ),
    )
