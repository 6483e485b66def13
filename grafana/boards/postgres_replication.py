"""The PostgreSQL dashboard's replication row: primaries' standbys and slots, standbys'
receiver and replay."""

from __future__ import annotations

from grafana.boards._common import TARGET, sel
from grafana.spec import Panel, Query, Row, Threshold


def replication() -> Row:
    t = sel(TARGET)
    standby = "{{target}} → {{application_name}} {{client_addr}}"
    replay = sel(TARGET, 'stage="replay"')
    streaming = sel(TARGET, 'status="streaming"')
    return Row(
        title="Replication",
        panels=(
            Panel(
                title="Standbys by state (primaries)",
                kind="timeseries",
                queries=(
                    Query(
                        expr="sum by (target, application_name, client_addr, state, sync_state) "
                        f"(resilience_postgres_standbys{t})",
                        legend=f"{standby} {{{{state}}}} {{{{sync_state}}}}",
                    ),
                ),
                unit="short",
                description="Standbys streaming from each primary (pg_stat_replication), "
                "by state and sync state.",
                width=8,
            ),
            Panel(
                title="Standby lag in bytes (primaries)",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_standby_lag_bytes{t}",
                        legend=f"{standby} {{{{stage}}}}",
                    ),
                ),
                unit="bytes",
                description="WAL each standby has not yet been sent, written, flushed or "
                "replayed, behind the primary's current position.",
                width=8,
            ),
            Panel(
                title="Standby replay lag (primaries)",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_standby_lag_seconds{replay}",
                        legend=standby,
                    ),
                ),
                unit="s",
                description="The primary's replay_lag of each standby (0 once caught up "
                "with no traffic).",
                threshold=Threshold(alert="ResiliencePostgresStandbyLagHigh", key="seconds"),
                width=8,
            ),
            Panel(
                title="Replay lag (standbys)",
                kind="timeseries",
                queries=(
                    Query(expr=f"resilience_postgres_replay_lag_seconds{t}", legend="{{target}}"),
                ),
                unit="s",
                description="On each standby: 0 when everything received is replayed, "
                "else the age of the last replayed transaction.",
                threshold=Threshold(alert="ResiliencePostgresReplicationLagHigh", key="seconds"),
                width=8,
            ),
            Panel(
                title="WAL received, not replayed (standbys)",
                kind="timeseries",
                queries=(
                    Query(expr=f"resilience_postgres_replay_lag_bytes{t}", legend="{{target}}"),
                ),
                unit="bytes",
                description="WAL bytes a standby has received and not yet replayed: "
                "rising while replay is paused or stuck.",
                alerts=("ResiliencePostgresReplicationLagHigh",),
                width=8,
            ),
            Panel(
                title="WAL receiver and replay (standbys)",
                kind="state",
                queries=(
                    Query(
                        expr="max by (target) "
                        f"(resilience_postgres_wal_receiver_status{streaming})",
                        legend="{{target}} receiver",
                    ),
                ),
                unit="none",
                mapping="streaming",
                description="Whether each standby's WAL receiver streams from its primary.",
                alerts=("ResiliencePostgresWalReceiverDown",),
                width=8,
            ),
            Panel(
                title="Replay paused (standbys)",
                kind="state",
                queries=(Query(expr=f"resilience_postgres_replay_paused{t}", legend="{{target}}"),),
                unit="none",
                mapping="replay_paused",
                description="Whether WAL replay is paused on each standby (pg_wal_replay_pause()).",
                alerts=("ResiliencePostgresReplicationLagHigh",),
                width=8,
            ),
            Panel(
                title="Replication slots",
                kind="state",
                queries=(
                    Query(
                        expr="max by (target, slot_name) "
                        f"(resilience_postgres_replication_slot_active{t})",
                        legend="{{target}} {{slot_name}}",
                    ),
                ),
                unit="none",
                mapping="slot_active",
                description="Whether a consumer is connected to each replication slot.",
                alerts=(
                    "ResiliencePostgresReplicationSlotInactive",
                    "ResiliencePostgresReplicationSlotLost",
                ),
                width=8,
            ),
            Panel(
                title="WAL retained by replication slots",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_postgres_replication_slot_retained_wal_bytes{t}",
                        legend="{{target}} {{slot_name}}",
                    ),
                ),
                unit="bytes",
                description="WAL each slot keeps on disk: growing without bound when its "
                "consumer is gone.",
                threshold=Threshold(
                    alert="ResiliencePostgresReplicationSlotWalRetained", key="bytes"
                ),
                alerts=("ResiliencePostgresReplicationSlotInactive",),
                width=8,
            ),
        ),
    )
