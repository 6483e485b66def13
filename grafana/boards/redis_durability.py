"""Rows of the Redis dashboard about where the data survives: replication and Sentinel,
persistence (RDB and AOF), Redis Cluster."""

from __future__ import annotations

from grafana.boards._common import TARGET, sel
from grafana.spec import Panel, Query, Row, Threshold


def replication_and_sentinel() -> Row:
    t = sel(TARGET)
    return Row(
        title="Replication and Sentinel",
        panels=(
            Panel(
                title="Replication link",
                kind="state",
                queries=(
                    Query(
                        expr=f"resilience_redis_replication_link_up{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="none",
                mapping="up_down",
                description="Whether each replica's link to its master is up "
                "(replica targets only).",
                alerts=("ResilienceRedisReplicationLinkDown",),
                width=8,
            ),
            Panel(
                title="Replica link down for, last I/O from the master",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_replication_link_down_seconds{t}",
                        legend="{{target}} link down",
                    ),
                    Query(
                        expr=f"resilience_redis_replication_last_io_seconds{t}",
                        legend="{{target}} last I/O",
                    ),
                ),
                unit="s",
                description="Replica targets: seconds the link to the master has "
                "been down (0 while up), and seconds since the master last sent "
                "anything while it is up (rising towards repl-timeout: the link is "
                "about to drop).",
                alerts=("ResilienceRedisReplicationLinkDown",),
                width=8,
            ),
            Panel(
                title="Replicas and their state",
                kind="table",
                queries=(
                    Query(
                        expr=f"max by (target, replica, state) (resilience_redis_replica_state{t})",
                        format="table",
                        instant=True,
                    ),
                ),
                unit="none",
                description="Master targets: each connected replica and its state "
                "(wait_bgsave and send_bulk: a full sync is running).",
                width=8,
            ),
            Panel(
                title="Replica lag of the backlog",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_replica_offset_lag_bytes{t}"
                        " / ignoring (replica) group_left () "
                        f"(resilience_redis_replication_backlog_bytes{t} > 0)",
                        legend="{{target}} {{replica}}",
                    ),
                ),
                unit="percentunit",
                minimum=0,
                description="Master targets: how far each replica is behind, as a "
                "share of the replication backlog; past 100% a dropped link needs a "
                "full resync.",
                threshold=Threshold(alert="ResilienceRedisReplicaLagging", key="backlog_ratio"),
                width=8,
            ),
            Panel(
                title="Replica offset lag",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_replica_offset_lag_bytes{t}",
                        legend="{{target}} {{replica}}",
                    ),
                ),
                unit="bytes",
                description="Master targets: the master's replication offset minus "
                "what each replica acknowledged.",
                width=8,
            ),
            Panel(
                title="Replica acknowledgement age",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_replica_ack_age_seconds{t}",
                        legend="{{target}} {{replica}}",
                    ),
                ),
                unit="s",
                description="Master targets: seconds since each replica last "
                "acknowledged (replicas do so every second).",
                width=8,
            ),
            Panel(
                title="Sentinel",
                kind="table",
                queries=(
                    Query(
                        expr="max by (target, service, address) "
                        f"(resilience_redis_sentinel_master{t})",
                        format="table",
                        instant=True,
                    ),
                    Query(
                        expr=f"max by (target) (resilience_redis_sentinel_up{t})",
                        format="table",
                        instant=True,
                    ),
                ),
                unit="none",
                description="The master each Sentinel names for its service, and "
                "whether the Sentinel answers (Sentinel targets only).",
                width=8,
            ),
            Panel(
                title="Sentinel quorum",
                kind="state",
                queries=(
                    Query(
                        expr=f"resilience_redis_sentinel_quorum_reachable{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="none",
                mapping="ok_failed",
                description="Whether the Sentinels can agree the master is down and "
                "authorise a failover (SENTINEL CKQUORUM; Sentinel targets only).",
                alerts=("ResilienceRedisSentinelNoQuorum",),
                width=8,
            ),
            Panel(
                title="Sentinels and replicas known",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_sentinel_known_sentinels{t}",
                        legend="{{target}} Sentinels",
                    ),
                    Query(
                        expr=f"resilience_redis_sentinel_quorum{t}",
                        legend="{{target}} quorum",
                    ),
                    Query(
                        expr=f"resilience_redis_sentinel_known_replicas{t}",
                        legend="{{target}} replicas",
                    ),
                ),
                unit="short",
                description="Sentinels watching the service against the quorum, and "
                "the replicas Sentinel could promote (Sentinel targets only).",
                width=8,
            ),
        ),
    )


def persistence() -> Row:
    t = sel(TARGET)
    return Row(
        title="Persistence",
        panels=(
            Panel(
                title="Last save and append-only file",
                kind="state",
                queries=(
                    Query(
                        expr=f"resilience_redis_rdb_last_save_success{t}",
                        legend="{{target}} RDB save",
                    ),
                    Query(
                        expr=f"resilience_redis_aof_last_write_success{t}",
                        legend="{{target}} AOF write",
                    ),
                    Query(
                        expr=f"resilience_redis_aof_last_rewrite_success{t}",
                        legend="{{target}} AOF rewrite",
                    ),
                ),
                unit="none",
                mapping="ok_failed",
                description="Whether the last RDB save, append-only file write and "
                "AOF rewrite succeeded (without AOF, its write status stays OK).",
                alerts=("ResilienceRedisRdbSaveFailing", "ResilienceRedisAofFailing"),
                width=8,
            ),
            Panel(
                title="Since the last RDB save",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_rdb_last_save_age_seconds{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="s",
                description="Seconds since the last successful RDB save (or the "
                "server's start): what a restart would roll back to.",
                width=8,
            ),
            Panel(
                title="Writes since the last RDB save",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_rdb_changes_since_last_save{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="short",
                description="Writes a crash now would lose, unless AOF has them.",
                width=8,
            ),
            Panel(
                title="Latest fork",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_latest_fork_duration_seconds{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="s",
                description="How long the latest fork (for a save, an AOF rewrite or "
                "a replica's full sync) stopped the server: it grows with the dataset.",
            ),
            Panel(
                title="Background saves, rewrites and syncs",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_rdb_save_in_progress{t}",
                        legend="{{target}} RDB save",
                    ),
                    Query(
                        expr=f"resilience_redis_aof_rewrite_in_progress{t}",
                        legend="{{target}} AOF rewrite",
                    ),
                    Query(
                        expr=f"resilience_redis_aof_enabled{t}",
                        legend="{{target}} AOF on",
                    ),
                    Query(
                        expr=f"resilience_redis_replication_sync_in_progress{t}",
                        legend="{{target}} full sync (replica)",
                    ),
                ),
                unit="none",
                description="1 while an RDB save, an AOF rewrite or (on a replica) a "
                "full sync from the master runs; whether AOF is on.",
            ),
        ),
    )


def redis_cluster() -> Row:
    t = sel(TARGET)
    return Row(
        title="Redis Cluster",
        panels=(
            Panel(
                title="Cluster state",
                kind="state",
                queries=(
                    Query(
                        expr=f"resilience_redis_cluster_state_ok{t}",
                        legend="{{target}}",
                    ),
                ),
                unit="none",
                mapping="ok_failed",
                description="cluster_state as each cluster node reports it (Redis "
                "Cluster nodes only).",
                alerts=("ResilienceRedisClusterFailing",),
                width=8,
            ),
            Panel(
                title="Hash slots",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_cluster_slots{t}",
                        legend="{{target}} {{state}}",
                    ),
                ),
                unit="short",
                description="Of the 16384 hash slots: assigned, ok, pfail (suspected "
                "by the node) and fail (agreed by the masters).",
                alerts=("ResilienceRedisClusterSlotsNotOk",),
                width=8,
            ),
            Panel(
                title="Cluster nodes",
                kind="timeseries",
                queries=(
                    Query(
                        expr=f"resilience_redis_cluster_known_nodes{t}",
                        legend="{{target}} known nodes",
                    ),
                    Query(
                        expr=f"resilience_redis_cluster_size{t}",
                        legend="{{target}} masters serving slots",
                    ),
                ),
                unit="short",
                description="Nodes the node knows and the masters serving slots.",
                width=8,
            ),
        ),
    )
