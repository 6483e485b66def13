"""Resilience / PostgreSQL: latency, the exporter's pool, server connection slots, long
transactions; long statements and locks; replication (primaries' standbys and slots,
standbys' receiver and replay); per-database deadlocks, rollbacks, conflicts, temp files and
transaction ID age."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import (
    EXPORTER_POOL,
    TARGET,
    increase,
    probe_errors,
    probe_latency,
    quantiles,
    rate,
    sel,
    up_stat,
)
from grafana.boards.postgres_replication import replication
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="postgres"'
    pool = EXPORTER_POOL
    return Dashboard(
        uid="resilience-postgres",
        title="Resilience / PostgreSQL",
        file_name="postgres.json",
        description="PostgreSQL servers probed by the exporter: latency, the exporter's pool, "
        "server connection slots, long transactions, locks, replication, databases.",
        target_selector="resilience_up" + sel(kind),
        rows=(
            Row(title="Availability", panels=(up_stat(kind), probe_errors(kind))),
            Row(title="Probe latency", panels=probe_latency(kind)),
            exporter_pool(pool),
            server_connections_and_transactions(),
            statements_and_locks(),
            replication(),
            databases(),
        ),
    )


def exporter_pool(pool: str) -> Row:
    return Row(
        title="The exporter's connection pool",
        panels=(
            Panel(
                title="Pool connections in use vs max",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"sum by (pool, state) (resilience_pool_connections{sel(pool)})",
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
    )


def server_connections_and_transactions() -> Row:
    return Row(
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
                threshold=Threshold(alert="ResiliencePostgresConnectionsNearMax", key="ratio"),
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
                threshold=Threshold(alert="ResiliencePostgresLongTransaction", key="seconds"),
            ),
            Panel(
                title="Longest idle in transaction",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_oldest_idle_in_transaction_seconds{sel(TARGET)}",
                        legend="{{target}}",
                    ),
                ),
                unit="s",
                description="How long the longest idle-in-transaction session has "
                "been idle (0 when none).",
                threshold=Threshold(alert="ResiliencePostgresIdleInTransaction", key="seconds"),
            ),
        ),
    )


def statements_and_locks() -> Row:
    t = sel(TARGET)
    return Row(
        title="Long statements and locks",
        panels=(
            Panel(
                title="Oldest active statement",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_oldest_active_query_seconds{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="s",
                description="How long the longest-running active statement has run (0 when none).",
                threshold=Threshold(alert="ResiliencePostgresLongRunningQuery", key="seconds"),
                width=8,
            ),
            Panel(
                title="Sessions waiting on locks",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_lock_waiting_sessions{t}",
                        legend="{{target}} waiting",
                    ),
                    Query(
                        expr=f"resilience_postgres_blocked_sessions{t}",
                        legend="{{target}} blocked by others",
                    ),
                    Query(
                        expr=f"resilience_postgres_blocking_sessions{t}",
                        legend="{{target}} blocking others",
                    ),
                ),
                unit="short",
                description="Sessions waiting for a lock, those blocked by other "
                "sessions (pg_blocking_pids), and the sessions blocking them: many "
                "blocked behind one blocker is a lock queue.",
                threshold=Threshold(alert="ResiliencePostgresSessionsBlocked", key="sessions"),
                width=8,
            ),
            Panel(
                title="Longest lock wait",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_oldest_lock_wait_seconds{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="s",
                description="How long the longest current lock wait has lasted (0 when "
                "nobody waits).",
                threshold=Threshold(alert="ResiliencePostgresLockWaitLong", key="seconds"),
                width=8,
            ),
        ),
    )


def databases() -> Row:
    t = sel(TARGET)
    return Row(
        title="Databases",
        panels=(
            Panel(
                title="Deadlocks",
                kind="timeseries",
                queries=(
                    Query(
                        expr="sum by (target, database) "
                        f"({increase('resilience_postgres_deadlocks_total' + t)})",
                        legend="{{target}} {{database}}",
                    ),
                ),
                unit="short",
                description="Deadlocks detected in each interval, by database.",
                alerts=("ResiliencePostgresDeadlocks",),
                width=8,
            ),
            Panel(
                title="Commits and rollbacks",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"sum by (target) ({rate('resilience_postgres_commits_total' + t)})",
                        legend="{{target}} commits",
                    ),
                    Query(
                        expr=f"sum by (target) ({rate('resilience_postgres_rollbacks_total' + t)})",
                        legend="{{target}} rollbacks",
                    ),
                ),
                unit="ops",
                description="Transactions committed and rolled back per second: a rise "
                "in rollbacks is failing requests.",
                width=8,
            ),
            Panel(
                title="Transaction ID age vs autovacuum_freeze_max_age",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"database:resilience_postgres_frozen_xid_age:ratio{t}",
                        legend="{{target}} {{database}}",
                    ),
                ),
                unit="percentunit",
                minimum=0,
                description="age(datfrozenxid) of each database against "
                "autovacuum_freeze_max_age: above 100% autovacuum must freeze; it keeps "
                "rising when autovacuum does not keep up, towards wraparound.",
                threshold=Threshold(alert="ResiliencePostgresXidWraparound", key="ratio"),
                width=8,
            ),
            Panel(
                title="Recovery conflicts",
                kind="timeseries",
                queries=(
                    Query(
                        expr="sum by (target, database) "
                        f"({increase('resilience_postgres_conflicts_total' + t)})",
                        legend="{{target}} {{database}}",
                    ),
                ),
                unit="short",
                description="Queries on standbys cancelled in each interval because they "
                "conflicted with replay.",
                width=12,
            ),
            Panel(
                title="Temporary files written",
                kind="timeseries",
                queries=(
                    Query(
                        expr="sum by (target, database) "
                        f"({rate('resilience_postgres_temp_bytes_total' + t)})",
                        legend="{{target}} {{database}}",
                    ),
                ),
                unit="Bps",
                description="Bytes per second queries spill to temporary files "
                "(work_mem too small for them).",
                width=12,
            ),
        ),
    )
