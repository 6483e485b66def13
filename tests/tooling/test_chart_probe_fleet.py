"""The chart's Probe for fleets, end to end: rendered by Helm, turned into the scrape config
prometheus-operator makes of a Probe, and run by a real Prometheus against the real exporter
(with the chart's rendered config.yml) probing a real PostgreSQL through /probe.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_support import CHART, RELEASE, one, render, validate
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess

from scripts.testservers.base import wait_until
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def operator_scrape_config(probe: dict[str, Any], prober_address: str) -> dict[str, Any]:
    """What prometheus-operator generates for a Probe with static targets (its
    generateProbeConfig): the module as a parameter, each target as `target` and `instance`,
    the prober as the address; the Service name is replaced by where the exporter listens."""
    spec = probe["spec"]
    static = spec["targets"]["staticConfig"]
    return {
        "job_name": f"probe/{probe['metadata']['namespace']}/{probe['metadata']['name']}",
        "metrics_path": spec["prober"]["path"],
        "scheme": spec["prober"]["scheme"],
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "params": {"module": [spec["module"]]},
        "static_configs": [{"targets": static["static"], "labels": static.get("labels", {})}],
        "relabel_configs": [
            {"target_label": "job", "replacement": spec["jobName"]},
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": prober_address},
        ],
    }


@pytest.mark.slow
def test_a_fleet_is_probed_through_the_charts_probe(
    chart: helm_python.Chart, postgres: PostgresServer, workdir: Path
) -> None:
    address = f"127.0.0.1:{postgres.port}"
    values = {
        "config": {"host": {"enabled": False}, "modules": {"pg_fleet": {
            "kind": "postgres", "dsn": f"postgresql://{MONITOR_USER}@{{address}}/postgres",
            "password": "${FLEET_PASSWORD}", "timeout": "5s",
            "allow": ["127.0.0.1/32"], "allow_ports": [postgres.port],
        }}},
        "secrets": {"existingSecret": "fleet-passwords", "mountAs": "env"},
        "probes": {"targets": [{"name": "pg-fleet", "module": "pg_fleet",
                                "targets": [address], "labels": {"env": "test"}}]},
    }  # fmt: skip
    objects = render(chart, values)
    probe = one(objects, "Probe")
    validate(probe)
    assert probe["spec"]["prober"]["url"] == f"{RELEASE}-resilience-exporter.monitoring.svc:9864"
    config = one(objects, "ConfigMap")["data"]["config.yml"]
    with ExporterProcess(
        workdir, config=config, env={"FLEET_PASSWORD": MONITOR_PASSWORD}
    ) as exporter:
        scrape = operator_scrape_config(probe, f"127.0.0.1:{exporter.port}")
        with PrometheusServer(scrape={}, scrape_configs=[scrape]) as prometheus:
            query = f'resilience_up{{job="pg-fleet",instance="{address}",env="test"}}'

            def probed() -> bool:
                return [s["value"][1] for s in prometheus.query(query)] == ["1"]

            wait_until(probed, timeout=60, what=f"{query} == 1 in Prometheus")
            counted = prometheus.query('resilience_exporter_probe_requests_total{result="success"}')
            assert counted == [], "/probe answers carry the target's families only"
    assert MONITOR_PASSWORD not in yaml.safe_dump(objects)


def test_a_probe_naming_an_unknown_module_is_refused(chart: helm_python.Chart) -> None:
    values = {"probes": {"targets": [{"name": "x", "module": "nope", "targets": ["a:1"]}]}}
    with pytest.raises(
        helm_python.HelmRenderError, match=r'module "nope" is not in config\.modules'
    ):
        render(chart, values)
