"""Resilience / Redis: PING latency, clients, memory, evictions, hit ratio, activity and
latency spikes, replication, persistence, Sentinel and Redis Cluster."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import TARGET, increase, quantiles, rate, sel, up_stat
from grafana.boards.redis_durability import (
    persistence,
    redis_cluster,
    replication_and_sentinel,
)
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="redis"'
    return Dashboard(
        uid="resilience-redis",
        title="Resilience / Redis",
        file_name="redis.json",
        description="Redis servers: PING latency, clients, memory, evictions, hit ratio, "
        "activity and latency spikes, replication, persistence, Sentinel and Redis Cluster.",
        target_selector="resilience_up" + sel(kind),
        rows=(
            availability_and_latency(kind),
            clients(),
            memory_and_keys(),
            activity_and_latency_spikes(),
            replication_and_sentinel(),
            persistence(),
            redis_cluster(),
        ),
    )


def availability_and_latency(kind: str) -> Row:
    t = sel(TARGET)
    return Row(
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
    )


def clients() -> Row:
    t = sel(TARGET)
    return Row(
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
                description="Connections refused because maxclients was reached, in each interval.",
                alerts=("ResilienceRedisRejectedConnections",),
                width=8,
            ),
        ),
    )


def memory_and_keys() -> Row:
    t = sel(TARGET)
    return Row(
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
                description="Memory Redis uses and its maxmemory (not drawn when unlimited).",
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
    )


def activity_and_latency_spikes() -> Row:
    t = sel(TARGET)
    return Row(
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
                        expr=f"sum by (target) ({rate(f'resilience_redis_cpu_seconds_total{t}')})",
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
    )
