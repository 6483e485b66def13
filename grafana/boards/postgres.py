"""Resilience / PostgreSQL: latency, the exporter's pool, server connection slots, long
transactions."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import (
    EXPORTER_POOL,
    TARGET,
    increase,
    probe_errors,
    probe_latency,
    quantiles,
    sel,
    up_stat,
)
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="postgres"'
    pool = EXPORTER_POOL
    return Dashboard(
        uid="resilience-postgres",
        title="Resilience / PostgreSQL",
        file_name="postgres.json",
        description="PostgreSQL servers probed by the exporter: latency, the exporter's pool, "
        "server connection slots, long transactions.",
        target_selector="resilience_up" + sel(kind),
        rows=(
            Row(title="Availability", panels=(up_stat(kind), probe_errors(kind))),
            Row(title="Probe latency", panels=probe_latency(kind)),
            Row(
                title="The exporter's connection pool",
                panels=(
                    Panel(
                        title="Pool connections in use vs max",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (pool, state) "
                                f"(resilience_pool_connections{sel(pool)})",
                                legend="{{pool}} {{state}}",
                            ),
                            Query(
                                expr=f"max by (pool) (resilience_pool_max_connections{sel(pool)})",
                                legend="{{pool}} max",
                            ),
                        ),
                        unit="short",
                        description="Connections the exporter's pool holds, by state, against "
                        "the most it may hold.",
                    ),
                    Panel(
                        title="Pool in use",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"pool:resilience_pool_in_use:ratio{sel(pool)}",
                                legend="{{pool}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of the pool's connections in use.",
                        threshold=Threshold(alert="ResiliencePoolNearlyExhausted", key="ratio"),
                    ),
                    Panel(
                        title="Requests waiting for a connection",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_pool_pending_requests{sel(pool)}",
                                legend="{{pool}}",
                            ),
                        ),
                        unit="short",
                        description="Requests queued for a connection from the pool.",
                        alerts=("ResiliencePoolRequestsWaiting",),
                        width=8,
                    ),
                    Panel(
                        title="Acquire wait p95",
                        kind="timeseries",
                        queries=quantiles(
                            f"resilience_pool_acquire_duration_seconds_bucket{sel(pool)}",
                            "pool",
                            "{{pool}}",
                            (0.95,),
                        ),
                        unit="s",
                        description="95th percentile of the time spent waiting for a "
                        "connection from the pool.",
                        threshold=Threshold(alert="ResiliencePoolAcquireSlow", key="seconds"),
                        width=8,
                    ),
                    Panel(
                        title="Pool errors",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (pool, operation) "
                                f"({increase('resilience_pool_errors_total' + sel(pool))})",
                                legend="{{pool}} {{operation}}",
                            ),
                        ),
                        unit="short",
                        description="Failed connects and acquires in each interval.",
                        alerts=("ResiliencePoolAcquireErrors",),
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Server connections and transactions",
                panels=(
                    Panel(
                        title="Server connections by state vs max",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (target, state) "
                                f"(resilience_postgres_connections{sel(TARGET)})",
                                legend="{{target}} {{state}}",
                            ),
                            Query(
                                expr="max by (target) ("
                                f"resilience_postgres_max_connections{sel(TARGET)}"
                                f" - resilience_postgres_reserved_connections{sel(TARGET)})",
                                legend="{{target}} max for ordinary roles",
                            ),
                        ),
                        unit="short",
                        stacked=False,
                        description="Client backends by state (pg_stat_activity) against "
                        "max_connections minus the superuser reserve.",
                    ),
                    Panel(
                        title="Connection slots used",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"target:resilience_postgres_connections:ratio{sel(TARGET)}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of the slots left to ordinary roles in use.",
                        threshold=Threshold(
                            alert="ResiliencePostgresConnectionsNearMax", key="ratio"
                        ),
                    ),
                    Panel(
                        title="Oldest transaction",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_postgres_oldest_transaction_seconds{sel(TARGET)}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="s",
                        description="Age of the oldest open transaction (0 when none).",
                        threshold=Threshold(
                            alert="ResiliencePostgresLongTransaction", key="seconds"
                        ),
                    ),
                    Panel(
                        title="Longest idle in transaction",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="resilience_postgres_oldest_idle_in_transaction_seconds"
                                f"{sel(TARGET)}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="s",
                        description="How long the longest idle-in-transaction session has "
                        "been idle (0 when none).",
                        threshold=Threshold(
                            alert="ResiliencePostgresIdleInTransaction", key="seconds"
                        ),
                    ),
                ),
            ),
        ),
    )
