"""Resilience / PgBouncer: clients and servers by state, waits, the reserve pool, the
databases behind the poolers, traffic."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import TARGET, probe_latency, rate, sel, up_stat
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    kind = 'kind="pgbouncer"'
    t = sel(TARGET)
    return Dashboard(
        uid="resilience-pgbouncer",
        title="Resilience / PgBouncer",
        file_name="pgbouncer.json",
        description="PgBouncer poolers: clients and servers by state, waits, the databases "
        "behind them, traffic.",
        target_selector="resilience_up" + sel(kind),
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
                        "`login` or `tested` lasting minutes means the server refuses or is "
                        "slow.",
                        alerts=(
                            "ResiliencePgbouncerServersStuckInLogin",
                            "ResiliencePgbouncerServersStuckTesting",
                        ),
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
                    Panel(
                        title="Reserve pool in use",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"pool:resilience_pgbouncer_servers_beyond_pool_size:sum{t}",
                                legend="{{target}} {{database}} {{user}} in use",
                            ),
                            Query(
                                expr=f"resilience_pgbouncer_reserve_pool_size{t}",
                                legend="{{target}} {{database}} reserve size",
                            ),
                        ),
                        unit="short",
                        description="Server connections each pool holds beyond pool_size, "
                        "taken from the reserve pool after clients waited "
                        "reserve_pool_timeout, against the reserve's size.",
                        alerts=("ResiliencePgbouncerReservePoolInUse",),
                        width=24,
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
