"""Every dashboard panel against live data: a real Prometheus (with the shipped rules) scrapes
the real exporter, which probes real PostgreSQL (a primary and its streaming standby), PgBouncer,
Redis (master, replica, Sentinel, a node of a 3-master Redis Cluster), an application's health
endpoint and the host. Each panel query, with the dashboard's variables substituted, must return
data; panels documented as showing data only during incidents are checked while the incident is
provoked.

Set RESILIENCE_DASHBOARD_PREVIEWS=grafana/previews (`make previews`) to also write the preview
images of grafana/README.md from this stack; otherwise they are rendered to a temp dir.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest
from aiohttp import web
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess
from http_app import BackgroundApp

from alerts.generate import render, write_rules
from alerts.thresholds import load_thresholds
from grafana import generate, render_previews
from scripts.testservers.base import ServerError, wait_until
from scripts.testservers.pgbouncer import PgBouncerServer
from scripts.testservers.postgres import PostgresServer, PostgresStandby
from scripts.testservers.prometheus import PrometheusServer
from scripts.testservers.redis import RedisCluster, RedisServer, SentinelServer

JOB = "resilience-exporter"
PG, PG_STANDBY, BOUNCER, APP = "e2e-db", "e2e-db-standby", "e2e-bouncer", "shop"
REDIS, REPLICA, SENTINEL = "e2e-cache", "e2e-cache-replica", "e2e-sentinel"
CLUSTER = "e2e-cluster-node"
# Each dashboard's `target` variable: the targets it is about (a regex, as Grafana sends).
TARGETS = {
    "overview.json": f"{PG}|{BOUNCER}|{REDIS}|{REPLICA}|{SENTINEL}|{CLUSTER}|{APP}",
    "postgres.json": f"{PG}|{PG_STANDBY}",
    "pgbouncer.json": BOUNCER,
    "redis.json": f"{REDIS}|{REPLICA}|{SENTINEL}|{CLUSTER}",
    "breakers.json": f"{APP}|{PG}",
    "host.json": f"{PG}|{REDIS}",
}
RATE_INTERVAL = "30s"
# The incidents the tests below provoke, and the incident-only panels each one fills.
INCIDENTS = {
    "breaker_open": {("breakers.json", "Next trial call of open breakers")},
    "postgres_down": {
        ("overview.json", "Targets down and why"),
        ("overview.json", "Firing alerts"),
    },
}
DEADLINE = 120.0
PREVIEW_HISTORY = 170


@dataclass
class AppState:
    """What the application's health document says; a test opens its breaker."""

    payments_open: bool = False
    requests: int = 0

    def document(self) -> dict[str, Any]:
        self.requests += 1
        n = self.requests
        payments: dict[str, Any] = {
            "name": "payments",
            "state": "open" if self.payments_open else "closed",
            "failure_ratio": 0.6 if self.payments_open else 0.05,
            "calls": {"success": 20 * n, "failure": n, "rejected": 3 * n},
            "transitions": [
                {"from": "closed", "to": "open", "count": 2 + int(self.payments_open)},
                {"from": "open", "to": "half_open", "count": 2},
                {"from": "half_open", "to": "closed", "count": 2},
            ],
        }
        if self.payments_open:
            payments["next_attempt_at"] = time.time() + 30
        return {
            "version": 1,
            "breakers": [
                payments,
                {"name": "inventory", "state": "half_open", "failure_ratio": 0.3,
                 "calls": {"success": 5 * n, "failure": 2 * n, "rejected": 0}},
            ],
            "pools": [
                {"name": "orders-db", "max": 20, "min": 2, "in_use": 10 + n % 9, "idle": 2,
                 "waiting": n % 3, "connect_errors": 0, "acquire_errors": 0, "lost": 0},
            ],
        }  # fmt: skip


@dataclass
class Stack:
    postgres: PostgresServer
    prometheus: PrometheusServer
    exporter: ExporterProcess
    app: AppState


def exporter_config(
    pg: PostgresServer,
    standby: PostgresStandby,
    bouncer: PgBouncerServer,
    master: RedisServer,
    replica: RedisServer,
    sentinel: SentinelServer,
    cluster: RedisCluster,
    app: BackgroundApp,
) -> str:
    return f"""
defaults: {{interval: 1s, timeout: 1s}}
host: {{enabled: true, interval: 1s}}
targets:
  - name: {PG}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{pg.port}/postgres
    password: ${{PGPW}}
    pool: {{min_size: 1, max_size: 2}}
  - name: {PG_STANDBY}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{standby.port}/postgres
    password: ${{PGPW}}
    pool: {{min_size: 1, max_size: 2}}
  - name: {BOUNCER}
    kind: pgbouncer
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{bouncer.port}/pgbouncer
    password: ${{PGPW}}
    check_databases: [postgres]
  - name: {REDIS}
    kind: redis
    url: redis://127.0.0.1:{master.port}/0
  - name: {REPLICA}
    kind: redis
    url: redis://127.0.0.1:{replica.port}/0
  - name: {SENTINEL}
    kind: redis
    sentinel: {{hosts: ["127.0.0.1:{sentinel.port}"], service: {sentinel.service}}}
  - name: {CLUSTER}
    kind: redis
    url: redis://127.0.0.1:{cluster.nodes[0].port}/0
  - name: {APP}
    kind: http
    url: {app.url}/health
"""


def health_app(state: AppState) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(state.document())

    application = web.Application()
    application.router.add_get("/health", handler)
    return application


# The master logs every command in its slow log and records latency spikes of a millisecond
# or more; CacheTraffic makes one with a Lua loop.
SLOW_MASTER = ("slowlog-log-slower-than 0", "latency-monitor-threshold 1")
BUSY_SCRIPT = "local i = 0 while i < 3000000 do i = i + 1 end return i"


class CacheTraffic:
    """Key lookups on the Redis master while the stack runs (hits and misses), so that the
    keyspace hit ratio has lookups to count, and one slow script for the latency monitor."""

    def __init__(self, server: RedisServer) -> None:
        self._client = server.client()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-traffic", daemon=True)

    def _run(self) -> None:
        self._client.set("present", "1")
        self._client.eval(BUSY_SCRIPT, 0)
        while not self._stop.wait(0.2):
            self._client.get("present")
            self._client.get("absent")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dashboards-e2e")
    state = AppState()
    # The shipped rules; ResilienceTargetDown with a short `for:` so that the "Firing alerts"
    # panel can be shown firing without waiting the production 2 minutes.
    thresholds = load_thresholds(overrides={"alerts": {"ResilienceTargetDown": {"for": "1s"}}})
    rule_files = write_rules(workdir / "rules", render(thresholds))
    with (
        PostgresServer() as pg,
        PgBouncerServer(pg, users=[(MONITOR_USER, MONITOR_PASSWORD)]) as bouncer,
        RedisServer(maxmemory=64 * 1024 * 1024, extra_config=SLOW_MASTER) as master,
        RedisServer(replica_of=master) as replica,
        SentinelServer(master) as sentinel,
        RedisCluster() as cluster,
        BackgroundApp(lambda: health_app(state)) as app,
    ):
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        with (
            # Made after the role: the standby copies it. Its physical slot on the primary
            # and its receiver fill the replication panels.
            PostgresStandby(pg) as standby,
            CacheTraffic(master),
            ExporterProcess(
                workdir,
                config=exporter_config(
                    pg, standby, bouncer, master, replica, sentinel, cluster, app
                ),
                env={"PGPW": MONITOR_PASSWORD},
            ) as exporter,
            PrometheusServer(
                scrape={JOB: [f"127.0.0.1:{exporter.port}"]}, rule_files=rule_files
            ) as prometheus,
        ):
            yield Stack(postgres=pg, prometheus=prometheus, exporter=exporter, app=state)


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted(generate.DASHBOARDS_DIR.glob("*.json"))
    }


def variables(stack: Stack, file_name: str) -> dict[str, str]:
    return {
        "job": JOB,
        "instance": f"127.0.0.1:{stack.exporter.port}",
        "target": TARGETS[file_name],
        "__rate_interval": RATE_INTERVAL,
    }


def panel_queries(
    board: dict[str, Any], values: dict[str, str], *, incident_only: bool
) -> dict[tuple[str, str], str]:
    """(panel title, refId) -> the query with the variables substituted."""
    found = {}
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        if (generate.INCIDENT_NOTE in panel["description"]) != incident_only:
            continue
        for target in panel["targets"]:
            found[(panel["title"], target["refId"])] = render_previews.substitute(
                target["expr"], values
            )
    return found


def wait_for_data(prometheus: PrometheusServer, queries: dict[tuple[str, str], str]) -> None:
    """Poll until every query returns at least one sample; fail naming those that don't."""
    missing = dict(queries)

    def all_answered() -> bool:
        for key, expr in list(missing.items()):
            if prometheus.query(expr):
                del missing[key]
        return not missing

    try:
        wait_until(all_answered, timeout=DEADLINE, interval=1.0, what="every panel's data")
    except ServerError:
        pytest.fail("panels without data:\n" + "\n".join(f"  {k}: {v}" for k, v in missing.items()))


@pytest.mark.slow
@pytest.mark.parametrize("file_name", sorted(TARGETS))
def test_every_panel_has_data(stack: Stack, file_name: str) -> None:
    board = dashboards()[file_name]
    queries = panel_queries(board, variables(stack, file_name), incident_only=False)
    assert queries
    wait_for_data(stack.prometheus, queries)


@pytest.mark.slow
def test_the_breakers_dashboard_shows_the_exporters_and_the_applications(stack: Stack) -> None:
    board = dashboards()["breakers.json"]
    queries = panel_queries(board, variables(stack, "breakers.json"), incident_only=False)
    wait_for_data(stack.prometheus, queries)
    shown = {
        (row["metric"]["source"], row["metric"]["breaker"])
        for row in stack.prometheus.query(queries[("Breaker state", "A")])
    }
    assert {("exporter", PG), (APP, "payments"), (APP, "inventory")} <= shown


def test_every_incident_only_panel_is_provoked_below() -> None:
    documented = {
        (file_name, panel["title"])
        for file_name, board in dashboards().items()
        for panel in board["panels"]
        if panel["type"] != "row" and generate.INCIDENT_NOTE in panel.get("description", "")
    }
    assert documented == set().union(*INCIDENTS.values())


def incident_queries(stack: Stack, incident: str) -> dict[tuple[str, str], str]:
    boards = dashboards()
    queries: dict[tuple[str, str], str] = {}
    for file_name, title in INCIDENTS[incident]:
        all_incident = panel_queries(
            boards[file_name], variables(stack, file_name), incident_only=True
        )
        queries |= {
            (f"{file_name} {t}", ref): q for (t, ref), q in all_incident.items() if t == title
        }
    return queries


@pytest.mark.slow
def test_postgres_down_fills_the_incident_panels(stack: Stack) -> None:
    queries = incident_queries(stack, "postgres_down")
    assert not any(stack.prometheus.query(q) for q in queries.values()), "nothing down yet"
    stack.postgres.stop()
    try:
        wait_for_data(stack.prometheus, queries)
        shown = {
            title: [row["metric"] for row in stack.prometheus.query(expr)]
            for (title, _), expr in queries.items()
        }
    finally:
        stack.postgres.start()
    down = shown["overview.json Targets down and why"]
    # The reason is the first failure's: `other` (the server ended the pooled connection) or
    # `refused` (nothing listens any more), depending on when the probe ran.
    assert (PG, "postgres") in {(r["target"], r["kind"]) for r in down if r["reason"]}
    firing = shown["overview.json Firing alerts"]
    assert (PG, "ResilienceTargetDown") in {(r.get("target"), r["alertname"]) for r in firing}


@pytest.mark.slow
def test_a_breaker_opening_fills_the_next_trial_panel(stack: Stack) -> None:
    queries = incident_queries(stack, "breaker_open")
    # The database's outage in the test before may have opened its breaker, which closes
    # at its next trial call after the restart.
    wait_until(
        lambda: not any(stack.prometheus.query(q) for q in queries.values()),
        timeout=DEADLINE,
        what="no breaker open before the test opens one",
    )
    stack.app.payments_open = True
    wait_for_data(stack.prometheus, queries)


@pytest.mark.slow
def test_render_previews(stack: Stack, tmp_path: Path) -> None:
    """The README's previews, from this stack's Prometheus: one PNG per dashboard."""
    requested = os.environ.get("RESILIENCE_DASHBOARD_PREVIEWS")
    out = Path(requested or tmp_path)
    if requested:  # images for people: let the graphs cover a few minutes of history
        wait_until(
            lambda: bool(stack.prometheus.query(f"count_over_time(up[10m]) > {PREVIEW_HISTORY}")),
            timeout=PREVIEW_HISTORY * 3,
            interval=5,
            what=f"{PREVIEW_HISTORY}s of history for the previews",
        )
    written = render_previews.render_all(
        prometheus_url=stack.prometheus.url,
        values_for=lambda name: variables(stack, name),
        out_dir=out,
    )
    assert sorted(p.name for p in written) == sorted(n.replace(".json", ".png") for n in TARGETS)
    for path in written:
        assert 10_000 < path.stat().st_size < 300_000, path
