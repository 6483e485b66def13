"""Resilience / Redis: PING latency, clients, memory, evictions, hit ratio, activity and
latency spikes, replication, persistence, Sentinel and Redis Cluster."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import TARGET, increase, quantiles, rate, sel, up_stat
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="redis"'
    t = sel(TARGET)
    return Dashboard(
        uid="resilience-redis",
        title="Resilience / Redis",
        file_name="redis.json",
        description="Redis servers: PING latency, clients, memory, evictions, hit ratio, "
        "activity and latency spikes, replication, persistence, Sentinel and Redis Cluster.",
        target_selector="resilience_up" + sel(kind),
        rows=(
            Row(
                title="Availability and latency",
                panels=(
                    up_stat(kind),
                    Panel(
                        title="Role",
                        kind="table",
                        queries=(
                            Query(
                                expr=f"max by (target, role) (resilience_redis_role{t})",
                                format="table",
                                instant=True,
                            ),
                        ),
                        unit="none",
                        description="Whether each server is a master or a replica.",
                        width=8,
                        height=6,
                    ),
                    Panel(
                        title="Connected replicas",
                        kind="stat",
                        queries=(
                            Query(
                                expr=f"resilience_redis_connected_replicas{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="short",
                        description="Replicas connected to each server.",
                        width=8,
                        height=6,
                    ),
                    Panel(
                        title="PING latency",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=rate(f"resilience_redis_ping_duration_seconds_sum{t}")
                                + " / "
                                + rate(f"resilience_redis_ping_duration_seconds_count{t}"),
                                legend="{{target}} PING mean",
                            ),
                            *quantiles(
                                f"resilience_probe_duration_seconds_bucket{t}",
                                "target",
                                "{{target}} probe",
                            ),
                        ),
                        unit="s",
                        description="Mean round trip of the exporter's PING, and the median, "
                        "95th and 99th percentile of its whole probe (PING, then INFO and the "
                        "rest in one round trip).",
                        width=24,
                    ),
                ),
            ),
            Row(
                title="Clients",
                panels=(
                    Panel(
                        title="Clients vs maxclients",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_redis_connected_clients{t}",
                                legend="{{target}} connected",
                            ),
                            Query(
                                expr=f"resilience_redis_blocked_clients{t}",
                                legend="{{target}} blocked",
                            ),
                            Query(
                                expr=f"resilience_redis_max_clients{t}",
                                legend="{{target}} maxclients",
                            ),
                        ),
                        unit="short",
                        description="Connected clients, those blocked in BLPOP and the "
                        "like, and the maxclients limit.",
                        width=8,
                    ),
                    Panel(
                        title="Client connections used",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"target:resilience_redis_clients:ratio{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Connected clients against maxclients.",
                        threshold=Threshold(alert="ResilienceRedisClientsNearMax", key="ratio"),
                        width=8,
                    ),
                    Panel(
                        title="Rejected connections",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=increase(f"resilience_redis_rejected_connections_total{t}"),
                                legend="{{target}}",
                            ),
                        ),
                        unit="short",
                        description="Connections refused because maxclients was reached, "
                        "in each interval.",
                        alerts=("ResilienceRedisRejectedConnections",),
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Memory and keys",
                panels=(
                    Panel(
                        title="Memory used vs maxmemory",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_redis_memory_used_bytes{t}",
                                legend="{{target}} used",
                            ),
                            Query(
                                expr=f"resilience_redis_memory_max_bytes{t} > 0",
                                legend="{{target}} maxmemory",
                            ),
                        ),
                        unit="bytes",
                        description="Memory Redis uses and its maxmemory (not drawn when "
                        "unlimited).",
                        width=8,
                    ),
                    Panel(
                        title="Memory used of maxmemory",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"target:resilience_redis_memory_used:ratio{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of maxmemory in use, for servers with a maxmemory.",
                        threshold=Threshold(alert="ResilienceRedisMemoryNearMax", key="ratio"),
                        width=8,
                    ),
                    Panel(
                        title="Evicted keys",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"target:resilience_redis_evicted_keys:rate5m{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="ops",
                        description="Keys evicted per second to stay under maxmemory.",
                        alerts=("ResilienceRedisEvictingKeys",),
                        width=8,
                    ),
                    Panel(
                        title="Keyspace hit ratio",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"target:resilience_redis_keyspace_hits:ratio_rate5m{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of key lookups that found their key.",
                    ),
                    Panel(
                        title="Memory fragmentation",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_redis_memory_fragmentation_ratio{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="none",
                        description="Resident memory over memory allocated: well above 1.5 "
                        "on a large dataset is memory lost to fragmentation (consider "
                        "activedefrag); below 1, the server swaps. Meaningless while the "
                        "dataset is a few MB.",
                        width=12,
                    ),
                ),
            ),
            Row(
                title="Activity and latency spikes",
                panels=(
                    Panel(
                        title="Commands per second",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=rate(f"resilience_redis_commands_processed_total{t}"),
                                legend="{{target}}",
                            ),
                            Query(
                                expr=f"resilience_redis_instantaneous_ops_per_second{t}",
                                legend="{{target}} instantaneous",
                            ),
                        ),
                        unit="ops",
                        description="Commands processed per second, over the rate interval "
                        "and as the server samples it.",
                        width=8,
                    ),
                    Panel(
                        title="Server CPU",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (target) "
                                f"({rate(f'resilience_redis_cpu_seconds_total{t}')})",
                                legend="{{target}}",
                            ),
                        ),
                        unit="short",
                        minimum=0,
                        description="CPU cores the server process uses: commands run on one "
                        "thread, so near 1 the server is saturated and every client waits.",
                        width=8,
                    ),
                    Panel(
                        title="Error replies",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=rate(f"resilience_redis_error_replies_total{t}"),
                                legend="{{target}}",
                            ),
                        ),
                        unit="ops",
                        description="Error replies per second: refused writes (MISCONF after "
                        "a failed save, OOM at maxmemory, READONLY on a replica), NOPERM, "
                        "wrong types.",
                        width=8,
                    ),
                    Panel(
                        title="Slow log length",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_redis_slowlog_length{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="short",
                        description="Entries in the slow log (commands slower than "
                        "slowlog-log-slower-than); it keeps slowlog-max-len entries.",
                        width=8,
                    ),
                    Panel(
                        title="Newest slow command",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_redis_slowlog_last_duration_seconds{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="s",
                        description="Execution time of the newest slow log entry (its "
                        "command is not exported: SLOWLOG GET on the server names it).",
                        width=8,
                    ),
                    Panel(
                        title="Latency spikes",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_redis_latency_spike_duration_seconds{t}",
                                legend="{{target}} {{event}}",
                            ),
                        ),
                        unit="s",
                        description="The latency monitor's latest spike per event (command, "
                        "fork, aof-fsync-always, ...), on servers with "
                        "latency-monitor-threshold set.",
                        width=8,
                    ),
                ),
            ),
            Row(
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
                                expr="max by (target, replica, state) "
                                f"(resilience_redis_replica_state{t})",
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
                        threshold=Threshold(
                            alert="ResilienceRedisReplicaLagging", key="backlog_ratio"
                        ),
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
            ),
            Row(
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
            ),
            Row(
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
            ),
        ),
    )
