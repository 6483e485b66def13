"""The alert path end to end, every piece a real process: PostgreSQL stops, the exporter says
so, Prometheus (with the shipped rules) fires ResilienceTargetDown, Alertmanager (with the
shipped example config) routes it to the pager webhook; PostgreSQL starts, it resolves."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess

from alerts.generate import render, write_rules
from alerts.thresholds import ALERTS_DIR, load_thresholds
from scripts.testservers.alertmanager import AlertmanagerServer, WebhookReceiver, local_config
from scripts.testservers.base import wait_until
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

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
    own_postgres: PostgresServer, workdir: Path
) -> None:
    pg = own_postgres
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
        assert "reason" not in labels, "the alert keeps one identity while the reason changes"
        annotations = alert["annotations"]
        # Stopped: refused, until the exporter's breaker opens after a few failures.
        summary = annotations["summary"]
        assert summary in (
            f"postgres target {TARGET} is down (refused)",
            f"postgres target {TARGET} is down (breaker_open)",
        )
        assert f"target {TARGET}" in annotations["description"]
        if summary.endswith("(breaker_open)"):
            assert "breaker stopped probing it after refused errors" in annotations["description"]
        else:
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


def post_alerts(alertmanager: AlertmanagerServer, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{alertmanager.url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "instance": "exp:9864", **labels},
        "annotations": {"summary": name},
    }


def test_example_config_routes_by_severity_and_inhibits_a_down_targets_alerts() -> None:
    """The shipped Alertmanager example, in a real Alertmanager: orders-db is down, so its
    pool and breaker alerts are silenced; cache-db's pool alert is not."""
    example = (ALERTS_DIR / "alertmanager.example.yml").read_text()
    with (
        WebhookReceiver() as receiver,
        AlertmanagerServer(local_config(example, receiver.url)) as alertmanager,
    ):
        post_alerts(
            alertmanager,
            [
                alert("ResilienceTargetDown", "critical", target="orders-db"),
                alert("ResiliencePoolNearlyExhausted", "warning", target="orders-db",
                      pool="orders-db", source="exporter"),
                alert("ResilienceBreakerOpenTooLong", "critical", target="orders-db",
                      breaker="orders-db", source="exporter"),
                alert("ResiliencePoolNearlyExhausted", "warning", target="cache-db",
                      pool="cache-db", source="exporter"),
                alert("ResilienceRedisEvictingKeys", "info", target="cache"),
            ],
        )  # fmt: skip

        def notified() -> dict[tuple[str, str], str]:
            """(alertname, target) -> the receiver path it was sent to."""
            return {
                (a["labels"]["alertname"], a["labels"]["target"]): n.path
                for n in receiver.received()
                for a in n.payload["alerts"]
            }

        wait_until(
            lambda: len(notified()) >= 3, timeout=30, interval=0.2, what="three notifications"
        )

        def states() -> dict[tuple[str, str], dict[str, Any]]:
            return {
                (a["labels"]["alertname"], a["labels"]["target"]): a["status"]
                for a in alertmanager.alerts()
            }

        wait_until(
            lambda: (
                states()[("ResiliencePoolNearlyExhausted", "orders-db")]["state"] == "suppressed"
            ),
            timeout=30,
            interval=0.2,
            what="the down target's pool alert to be inhibited",
        )
        status = states()
        for silenced in ("ResiliencePoolNearlyExhausted", "ResilienceBreakerOpenTooLong"):
            assert status[(silenced, "orders-db")]["state"] == "suppressed"
            assert status[(silenced, "orders-db")]["inhibitedBy"]
        assert status[("ResiliencePoolNearlyExhausted", "cache-db")]["state"] == "active"
        sent = notified()
        assert sent[("ResilienceTargetDown", "orders-db")] == "/pager"
        assert sent[("ResiliencePoolNearlyExhausted", "cache-db")] == "/tickets"
        assert sent[("ResilienceRedisEvictingKeys", "cache")] == "/info"
        assert ("ResiliencePoolNearlyExhausted", "orders-db") not in sent
        assert ("ResilienceBreakerOpenTooLong", "orders-db") not in sent
