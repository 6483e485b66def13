"""`make demo`: real servers on loopback, the exporter probing them, URLs printed.

Ctrl-C (or SIGTERM, or `--exit-after`) stops everything that was started, by PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
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


def demo_config(pg: PostgresServer, bouncer: PgBouncerServer, cache: RedisServer) -> str:
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


def start_alerting(exporter_port: int, cleanups: list[Callable[[], None]]) -> str:
    """Prometheus scraping the exporter with alerts/*.rules.yml loaded, and Alertmanager with
    alerts/alertmanager.example.yml whose webhooks print here. Returns the lines to print."""
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
    return (
        f"  Prometheus (rules)      {prometheus.url}/alerts\n"
        f"  Alertmanager            {alertmanager.url}/  (notifications are printed here)\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--exit-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after this long (for tests)",
    )
    parser.add_argument("--port", type=int, default=9864, help="exporter port if free")
    args = parser.parse_args()

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
        config_path = DEMO_DIR / "config.yml"
        config_path.write_text(demo_config(pg, bouncer, cache))

        port = args.port if not port_open(args.port) else free_port()
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
        started.append(exporter)
        wait_until(lambda: port_open(port), timeout=30, what="the exporter to listen")
        print("starting Prometheus and Alertmanager ...", flush=True)
        alerting = start_alerting(port, cleanups)

        print(
            f"""
resilience-exporter demo is running (Ctrl-C stops everything)
  exporter landing page   http://127.0.0.1:{port}/
  metrics                 http://127.0.0.1:{port}/metrics
  PostgreSQL              {pg.dsn(MONITOR_USER)}  (role with pg_monitor)
  PgBouncer               {bouncer.dsn(MONITOR_USER)}  (admin console)
  Redis                   {cache.url()}  (requirepass set)
{alerting}  config                  {config_path}
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
