"""The chart's PrometheusRule from values, against the generator of alerts/ and real promtool.

`make alerts` writes the rules in template form into the chart; the chart fills them from its
values. With any overrides the chart must render exactly what `python -m alerts.generate
--overrides` renders with the same overrides, and the job it selects must be the one its
ServiceMonitor gives the exporter, whatever nameOverride says.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_support import CHART, one, render, validate

from alerts import generate
from alerts.thresholds import load_thresholds

Values = Mapping[str, Any]
ENABLED: Values = {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def chart_groups(chart: helm_python.Chart, rule_values: Values, **top: Any) -> list[Any]:
    values = {**ENABLED, **top, "prometheusRule": {"enabled": True, **rule_values}}
    rule = one(render(chart, values), "PrometheusRule")
    validate(rule)
    groups: list[Any] = rule["spec"]["groups"]
    return groups


def generator_groups(overrides: Values | None = None) -> list[Any]:
    rendered = generate.render(load_thresholds(overrides=overrides))
    return [g for _, text in sorted(rendered.items()) for g in yaml.safe_load(text)["groups"]]


def test_the_chart_carries_the_generators_template_form() -> None:
    stale = generate.stale_files(generate.CHART_ALERTS_DIR, generate.render(chart=True))
    assert stale == [], "run `make alerts`"


def test_default_values_give_the_rule_files(chart: helm_python.Chart) -> None:
    assert chart_groups(chart, {}) == generator_groups()


OVERRIDES: Values = {
    "settings": {"runbook_base_url": "https://runbooks.example.org/resilience.md"},
    "alerts": {
        "ResilienceHostCpuHigh": {"ratio": 0.8, "for": "30m"},
        "ResilienceHostDiskFillingUp": {"horizon_seconds": 172800, "lookback": "12h"},
        "ResilienceProbeLatencyHigh": {"seconds": 2.5},
    },
}


def test_threshold_overrides_render_as_the_generator_does(chart: helm_python.Chart) -> None:
    groups = chart_groups(chart, {"thresholds": OVERRIDES})
    assert groups == generator_groups(OVERRIDES)
    assert groups != generator_groups(), "the overrides changed something"


def test_runbook_base_url_and_job_values(chart: helm_python.Chart) -> None:
    base = "https://wiki.example.org/ops/resilience-runbooks.md"
    groups = chart_groups(chart, {"runbookBaseUrl": base, "job": "my-scrape-job"})
    settings = {"runbook_base_url": base, "exporter_job": "my-scrape-job"}
    assert groups == generator_groups({"settings": settings})


def test_the_default_runbook_links_are_absolute(chart: helm_python.Chart) -> None:
    for group in chart_groups(chart, {}):
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["annotations"]["runbook_url"].startswith("https://"), rule["alert"]


def scraped_job(objects: list[Any]) -> str:
    """The job prometheus-operator gives the exporter's series: the value of the Service's
    `jobLabel` label when the ServiceMonitor names one and the Service has it, else the
    Service's name."""
    monitor = one(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        o for o in objects
        if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]  # fmt: skip
    assert len(services) == 1
    service = services[0]
    job_label = monitor["spec"].get("jobLabel")
    value = service["metadata"]["labels"].get(job_label) if job_label else None
    return str(value or service["metadata"]["name"])


def absent_expr(groups: list[Any]) -> str:
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == "ResilienceExporterAbsent":
                return str(rule["expr"])
    raise AssertionError("no ResilienceExporterAbsent")


@pytest.mark.parametrize(
    "top",
    [{}, {"nameOverride": "resil"}, {"fullnameOverride": "fleet-monitor"},
     {"nameOverride": "resil", "serviceMonitor": {"enabled": True, "jobLabel": ""}}],
    ids=["defaults", "nameOverride", "fullnameOverride", "nameOverride-no-jobLabel"],
)  # fmt: skip
def test_the_rules_select_the_job_the_service_monitor_gives(
    chart: helm_python.Chart, top: Values
) -> None:
    values = {**ENABLED, **top}
    objects = render(chart, values)
    job = scraped_job(objects)
    groups = one(objects, "PrometheusRule")["spec"]["groups"]
    assert absent_expr(groups) == f'absent(up{{job="{job}"}})'


def promtool_fires(groups: list[Any], job: str, tmp_path: Path) -> list[Any]:
    """What ResilienceExporterAbsent fires with after 15 minutes of `up{job=...} 1`."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": f'up{{job="{job}",instance="10.0.0.1:9864"}}',
                              "values": "1x20"}],
            "alert_rule_test": [{"eval_time": "15m", "alertname": "ResilienceExporterAbsent",
                                 "exp_alerts": []}],
        }],
    }  # fmt: skip
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        ["promtool", "test", "rules", "test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return [] if result.returncode == 0 else [result.stdout + result.stderr]


@pytest.mark.slow
def test_name_override_does_not_fire_exporter_absent(
    chart: helm_python.Chart, tmp_path: Path
) -> None:
    objects = render(chart, {**ENABLED, "nameOverride": "resil"})
    job = scraped_job(objects)
    assert job == "resil"
    groups = one(objects, "PrometheusRule")["spec"]["groups"]
    assert promtool_fires(groups, job, tmp_path) == []
    # The rules as they were (a fixed job) would have fired: the check can fail.
    fixed = chart_groups(chart, {"job": "resilience-exporter"})
    assert promtool_fires(fixed, job, tmp_path) != []


def names(groups: list[Any]) -> tuple[list[str], list[str]]:
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    return [g["name"] for g in groups], alerts


@pytest.mark.slow
def test_groups_and_alerts_can_be_dropped_and_rules_added(chart: helm_python.Chart) -> None:
    extra = {"name": "my-team", "rules": [
        {"alert": "MyTeamOrdersDbDown", "expr": 'resilience_up{target="orders-db"} == 0',
         "for": "1m", "labels": {"severity": "critical"}},
    ]}  # fmt: skip
    groups = chart_groups(chart, {
        "disabledGroups": ["resilience-host"],
        "disabledAlerts": ["ResilienceRedisEvictingKeys"],
        "additionalRuleLabels": {"team": "platform", "severity": "ignored"},
        "extraGroups": [extra],
    })  # fmt: skip
    group_names, alert_names = names(groups)
    default_groups, _ = names(generator_groups())
    assert "resilience-host" not in group_names
    assert group_names == [n for n in default_groups if n != "resilience-host"] + ["my-team"]
    assert "ResilienceRedisEvictingKeys" not in alert_names
    assert "ResilienceHostCpuHigh" not in alert_names
    assert "MyTeamOrdersDbDown" in alert_names
    for group in groups[:-1]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["team"] == "platform"
                assert rule["labels"]["severity"] != "ignored", "the rule's own labels win"
    check = subprocess.run(
        ["promtool", "check", "rules", "/dev/stdin"], input=yaml.safe_dump({"groups": groups}),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("rule_values", "message"),
    [
        ({"thresholds": {"alerts": {"ResilienceHostCpuHig": {"ratio": 0.8}}}},
         "ResilienceHostCpuHig is not a known alert"),
        ({"thresholds": {"alerts": {"ResilienceHostCpuHigh": {"ration": 0.8}}}},
         "ResilienceHostCpuHigh.ration is not a known key"),
        ({"thresholds": {"alerts": {"ResilienceHostCpuHigh": {"ratio": "0.8 or vector(1)"}}}},
         "is not a number or Prometheus duration"),
        ({"thresholds": {"alerts": {"ResilienceHostCpuHigh": {"for": 30}}}},
         "is not a Prometheus duration"),
        ({"thresholds": {"settings": {"exporter_jobs": "x"}}}, "not a known setting"),
        ({"disabledGroups": ["resilience-hosts"]}, 'no rule group "resilience-hosts"'),
        ({"disabledAlerts": ["NoSuchAlert"]}, 'no alert "NoSuchAlert"'),
        ({"extraGroups": [{"name": "resilience-host", "rules": []}]},
         'rule group "resilience-host" is in both'),
    ],
)  # fmt: skip
def test_a_wrong_value_is_refused_with_a_clear_message(
    chart: helm_python.Chart, rule_values: Values, message: str
) -> None:
    with pytest.raises((helm_python.HelmRenderError, helm_python.HelmValuesError), match=message):
        chart_groups(chart, rule_values)


def test_recording_rule_levels_can_be_overridden_too(chart: helm_python.Chart) -> None:
    """The pool health state's levels live under `records:`: the chart takes them as well."""
    overrides = {"records": {"PoolHealth": {"degraded_in_use_ratio": 0.55}}}
    groups = chart_groups(chart, {"thresholds": overrides})
    assert groups == generator_groups(overrides)
    assert groups != generator_groups(), "the override changed something"
