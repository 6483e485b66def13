"""The chart's rules and dashboards have one source of truth: the chart carries the rule files'
groups verbatim and every dashboard, scripts/sync_chart_assets.py reports and repairs a copy
that drifted, and the committed copies are up to date."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_support import (
    CHART,
    FIXTURES,
    ROOT,
    Manifest,
    one,
    render,
    render_dir,
    validate,
)

from scripts import sync_chart_assets


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def rule_groups(rule_files: list[Path]) -> list[Any]:
    return [g for path in sorted(rule_files) for g in yaml.safe_load(path.read_text())["groups"]]


def dashboards_in(objects: list[Manifest]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["labels"].get("grafana_dashboard"):
            for key, text in obj["data"].items():
                assert key not in found, f"dashboard {key} twice"
                found[key] = json.loads(text)
    return found


MONITORING = {"prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}}


@pytest.fixture
def fixture_repo(tmp_path: Path) -> Path:
    """A repository with the fixture rules and dashboards, and a copy of the chart."""
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    shutil.copytree(CHART, tmp_path / "helm" / "resilience-exporter")
    for copied in (tmp_path / sync_chart_assets.CHART_FILES).glob("*/*"):
        if copied.name != ".gitkeep":
            copied.unlink()
    # What `alerts.generate` writes for the real repository; rule files without placeholders
    # pass through the chart's template unchanged.
    for rules in (tmp_path / "alerts").glob("*.rules.yml"):
        shutil.copyfile(rules, tmp_path / sync_chart_assets.CHART_FILES / "alerts" / rules.name)
    return tmp_path


def test_prometheus_rule_holds_the_rule_files_groups_verbatim(fixture_repo: Path) -> None:
    sync_chart_assets.sync(fixture_repo)
    objects = render_dir(fixture_repo / "helm" / "resilience-exporter", MONITORING)
    rule = one(objects, "PrometheusRule")
    validate(rule)
    expected = rule_groups(list((fixture_repo / "alerts").glob("*.rules.yml")))
    assert [g["name"] for g in expected] == ["fixture-probe", "fixture-pool"]
    assert rule["spec"]["groups"] == expected


def test_a_rule_group_name_used_twice_is_refused(fixture_repo: Path) -> None:
    shutil.copyfile(
        fixture_repo / "alerts" / "fixture-b.rules.yml",
        fixture_repo / sync_chart_assets.CHART_FILES / "alerts" / "fixture-c.rules.yml",
    )
    sync_chart_assets.sync(fixture_repo)
    with pytest.raises(helm_python.HelmRenderError, match='"fixture-pool" is in both'):
        render_dir(fixture_repo / "helm" / "resilience-exporter", MONITORING)


def test_dashboard_configmaps_hold_every_dashboard(fixture_repo: Path) -> None:
    sync_chart_assets.sync(fixture_repo)
    values = {**MONITORING, "dashboards": {"enabled": True, "namespace": "grafana"}}
    objects = render_dir(fixture_repo / "helm" / "resilience-exporter", values)
    sources = sorted((fixture_repo / "grafana" / "dashboards").glob("*.json"))
    assert dashboards_in(objects) == {p.name: json.loads(p.read_text()) for p in sources}
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "grafana_dashboard" in obj["metadata"]["labels"]:
            assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert obj["metadata"]["namespace"] == "grafana"
            assert re.fullmatch(r"[a-z0-9-]+", obj["metadata"]["name"])
            validate(obj)


def test_sync_reports_and_repairs_drift(fixture_repo: Path) -> None:
    """The dashboards are copied; the alert rules reach the chart from their generator
    (tests/tooling/test_chart_rules.py)."""
    copies = fixture_repo / sync_chart_assets.CHART_FILES
    assert {str(d) for d in sync_chart_assets.drift(fixture_repo)} == {
        f"{copies.relative_to(fixture_repo)}/dashboards/fixture-overview.json: missing",
        f"{copies.relative_to(fixture_repo)}/dashboards/fixture_pools.json: missing",
    }
    sync_chart_assets.sync(fixture_repo)
    assert sync_chart_assets.drift(fixture_repo) == []

    (fixture_repo / "grafana" / "dashboards" / "fixture-overview.json").write_text("{}\n")
    (fixture_repo / "grafana" / "dashboards" / "fixture_pools.json").unlink()
    assert sorted(str(d) for d in sync_chart_assets.drift(fixture_repo)) == [
        f"{copies.relative_to(fixture_repo)}/dashboards/fixture-overview.json: differs",
        f"{copies.relative_to(fixture_repo)}/dashboards/fixture_pools.json: stale",
    ]
    assert sync_chart_assets.main(["--check", "--root", str(fixture_repo)]) == 1
    sync_chart_assets.sync(fixture_repo)
    assert sync_chart_assets.main(["--check", "--root", str(fixture_repo)]) == 0
    assert (copies / "dashboards" / ".gitkeep").exists()


def test_the_charts_copies_of_alerts_and_dashboards_are_up_to_date() -> None:
    assert [str(d) for d in sync_chart_assets.drift(ROOT)] == [], "run `make chart-assets`"


def test_the_chart_renders_the_repositorys_rules_and_dashboards(chart: helm_python.Chart) -> None:
    objects = render(chart, MONITORING)
    groups = rule_groups(list((ROOT / "alerts").glob("*.rules.yml")))
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if groups:
        assert len(rules) == 1
        validate(rules[0])
        assert rules[0]["spec"]["groups"] == groups
    else:
        assert rules == [], "no rule files: no empty PrometheusRule"
    dashboards = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    assert dashboards_in(objects) == {p.name: json.loads(p.read_text()) for p in dashboards}
