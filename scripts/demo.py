"""`make demo`: real servers on loopback, the exporter probing them, URLs printed.

Ctrl-C (or SIGTERM, or `--exit-after`) stops everything that was started, by PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from scripts.testservers.alertmanager import (
    AlertmanagerServer,
    Notification,
    WebhookReceiver,
    local_config,
)
from scripts.testservers.base import ServerProcess, free_port, port_open, wait_until
from scripts.testservers.pgbouncer import PgBouncerServer
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer
from scripts.testservers.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
MONITOR_USER = "monitor"
MONITOR_PASSWORD = "demo-monitor-password"
REDIS_PASSWORD = "demo-redis-password"
APP_USER = "shop"
APP_PASSWORD = "demo-shop-password"


def demo_config(
    pg: PostgresServer, bouncer: PgBouncerServer, cache: RedisServer, app_port: int
) -> str:
    return f"""# Written by scripts/demo.py
defaults: {{interval: 5s, timeout: 3s}}
targets:
  - name: demo-postgres
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{pg.port}/postgres?sslmode=disable
    password: ${{DEMO_PG_PASSWORD}}
    pool: {{min_size: 1, max_size: 2}}
    labels: {{env: demo}}
  - name: demo-pgbouncer
    kind: pgbouncer
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{bouncer.port}/pgbouncer?sslmode=disable
    password: ${{DEMO_PG_PASSWORD}}
    check_databases: [postgres]
    labels: {{env: demo}}
  - name: demo-redis
    kind: redis
    url: redis://127.0.0.1:{cache.port}/0
    password: ${{DEMO_REDIS_PASSWORD}}
    labels: {{env: demo}}
  - name: demo-shop                     # the demo application (scripts/demo_app.py)
    kind: http
    url: http://127.0.0.1:{app_port}/health/resilience
    preset: generic
    labels: {{env: demo}}
host: {{enabled: true}}
"""


def print_notification(notification: Notification) -> None:
    for alert in notification.payload.get("alerts", []):
        labels = alert.get("labels", {})
        print(
            f"[{notification.path.strip('/')}] {alert.get('status')}: {labels.get('alertname')}"
            f" {alert.get('annotations', {}).get('summary', '')}",
            flush=True,
        )


def start_alerting(exporter_port: int, cleanups: list[Callable[[], None]]) -> tuple[str, str]:
    """Prometheus scraping the exporter with alerts/*.rules.yml loaded, and Alertmanager with
    alerts/alertmanager.example.yml whose webhooks print here. Returns Prometheus' URL and
    the lines to print."""
    receiver = WebhookReceiver(on_notification=print_notification)
    receiver.start()
    cleanups.append(receiver.stop)
    example = (ROOT / "alerts" / "alertmanager.example.yml").read_text()
    alertmanager = AlertmanagerServer(local_config(example, receiver.url, group_interval="10s"))
    cleanups.append(alertmanager.remove)
    alertmanager.start()
    prometheus = PrometheusServer(
        scrape={"resilience-exporter": [f"127.0.0.1:{exporter_port}"]},
        rule_files=sorted((ROOT / "alerts").glob("*.rules.yml")),
        alertmanagers=[alertmanager.address],
        scrape_interval="5s",
        evaluation_interval="5s",
    )
    cleanups.append(prometheus.remove)
    prometheus.start()
    return prometheus.url, (
        f"  Prometheus (rules)      {prometheus.url}/alerts\n"
        f"  Alertmanager            {alertmanager.url}/  (notifications are printed here)\n"
    )


def start_application(
    pg: PostgresServer, cache: RedisServer, *, leak_threshold: float
) -> tuple[ServerProcess, str]:
    """The demo's FastAPI service (scripts/demo_app.py) on a free port; returns it and its
    URL. Its database and Redis URLs, passwords included, go through the environment."""
    pg.create_role(APP_USER, APP_PASSWORD, monitor=False)
    port = free_port()
    database = f"postgresql+psycopg://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{pg.port}/postgres"
    os.environ["DEMO_APP_DATABASE_URL"] = database
    os.environ["DEMO_APP_REDIS_URL"] = cache.url(password=REDIS_PASSWORD)
    app = ServerProcess(
        "demo-shop",
        [
            sys.executable,
            "-m",
            "scripts.demo_app",
            f"--port={port}",
            f"--leak-threshold={leak_threshold:g}",
        ],
        log_path=DEMO_DIR / "demo-shop.log",
    )
    app.start()
    wait_until(lambda: port_open(port), timeout=60, what="the demo application to listen")
    return app, f"http://127.0.0.1:{port}"


def application_help(app_url: str, metrics_url: str, prometheus_url: str, leak: float) -> str:
    health_query = "pool:resilience_pool_health:state == 1"
    return f"""  demo application        {app_url}/  (FastAPI: SQLAlchemy pool orders-db, Redis pool
                          cache, pybreaker breaker payments; read by the target demo-shop)
    leak a connection     curl {app_url}/leak   (each call keeps one; 3 exhaust the pool)
                          held past {leak:g} s, they count in {metrics_url}
                          as resilience_pool_long_held_connections{{source="demo-shop"}};
                          ResiliencePoolConnectionLeak fires after 5 minutes at
                          {prometheus_url}/alerts; curl {app_url}/release gives them back
    open the breaker      curl '{app_url}/flaky?fail=1'  three times (answered by the fallback)
                          resilience_breaker_state{{breaker="payments",state="open"}} is 1;
                          ResilienceApplicationBreakerOpen fires after 1 minute
    a slow call           curl '{app_url}/flaky?slow=1'  while the breaker is closed
                          (resilience_breaker_slow_calls_total)
    pool health           {prometheus_url}/graph?g0.expr={urllib.parse.quote(health_query)}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--exit-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after this long (for tests)",
    )
    parser.add_argument("--port", type=int, default=9864, help="exporter port if free")
    parser.add_argument(
        "--app-leak-threshold",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the demo application's connections may be held before they count as "
        "long-held",
    )
    return parser.parse_args()


def start_exporter(config_path: Path, port: int) -> ServerProcess:
    exporter = ServerProcess(
        "resilience-exporter",
        [
            sys.executable,
            "-m",
            "resilience_exporter",
            f"--config.file={config_path}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=DEMO_DIR / "exporter.log",
    )
    os.environ["DEMO_PG_PASSWORD"] = MONITOR_PASSWORD
    os.environ["DEMO_REDIS_PASSWORD"] = REDIS_PASSWORD
    exporter.start()
    try:
        wait_until(lambda: port_open(port), timeout=30, what="the exporter to listen")
    except BaseException:
        exporter.stop(signal.SIGTERM)
        raise
    return exporter


def main() -> int:
    args = parse_args()

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    DEMO_DIR.mkdir(exist_ok=True)
    started: list[ServerProcess] = []
    cleanups: list[Callable[[], None]] = []
    pg = PostgresServer()
    bouncer: PgBouncerServer | None = None
    cache = RedisServer(password=REDIS_PASSWORD)
    try:
        print("starting PostgreSQL ...", flush=True)
        pg.start()
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        print("starting PgBouncer and Redis ...", flush=True)
        bouncer = PgBouncerServer(pg, users=[(MONITOR_USER, MONITOR_PASSWORD)])
        bouncer.start()
        cache.start()
        print("starting the demo application ...", flush=True)
        app, app_url = start_application(pg, cache, leak_threshold=args.app_leak_threshold)
        started.append(app)
        config_path = DEMO_DIR / "config.yml"
        config_path.write_text(demo_config(pg, bouncer, cache, int(app_url.rsplit(":", 1)[1])))

        port = args.port if not port_open(args.port) else free_port()
        exporter = start_exporter(config_path, port)
        started.append(exporter)
        print("starting Prometheus and Alertmanager ...", flush=True)
        prometheus_url, alerting = start_alerting(port, cleanups)
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        shop = application_help(app_url, metrics_url, prometheus_url, args.app_leak_threshold)

        print(
            f"""
resilience-exporter demo is running (Ctrl-C stops everything)
  exporter landing page   http://127.0.0.1:{port}/
  metrics                 {metrics_url}
  PostgreSQL              {pg.dsn(MONITOR_USER)}  (role with pg_monitor)
  PgBouncer               {bouncer.dsn(MONITOR_USER)}  (admin console)
  Redis                   {cache.url()}  (requirepass set)
{alerting}{shop}  config                  {config_path}
  exporter log            {exporter.log_path}
""",
            flush=True,
        )
        stop.wait(args.exit_after)
        print("stopping ...", flush=True)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        for proc in reversed(started):
            proc.stop(signal.SIGTERM)
        if bouncer is not None:
            bouncer.remove()
        cache.remove()
        pg.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
