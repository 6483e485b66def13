"""The alert path end to end, every piece a real process: PostgreSQL stops, the exporter says
so, Prometheus (with the shipped rules) fires ResilienceTargetDown, Alertmanager (with the
shipped example config) routes it to the pager webhook; PostgreSQL starts, it resolves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess
from gen_alerts import ALERTS_DIR, load_thresholds, render, write_rules
from testservers.alertmanager import AlertmanagerServer, WebhookReceiver, local_config
from testservers.base import wait_until
from testservers.postgres import PostgresServer
from testservers.prometheus import PrometheusServer

TARGET = "e2e-db"
EXPORTER_JOB = "resilience-exporter"


def exporter_config(pg: PostgresServer) -> str:
    return f"""
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: {TARGET}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{pg.port}/postgres
    password: ${{PGPW}}
    pool: {{min_size: 1, max_size: 2}}
    labels: {{team: payments}}
host: {{enabled: false}}
"""


@pytest.fixture
def postgres_to_stop() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        server.create_role(MONITOR_USER, MONITOR_PASSWORD)
        yield server
    finally:
        server.remove()


def target_down_alerts(receiver: WebhookReceiver, status: str) -> list[tuple[str, dict[str, Any]]]:
    """(receiver path, alert) of each ResilienceTargetDown of TARGET notified with `status`."""
    found = []
    for notification in receiver.received():
        for alert in notification.payload.get("alerts", []):
            labels = alert.get("labels", {})
            if (
                labels.get("alertname") == "ResilienceTargetDown"
                and labels.get("target") == TARGET
                and alert.get("status") == status
            ):
                found.append((notification.path, alert))
    return found


def test_postgres_stop_pages_and_start_resolves(
    postgres_to_stop: PostgresServer, workdir: Path
) -> None:
    pg = postgres_to_stop
    # The shipped rules, rendered through the threshold mechanism with a short `for:` so the
    # test need not wait the production 2 minutes.
    thresholds = load_thresholds(overrides={"alerts": {"ResilienceTargetDown": {"for": "2s"}}})
    rule_files = write_rules(workdir / "rules", render(thresholds))
    example = (ALERTS_DIR / "alertmanager.example.yml").read_text()

    with (
        ExporterProcess(
            workdir, config=exporter_config(pg), env={"PGPW": MONITOR_PASSWORD}
        ) as exporter,
        WebhookReceiver() as receiver,
        AlertmanagerServer(local_config(example, receiver.url)) as alertmanager,
        PrometheusServer(
            scrape={EXPORTER_JOB: [f"127.0.0.1:{exporter.port}"]},
            rule_files=rule_files,
            alertmanagers=[alertmanager.address],
        ) as prometheus,
    ):

        def up_in_prometheus() -> bool:
            return bool(prometheus.query(f'resilience_up{{target="{TARGET}"}} == 1'))

        wait_until(
            up_in_prometheus, timeout=60, interval=0.5, what="Prometheus to see the target up"
        )
        assert not prometheus.query('ALERTS{alertname="ResilienceTargetDown"}')

        pg.stop()
        exporter.wait_for(
            "the exporter to report the target down",
            lambda exp: exp.value("resilience_up", target=TARGET) == 0,
            timeout=30,
        )
        wait_until(
            lambda: bool(target_down_alerts(receiver, "firing")),
            timeout=60,
            interval=0.5,
            what="the ResilienceTargetDown notification at the webhook",
        )
        path, alert = target_down_alerts(receiver, "firing")[0]
        assert path == "/pager", "critical alerts are routed to the pager receiver"
        labels = alert["labels"]
        assert labels["severity"] == "critical"
        assert labels["kind"] == "postgres"
        assert labels["team"] == "payments"
        assert labels["job"] == EXPORTER_JOB
        assert labels["instance"] == f"127.0.0.1:{exporter.port}"
        assert labels["reason"] == "refused"
        annotations = alert["annotations"]
        assert annotations["summary"] == f"postgres target {TARGET} is down (refused)"
        assert f"target {TARGET}" in annotations["description"]
        assert "reason refused" in annotations["description"]
        assert annotations["runbook_url"].endswith("docs/runbooks.md#resiliencetargetdown")

        pg.start()
        wait_until(
            lambda: bool(target_down_alerts(receiver, "resolved")),
            timeout=60,
            interval=0.5,
            what="the resolved ResilienceTargetDown notification at the webhook",
        )
        path, resolved = target_down_alerts(receiver, "resolved")[0]
        assert path == "/pager"
        assert resolved["labels"] == labels
        assert exporter.scrape().value("resilience_up", target=TARGET) == 1
