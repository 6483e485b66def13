"""Resilience / Redis: PING latency, clients, memory, evictions, hit ratio, replication and
Sentinel."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import TARGET, increase, quantiles, sel, up_stat
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="redis"'
    t = sel(TARGET)
    return Dashboard(
        uid="resilience-redis",
        title="Resilience / Redis",
        file_name="redis.json",
        description="Redis servers: PING latency, clients, memory, evictions, hit ratio, "
        "replication and Sentinel.",
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
                        queries=quantiles(
                            f"resilience_redis_ping_duration_seconds_bucket{t}",
                            "target",
                            "{{target}}",
                        ),
                        unit="s",
                        description="Round trip of the exporter's PING: median, 95th and "
                        "99th percentile.",
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
                    ),
                ),
            ),
        ),
    )
