"""The six dashboards: Overview, PostgreSQL, PgBouncer, Redis, Circuit breakers, Host.

Every query carries the `job`/`instance` variables and, where the series has a target, the
`target` variable. The exporter's own pools and breakers are named after their target
(`pool`/`breaker` = target, `source="exporter"`); applications' are named by the application
(`source` = the application's target): the helpers below select both by `$target`.
"""

from __future__ import annotations

from collections.abc import Callable

from alerts.thresholds import Thresholds
from grafana.spec import RATE, SCRAPE, Dashboard, Panel, Query, Row, Threshold

TARGET = 'target=~"$target"'
EXPORTER_POOL = 'source="exporter", pool=~"$target"'
DOWN_INCIDENT = "while a target is down (its probes fail)"


def sel(*matchers: str) -> str:
    return "{" + ", ".join([SCRAPE, *matchers]) + "}"


def breakers(metric: str, *matchers: str, wrap: Callable[[str], str] = lambda s: s) -> str:
    """`metric` of the exporter's breakers of $target and of the breakers of applications
    that are $target; `wrap` turns each selector into an expression (e.g. a rate)."""
    own = wrap(metric + sel('source="exporter"', 'breaker=~"$target"', *matchers))
    apps = wrap(metric + sel('source!="exporter"', 'source=~"$target"', *matchers))
    return f"({own} or {apps})"


def rate(selector: str) -> str:
    return f"rate({selector}[{RATE}])"


def increase(selector: str) -> str:
    return f"increase({selector}[{RATE}])"


def quantiles(
    bucket_selector: str, by: str, legend: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> tuple[Query, ...]:
    return tuple(
        Query(
            expr=f"histogram_quantile({q}, sum by ({by}, le) ({rate(bucket_selector)}))",
            legend=f"{legend} p{round(q * 100)}",
        )
        for q in qs
    )


def up_stat(kind: str) -> Panel:
    return Panel(
        title="Up",
        kind="stat",
        queries=(
            Query(
                expr=f"max by (target) (resilience_up{sel(kind, TARGET)})",
                legend="{{target}}",
            ),
        ),
        unit="none",
        mapping="up_down",
        description="Whether the last probe of each target succeeded.",
        alerts=("ResilienceTargetDown",),
        width=8,
        height=6,
    )


def probe_errors(kind: str) -> Panel:
    return Panel(
        title="Probe errors by reason",
        kind="timeseries",
        queries=(
            Query(
                expr="sum by (target, reason) "
                f"({rate('resilience_probe_errors_total' + sel(kind, TARGET))})",
                legend="{{target}} {{reason}}",
            ),
        ),
        unit="ops",
        description="Failed probes per second, by the reason the exporter gives.",
        alerts=("ResilienceTargetDown",),
        width=16,
        height=6,
    )


def probe_latency(kind: str) -> tuple[Panel, Panel]:
    buckets = "resilience_probe_duration_seconds_bucket" + sel(kind, TARGET)
    return (
        Panel(
            title="Probe latency heatmap",
            kind="heatmap",
            queries=(
                Query(expr=f"sum by (le) ({rate(buckets)})", legend="{{le}}", format="heatmap"),
            ),
            unit="s",
            description="How long whole probes take: the distribution over time.",
        ),
        Panel(
            title="Probe latency quantiles",
            kind="timeseries",
            queries=quantiles(buckets, "target", "{{target}}"),
            unit="s",
            description="Median, 95th and 99th percentile of the probes' duration.",
            threshold=Threshold(alert="ResilienceProbeLatencyHigh", key="seconds"),
        ),
    )


def overview(thresholds: Thresholds) -> Dashboard:
    up = "resilience_up" + sel(TARGET)
    return Dashboard(
        uid="resilience-overview",
        title="Resilience / Overview",
        file_name="overview.json",
        description="Every target's up state, circuit breakers, the most saturated pools, "
        "firing alerts.",
        target_selector='resilience_up{job=~"$job", instance=~"$instance"}',
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
                                expr='sum(up{job=~"$job", instance=~"$instance"})',
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


def postgres(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="postgres"'
    pool = EXPORTER_POOL
    return Dashboard(
        uid="resilience-postgres",
        title="Resilience / PostgreSQL",
        file_name="postgres.json",
        description="PostgreSQL servers probed by the exporter: latency, the exporter's pool, "
        "server connection slots, long transactions.",
        target_selector='resilience_up{job=~"$job", instance=~"$instance", kind="postgres"}',
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


def pgbouncer(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="pgbouncer"'
    t = sel(TARGET)
    return Dashboard(
        uid="resilience-pgbouncer",
        title="Resilience / PgBouncer",
        file_name="pgbouncer.json",
        description="PgBouncer poolers: clients and servers by state, waits, the databases "
        "behind them, traffic.",
        target_selector='resilience_up{job=~"$job", instance=~"$instance", kind="pgbouncer"}',
        rows=(
            Row(
                title="Availability",
                panels=(
                    up_stat(kind),
                    Panel(
                        title="Databases reachable through PgBouncer",
                        kind="state",
                        queries=(
                            Query(
                                expr="max by (target, database) "
                                f"(resilience_pgbouncer_database_up{t})",
                                legend="{{target}} → {{database}}",
                            ),
                        ),
                        unit="none",
                        mapping="up_down",
                        description="A `SELECT 1` through PgBouncer to each database of the "
                        "target's `check_databases`: PgBouncer up but the server behind "
                        "it down shows here.",
                        alerts=("ResiliencePgbouncerServerLoginFailing",),
                        width=16,
                        height=6,
                    ),
                    *probe_latency(kind),
                ),
            ),
            Row(
                title="Clients and servers",
                panels=(
                    Panel(
                        title="Client connections by state",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"sum by (target, state) (resilience_pgbouncer_clients{t})",
                                legend="{{target}} {{state}}",
                            ),
                        ),
                        unit="short",
                        stacked=True,
                        description="Clients linked to a server (active) and queued for "
                        "one (waiting).",
                        alerts=("ResiliencePgbouncerClientsWaiting",),
                    ),
                    Panel(
                        title="Server connections by state",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"sum by (target, state) (resilience_pgbouncer_servers{t})",
                                legend="{{target}} {{state}}",
                            ),
                        ),
                        unit="short",
                        stacked=True,
                        description="PgBouncer's connections to the servers, by state; "
                        "`login` lasting minutes means the server refuses or is slow.",
                        alerts=("ResiliencePgbouncerServersStuckInLogin",),
                    ),
                    Panel(
                        title="Longest client wait",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"database:resilience_pgbouncer_max_wait_seconds:max{t}",
                                legend="{{target}} {{database}}",
                            ),
                        ),
                        unit="s",
                        description="How long the oldest queued client has waited.",
                        threshold=Threshold(alert="ResiliencePgbouncerMaxWaitHigh", key="seconds"),
                        width=8,
                    ),
                    Panel(
                        title="Client connections used",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"target:resilience_pgbouncer_client_connections:ratio{t}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Clients connected against max_client_conn.",
                        threshold=Threshold(
                            alert="ResiliencePgbouncerClientConnectionsNearMax", key="ratio"
                        ),
                        width=8,
                    ),
                    Panel(
                        title="Server connections vs pool size",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"sum by (target, database) (resilience_pgbouncer_servers{t})",
                                legend="{{target}} {{database}} servers",
                            ),
                            Query(
                                expr=f"resilience_pgbouncer_pool_size{t}",
                                legend="{{target}} {{database}} pool size",
                            ),
                        ),
                        unit="short",
                        description="Server connections per database against its "
                        "configured pool size.",
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Traffic",
                panels=(
                    Panel(
                        title="Transactions and queries",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=rate(f"resilience_pgbouncer_transactions_total{t}"),
                                legend="{{target}} {{database}} transactions",
                            ),
                            Query(
                                expr=rate(f"resilience_pgbouncer_queries_total{t}"),
                                legend="{{target}} {{database}} queries",
                            ),
                        ),
                        unit="ops",
                        description="Transactions and queries PgBouncer passed on, per second.",
                        width=8,
                    ),
                    Panel(
                        title="Network traffic",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=rate(f"resilience_pgbouncer_received_bytes_total{t}"),
                                legend="{{target}} {{database}} received",
                            ),
                            Query(
                                expr=rate(f"resilience_pgbouncer_sent_bytes_total{t}"),
                                legend="{{target}} {{database}} sent",
                            ),
                        ),
                        unit="Bps",
                        description="Bytes from and to clients per second.",
                        width=8,
                    ),
                    Panel(
                        title="Average query and wait duration",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_pgbouncer_avg_query_duration_seconds{t}",
                                legend="{{target}} {{database}} query",
                            ),
                            Query(
                                expr=f"resilience_pgbouncer_avg_wait_duration_seconds{t}",
                                legend="{{target}} {{database}} wait",
                            ),
                        ),
                        unit="s",
                        description="PgBouncer's own averages of query time and of "
                        "clients' wait for a server.",
                        width=8,
                    ),
                    Panel(
                        title="Time in queries and waiting",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=rate(f"resilience_pgbouncer_query_seconds_total{t}"),
                                legend="{{target}} {{database}} querying",
                            ),
                            Query(
                                expr=rate(f"resilience_pgbouncer_client_wait_seconds_total{t}"),
                                legend="{{target}} {{database}} waiting",
                            ),
                        ),
                        unit="s",
                        description="Seconds spent in queries and clients' seconds spent "
                        "waiting, per second (how many are busy or waiting at once).",
                        width=24,
                    ),
                ),
            ),
        ),
    )


def redis(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="redis"'
    t = sel(TARGET)
    return Dashboard(
        uid="resilience-redis",
        title="Resilience / Redis",
        file_name="redis.json",
        description="Redis servers: PING latency, clients, memory, evictions, hit ratio, "
        "replication and Sentinel.",
        target_selector='resilience_up{job=~"$job", instance=~"$instance", kind="redis"}',
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


def circuit_breakers(thresholds: Thresholds) -> Dashboard:
    state = "resilience_breaker_state"
    half_open = breakers(state, 'state="half_open"')
    is_open = breakers(state, 'state="open"')
    return Dashboard(
        uid="resilience-breakers",
        title="Resilience / Circuit breakers",
        file_name="breakers.json",
        description="The exporter's own breakers (source=exporter) and applications' "
        "(source = application): state, transitions, rejected calls, failure ratio.",
        target_selector='resilience_up{job=~"$job", instance=~"$instance"}',
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


def host(thresholds: Thresholds) -> Dashboard:
    s = sel()
    filling = thresholds.alerts["ResilienceHostDiskFillingUp"]
    return Dashboard(
        uid="resilience-host",
        title="Resilience / Host",
        file_name="host.json",
        description="The host the exporter runs on: CPU, memory, filesystems, network, file "
        "descriptors.",
        target_selector='resilience_up{job=~"$job", instance=~"$instance"}',
        rows=(
            Row(
                title="CPU and load",
                panels=(
                    Panel(
                        title="Uptime",
                        kind="stat",
                        queries=(
                            Query(
                                expr=f"time() - resilience_host_boot_time_seconds{s}",
                                legend="{{instance}}",
                            ),
                        ),
                        unit="s",
                        description="Time since the host booted.",
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="CPUs",
                        kind="stat",
                        queries=(Query(expr=f"resilience_host_cpus{s}", legend="{{instance}}"),),
                        unit="short",
                        description="Logical CPUs.",
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="Probe latency p95 of the targets probed from here",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="target:resilience_probe_duration_seconds:p95_rate5m"
                                f"{sel(TARGET)}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="s",
                        description="A busy host slows every probe: compare with CPU and load.",
                        threshold=Threshold(alert="ResilienceProbeLatencyHigh", key="seconds"),
                        height=5,
                    ),
                    Panel(
                        title="CPU busy",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_cpu_utilisation_ratio{s}",
                                legend="{{instance}}",
                            ),
                            Query(
                                expr=f"instance:resilience_host_cpu_utilisation:avg5m{s}",
                                legend="{{instance}} 5m average",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of all CPUs' time spent busy.",
                        threshold=Threshold(alert="ResilienceHostCpuHigh", key="ratio"),
                        width=8,
                    ),
                    Panel(
                        title="CPU time by mode",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (instance, mode) "
                                f"({rate('resilience_host_cpu_seconds_total' + s)})",
                                legend="{{instance}} {{mode}}",
                            ),
                        ),
                        unit="short",
                        stacked=True,
                        description="CPU-seconds per second by mode (1 = one CPU fully used).",
                        width=8,
                    ),
                    Panel(
                        title="Load average",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_load_average{s}",
                                legend="{{instance}} {{window}}",
                            ),
                            Query(expr=f"resilience_host_cpus{s}", legend="{{instance}} CPUs"),
                        ),
                        unit="short",
                        description="Load averages against the number of CPUs.",
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Memory and file descriptors",
                panels=(
                    Panel(
                        title="Memory available",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"instance:resilience_host_memory_available:ratio{s}",
                                legend="{{instance}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of memory available without swapping.",
                        threshold=Threshold(
                            alert="ResilienceHostMemoryLow",
                            key="available_ratio",
                            direction="below",
                        ),
                        width=8,
                    ),
                    Panel(
                        title="Memory and swap",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_memory_total_bytes{s}",
                                legend="{{instance}} memory total",
                            ),
                            Query(
                                expr=f"resilience_host_memory_available_bytes{s}",
                                legend="{{instance}} memory available",
                            ),
                            Query(
                                expr=f"resilience_host_swap_used_bytes{s}",
                                legend="{{instance}} swap used",
                            ),
                            Query(
                                expr=f"resilience_host_swap_total_bytes{s}",
                                legend="{{instance}} swap total",
                            ),
                        ),
                        unit="bytes",
                        description="Physical memory and swap.",
                        width=8,
                    ),
                    Panel(
                        title="File descriptors used",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"instance:resilience_host_file_descriptors:ratio{s}",
                                legend="{{instance}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="File descriptors allocated against fs.file-max.",
                        threshold=Threshold(
                            alert="ResilienceHostFileDescriptorsNearMax", key="ratio"
                        ),
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Filesystems",
                panels=(
                    Panel(
                        title="Filesystem space available",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"instance:resilience_host_filesystem_available:ratio{s}",
                                legend="{{instance}} {{mountpoint}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of each filesystem available to unprivileged users.",
                        threshold=Threshold(
                            alert="ResilienceHostDiskSpaceLow",
                            key="available_ratio",
                            direction="below",
                        ),
                    ),
                    Panel(
                        title="Filesystem space, now and predicted",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_filesystem_available_bytes{s}",
                                legend="{{instance}} {{mountpoint}} available",
                            ),
                            Query(
                                expr="predict_linear(resilience_host_filesystem_available_bytes"
                                f"{s}[{filling['lookback']}], {filling['horizon_seconds']})",
                                legend="{{instance}} {{mountpoint}} predicted",
                            ),
                        ),
                        unit="bytes",
                        description="Space available now and where the trend of the "
                        "ResilienceHostDiskFillingUp alert's lookback puts it at its horizon.",
                        alerts=("ResilienceHostDiskFillingUp",),
                    ),
                ),
            ),
            Row(
                title="Network",
                panels=(
                    Panel(
                        title="Network traffic",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (instance, device, direction) "
                                f"({rate('resilience_host_network_bytes_total' + s)})",
                                legend="{{instance}} {{device}} {{direction}}",
                            ),
                        ),
                        unit="Bps",
                        description="Bytes per second through each interface.",
                    ),
                    Panel(
                        title="Network errors and drops",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (instance, device, direction) "
                                f"({rate('resilience_host_network_errors_total' + s)})",
                                legend="{{instance}} {{device}} {{direction}} errors",
                            ),
                            Query(
                                expr="sum by (instance, device, direction) "
                                f"({rate('resilience_host_network_drops_total' + s)})",
                                legend="{{instance}} {{device}} {{direction}} drops",
                            ),
                        ),
                        unit="pps",
                        description="Interface errors and dropped packets per second.",
                    ),
                ),
            ),
        ),
    )


def dashboards(thresholds: Thresholds) -> list[Dashboard]:
    return [
        overview(thresholds),
        postgres(thresholds),
        pgbouncer(thresholds),
        redis(thresholds),
        circuit_breakers(thresholds),
        host(thresholds),
    ]
