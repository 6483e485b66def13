"""The Grafana dashboards: generated, queries that parse and name only real series, the
variables, units, thresholds read from the alert thresholds, stable uids, links."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from rules_support import exported_names, metric_names, rules, runbook_sections

from alerts.thresholds import load_thresholds, runbook_anchor
from grafana import generate, render_previews

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_FILES = sorted(generate.DASHBOARDS_DIR.glob("*.json"))
# What the dashboards are known by: bookmarks and links use these, so they must not change.
STABLE_UIDS = {
    "overview.json": "resilience-overview",
    "postgres.json": "resilience-postgres",
    "pgbouncer.json": "resilience-pgbouncer",
    "redis.json": "resilience-redis",
    "breakers.json": "resilience-breakers",
    "host.json": "resilience-host",
}
# Series Prometheus makes itself.
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
THRESHOLD_NOTE = re.compile(r"Threshold: `(\w+)\.(\w+)` = ")
# Grafana's built-in interval variables; the values are what a 1h-wide panel would get.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def boards() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in DASHBOARD_FILES}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] != "row":
            yield panel


def every_panel() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, board in boards().items():
        for panel in panels(board):
            yield name, panel


def substitute(expr: str) -> str:
    """The query as Grafana sends it with every variable at "All" (`.*`)."""
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$(job|instance|target)\b", ".*", expr)


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found


def thresholds_yml() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(
        (ROOT / "alerts" / "thresholds.yml").read_text()
    )["alerts"]
    return loaded


def test_committed_dashboards_are_the_generators_output() -> None:
    assert DASHBOARD_FILES, "no dashboards in grafana/dashboards/"
    assert generate.stale_files(generate.DASHBOARDS_DIR, generate.render()) == [], (
        "run `make dashboards`"
    )


def test_a_hand_edited_dashboard_is_detected(tmp_path: Path) -> None:
    rendered = generate.render()
    generate.write(tmp_path, rendered)
    assert generate.stale_files(tmp_path, rendered) == []
    edited = tmp_path / "postgres.json"
    edited.write_text(edited.read_text().replace("Oldest transaction", "Old transaction"))
    (tmp_path / "extra.json").write_text("{}")
    assert generate.stale_files(tmp_path, rendered) == ["postgres.json", "extra.json"]
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_the_six_dashboards_with_stable_uids() -> None:
    found = {name: board["uid"] for name, board in boards().items()}
    assert found == STABLE_UIDS
    for board in boards().values():
        assert board["schemaVersion"] >= 39, "made for a current Grafana"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{board['uid']}: panel ids repeat"
        assert board["time"] == {"from": "now-3h", "to": "now"}
        assert board["refresh"] == "30s"
        assert "resilience-exporter" in board["tags"]


@pytest.mark.parametrize("name", sorted(STABLE_UIDS))
def test_every_query_parses_and_names_only_exported_or_recorded_series(name: str) -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = exported_names() | recorded | PROMETHEUS_OWN
    unknown: set[tuple[str, str]] = set()
    queries = 0
    for panel in panels(boards()[name]):
        for target in panel["targets"]:
            queries += 1
            expr = substitute(target["expr"])
            unknown |= {(panel["title"], n) for n in metric_names(expr) - known}
    assert queries > 0
    assert unknown == set()


def test_an_unknown_metric_name_in_a_panel_is_caught() -> None:
    known = exported_names()
    expr = substitute('rate(resilience_probe_errs_total{job=~"$job"}[$__rate_interval])')
    assert metric_names(expr) - known == {"resilience_probe_errs_total"}
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse(substitute("sum by (target (resilience_up)"))


def test_variables() -> None:
    for board in boards().values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance", "target"], board["uid"]
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name in ("job", "instance", "target"):
            variable = variables[name]
            assert variable["type"] == "query"
            assert variable["multi"] is True
            assert variable["includeAll"] is True
            assert variable["datasource"]["uid"] == "${datasource}"
            assert variable["query"].startswith("label_values(")
            assert variable["query"].endswith(f", {name})")


def test_every_query_is_filtered_by_job_and_instance_and_uses_the_datasource_variable() -> None:
    for board in boards().values():
        uses_target = False
        for panel in panels(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                uses_target |= "$target" in target["expr"]
                for selector in selectors(substitute(target["expr"])):
                    if selector.name == "ALERTS":  # Prometheus' own, e.g. from absent()
                        continue
                    matchers = {(m.name, m.value) for m in selector.matchers.matchers}
                    assert {("job", ".*"), ("instance", ".*")} <= matchers, (
                        board["uid"],
                        panel["title"],
                        target["expr"],
                    )
        assert uses_target, f"{board['uid']}: the target variable filters nothing"


def test_every_panel_has_a_unit_and_a_description() -> None:
    for name, panel in every_panel():
        assert panel["fieldConfig"]["defaults"].get("unit"), (name, panel["title"])
        assert panel.get("description"), (name, panel["title"])


def test_thresholds_are_the_alert_thresholds() -> None:
    alerts = thresholds_yml()
    drawn = 0
    for name, panel in every_panel():
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        values = [step["value"] for step in steps if step["value"] is not None]
        notes = THRESHOLD_NOTE.findall(panel["description"])
        assert len(values) == len(notes), f"{name} {panel['title']}: a step without its alert"
        for (alert, key), value in zip(notes, values, strict=True):
            assert value == alerts[alert][key], (name, panel["title"], alert, key)
            assert any(link["url"].endswith(runbook_anchor(alert)) for link in panel["links"])
            drawn += 1
    assert drawn >= 10


def test_tuning_a_threshold_moves_the_dashboards() -> None:
    default = json.loads(generate.render()["postgres.json"])
    tuned = json.loads(
        generate.render(
            load_thresholds(
                overrides={"alerts": {"ResiliencePostgresLongTransaction": {"seconds": 42}}}
            )
        )["postgres.json"]
    )

    def steps(board: dict[str, Any]) -> list[Any]:
        panel = next(p for p in panels(board) if p["title"] == "Oldest transaction")
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    assert steps(default) == [
        None,
        thresholds_yml()["ResiliencePostgresLongTransaction"]["seconds"],
    ]
    assert steps(tuned) == [None, 42]


def test_links_between_dashboards_and_to_the_runbooks() -> None:
    sections = {runbook_anchor(name) for name in runbook_sections()}
    base = load_thresholds().settings["runbook_base_url"]
    for board in boards().values():
        urls = {link["url"] for link in board["links"]}
        others = {f"/d/{uid}" for uid in STABLE_UIDS.values() if uid != board["uid"]}
        assert others <= urls, board["uid"]
        assert base in urls
        for link in board["links"]:
            if link["url"].startswith("/d/"):
                assert link["includeVars"]
                assert link["keepTime"]
    linked = 0
    for name, panel in every_panel():
        for link in panel.get("links", []):
            url_base, anchor = link["url"].split("#")
            assert url_base == base
            assert anchor in sections, (name, panel["title"], anchor)
            linked += 1
    assert linked >= 20


def test_incident_only_panels_say_so() -> None:
    incident = [
        (name, panel["title"])
        for name, panel in every_panel()
        if generate.INCIDENT_NOTE in panel["description"]
    ]
    assert ("overview.json", "Targets down and why") in incident
    assert ("overview.json", "Firing alerts") in incident


def test_provisioning_files() -> None:
    provisioning = ROOT / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "resilience.yml").read_text())
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((provisioning / "dashboards" / "resilience.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def test_readme_shows_every_dashboard_with_its_preview() -> None:
    readme = (ROOT / "grafana" / "README.md").read_text()
    for name, board in boards().items():
        preview = f"previews/{name.removesuffix('.json')}.png"
        assert board["title"] in readme
        assert f"]({preview})" in readme, preview
        path = ROOT / "grafana" / preview
        assert path.exists(), preview
        assert path.stat().st_size < 300_000, f"{preview} is too large"


def test_preview_renderer_formats_like_grafana() -> None:
    assert (
        render_previews.substitute(
            'rate(x{job=~"$job", target=~"$target"}[$__rate_interval])',
            {"job": "j", "target": "a|b", "__rate_interval": "1m"},
        )
        == 'rate(x{job=~"j", target=~"a|b"}[1m])'
    )
    assert render_previews.legend("{{target}} p95", {"target": "db"}) == "db p95"
    assert render_previews.legend("__auto", {"__name__": "x", "job": "j", "pool": "p"}) == "pool=p"
    assert render_previews.human(0.5, "percentunit") == "50.0%"
    assert render_previews.human(0.002, "s") == "2.0 ms"
    assert render_previews.human(90, "s") == "1.5 min"
    assert render_previews.human(3 * 2**20, "bytes") == "3.0 MiB"
    assert render_previews.human(float("inf"), "s") == "+Inf"
