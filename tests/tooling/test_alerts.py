"""The alert rules bundle: generated, valid for promtool, unit-tested for every alert both ways,
written against metric names the exporter exposes, documented, and routed by a valid
Alertmanager config."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rules_support import (
    ROOT,
    RULE_FILES,
    alerts,
    exported_names,
    metric_names,
    rules,
    runbook_sections,
)

from alerts import generate
from alerts.generate import RULES_SUFFIX, render, stale_files
from alerts.thresholds import ALERTS_DIR, AlertRulesError, load_thresholds, runbook_anchor

TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.test.yml"))


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_rule_files_are_the_generators_output() -> None:
    assert RULE_FILES, "no rule files in alerts/"
    assert stale_files(ALERTS_DIR, render()) == [], "run `make alerts`"


@pytest.mark.slow
def test_promtool_check_rules() -> None:
    result = run("promtool", "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_one_unit_test_file_per_rule_group() -> None:
    for path in RULE_FILES:
        groups = yaml.safe_load(path.read_text())["groups"]
        assert len(groups) == 1, f"{path.name}: one rule group per file"
        test_file = ALERTS_DIR / "tests" / path.name.replace(RULES_SUFFIX, ".test.yml")
        assert test_file.exists(), f"{path.name} has no {test_file.name}"
        assert yaml.safe_load(test_file.read_text())["rule_files"] == [f"../{path.name}"]
    assert len(TEST_FILES) == len(RULE_FILES)


@pytest.mark.slow
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", test_file.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=test_file.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_firing_and_not_firing_cases() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in TEST_FILES:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a firing test case"
    assert names - quiet == set(), "alerts without a not-firing test case"
    assert (firing | quiet) - names == set(), "test cases for alerts that don't exist"


@pytest.mark.slow
def test_amtool_check_config() -> None:
    result = run("amtool", "check-config", str(ALERTS_DIR / "alertmanager.example.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def firing_labels() -> dict[str, list[dict[str, str]]]:
    """Alert name -> the label sets its promtool test cases expect it to fire with."""
    found: dict[str, list[dict[str, str]]] = {}
    for test_file in TEST_FILES:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    found.setdefault(check["alertname"], []).append(alert["exp_labels"])
    return found


def test_inhibitions_and_routes_name_real_alerts_and_labels() -> None:
    config = yaml.safe_load((ALERTS_DIR / "alertmanager.example.yml").read_text())
    names = {rule["alert"] for rule in alerts()}
    labels_of = firing_labels()
    matcher = re.compile(r'^alertname(=~|=)"(.*)"$')
    for inhibition in config["inhibit_rules"]:
        for key in ("source_matchers", "target_matchers"):
            for text in inhibition[key]:
                found = matcher.match(text)
                assert found, text
                pattern = found.group(2) if found.group(1) == "=~" else re.escape(found.group(2))
                matched = {name for name in names if re.fullmatch(pattern, name)}
                assert matched, f"{text} matches no alert"
                for name in matched:  # the labels to compare are on the alert
                    for labels in labels_of[name]:
                        assert set(inhibition["equal"]) <= set(labels), (name, labels)
    routed = {route["matchers"][0] for route in config["route"]["routes"]}
    assert routed == {f'severity="{s}"' for s in ("critical", "warning", "info")}


def test_metric_names_of_promql_are_found() -> None:
    found = metric_names(
        'a{x="1"} / on (t) max_over_time(b[5m:1m]) + rate(c_bucket[5m]) or {__name__="d"}'
    )
    assert found == {"a", "b", "c_bucket", "d"}


def test_every_metric_name_in_the_rules_is_exported_or_recorded() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = exported_names() | recorded
    unknown = {
        (rule.get("alert") or rule["record"], name)
        for rule in rules()
        for name in metric_names(rule["expr"])
        if name not in known
    }
    assert unknown == set()


def test_a_metric_name_unknown_to_the_exporter_is_caught() -> None:
    known = exported_names()
    assert "resilience_up" in known
    assert metric_names("resilience_upp == 0") - known == {"resilience_upp"}


def test_every_alert_is_complete() -> None:
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Resilience[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["for"], name
        annotations = rule["annotations"]
        assert "{{ $labels." in annotations["summary"], name
        assert "{{ $labels." in annotations["description"], name
        assert re.search(r"\{\{ \$value \| humani[sz]e", annotations["description"]), name
        assert annotations["runbook_url"].endswith(f"docs/runbooks.md#{runbook_anchor(name)}")


def test_every_alert_has_a_runbook_entry() -> None:
    sections = runbook_sections()
    names = {rule["alert"] for rule in alerts()}
    assert set(sections) == names
    for name, body in sections.items():
        for heading in ("**Meaning.**", "**Confirm.**", "**Act.**"):
            assert heading in body, f"{name}: no {heading}"


def test_thresholds_tune_the_rules() -> None:
    tuned = render(
        load_thresholds(
            overrides={
                "alerts": {"ResiliencePostgresConnectionsNearMax": {"ratio": 0.7, "for": "7m"}}
            }
        )
    )["postgres.rules.yml"]
    rule = next(
        r
        for r in yaml.safe_load(tuned)["groups"][0]["rules"]
        if r.get("alert") == "ResiliencePostgresConnectionsNearMax"
    )
    assert rule["expr"].endswith(">= 0.7")
    assert rule["for"] == "7m"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alerts": {"ResilienceTargetDwn": {"for": "1m"}}}, "not a known alert"),
        ({"alerts": {"ResilienceTargetDown": {"ratio": 1}}}, "not a known key"),
        ({"alerts": {"ResilienceTargetDown": {"for": "soon"}}}, "not a Prometheus duration"),
        ({"alerts": {"ResilienceHostCpuHigh": {"ratio": "0.9 or vector(1)"}}}, "not a Prom"),
        ({"alerts": {"ResilienceHostCpuHigh": {"ratio": True}}}, "not a number"),
        ({"settings": {"runbook_url": "x"}}, "not a known setting"),
        ({"thresholds": {}}, "unknown keys"),
    ],
)
def test_bad_overrides_are_refused_clearly(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AlertRulesError, match=message):
        load_thresholds(overrides=overrides)


def test_thresholds_tune_the_recording_rules() -> None:
    tuned = render(load_thresholds(overrides={"records": {"PoolHealth": {"degraded_waiting": 3}}}))
    rule = next(
        r
        for r in yaml.safe_load(tuned["pools.rules.yml"])["groups"][0]["rules"]
        if r.get("record") == "pool:resilience_pool_health_signal:level"
    )
    assert "pool:resilience_pool_pending_requests:targeted > bool 3" in rule["expr"]
    with pytest.raises(AlertRulesError, match=r"records\.PoolHealt is not a known recording rule"):
        load_thresholds(overrides={"records": {"PoolHealt": {"degraded_waiting": 3}}})
    with pytest.raises(AlertRulesError, match=r"records\.PoolHealth\.ratio is not a known key"):
        load_thresholds(overrides={"records": {"PoolHealth": {"ratio": 3}}})
    with pytest.raises(AlertRulesError, match="not a number"):
        load_thresholds(overrides={"records": {"PoolHealth": {"degraded_waiting": True}}})


def test_templates_and_thresholds_must_agree(tmp_path: Path) -> None:
    templates = tmp_path / "alerts" / "templates"
    templates.mkdir(parents=True)
    (templates / "x.yml").write_text(
        "group: x\nrules:\n  - alert: ResilienceTargetDown\n"
        "    expr: resilience_up < ${ResilienceTargetDown.treshold}\n"
        "    labels: {severity: critical}\n"
        "    annotations: {summary: s, description: d}\n"
    )
    with pytest.raises(AlertRulesError, match=r"no threshold ResilienceTargetDown\.treshold"):
        render(templates_dir=templates)


def test_generator_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rules"
    out.mkdir()
    assert generate.main(["--out", str(out), "--check"]) == 1
    assert generate.main(["--out", str(out)]) == 0
    assert generate.main(["--out", str(out), "--check"]) == 0
    (out / "old.rules.yml").write_text("groups: []\n")
    assert generate.main(["--out", str(out), "--check"]) == 1
    assert "old.rules.yml is out of date" in capsys.readouterr().err
    overrides = tmp_path / "mine.yml"
    overrides.write_text("alerts: {ResilienceTargetDown: {for: 1m, typo: 1}}\n")
    assert generate.main(["--out", str(out), "--overrides", str(overrides)]) == 2
    assert "alerts.ResilienceTargetDown.typo is not a known key" in capsys.readouterr().err
