"""Generate grafana/dashboards/*.json from grafana/boards/ with grafana-foundation-sdk.

    python3 -m grafana.generate            # rewrite grafana/dashboards/*.json
    python3 -m grafana.generate --check    # exit 1 if they differ from the generator's output

`make dashboards` runs it and copies the result into the Helm chart. Thresholds come from
alerts/thresholds.yml (the file the alert rules are rendered from), so a tuned alert moves the
dashboards' threshold lines with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

from alerts.thresholds import Thresholds, load_thresholds
from grafana import boards, spec

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "resilience-exporter"
INCIDENT_NOTE = "Shows data only"
GREEN, YELLOW, RED = "green", "yellow", "red"

MAPPINGS: dict[str, list[tuple[str, str, str]]] = {
    "up_down": [("1", "UP", GREEN), ("0", "DOWN", RED)],
    "breaker_state": [("0", "closed", GREEN), ("1", "half-open", YELLOW), ("2", "open", RED)],
    "pool_health": [("0", "healthy", GREEN), ("1", "degraded", YELLOW), ("2", "exhausted", RED)],
    "streaming": [("1", "streaming", GREEN), ("0", "not streaming", RED)],
    "slot_active": [("1", "active", GREEN), ("0", "inactive", RED)],
    "replay_paused": [("0", "replaying", GREEN), ("1", "paused", YELLOW)],
    "ok_failed": [("1", "OK", GREEN), ("0", "FAILED", RED)],
}


class DashboardError(ValueError):
    """The dashboards' content refers to something that does not exist."""


def threshold_value(thresholds: Thresholds, threshold: spec.Threshold) -> float:
    try:
        value = thresholds.alerts[threshold.alert][threshold.key]
    except KeyError as err:
        raise DashboardError(
            f"alerts/thresholds.yml has no {threshold.alert}.{threshold.key}"
        ) from err
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DashboardError(f"{threshold.alert}.{threshold.key} is not a number: {value!r}")
    return float(value)


def description(panel: spec.Panel, thresholds: Thresholds) -> str:
    text = panel.description
    if panel.threshold is not None:
        value = threshold_value(thresholds, panel.threshold)
        text += (
            f" Threshold: `{panel.threshold.alert}.{panel.threshold.key}` = {value:g}"
            " from alerts/thresholds.yml."
        )
    if panel.incident is not None:
        text += f" {INCIDENT_NOTE} {panel.incident}."
    return text


def steps(panel: spec.Panel, thresholds: Thresholds) -> list[model.Threshold]:
    if panel.threshold is None:
        return [model.Threshold(value=None, color=GREEN)]
    value = threshold_value(thresholds, panel.threshold)
    if panel.threshold.direction == "below":
        return [model.Threshold(value=None, color=RED), model.Threshold(value=value, color=GREEN)]
    return [model.Threshold(value=None, color=GREEN), model.Threshold(value=value, color=RED)]


def mappings(panel: spec.Panel) -> list[model.ValueMapping]:
    if panel.mapping is None:
        return []
    options = {
        value: model.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, text, color) in enumerate(MAPPINGS[panel.mapping])
    }
    return [model.ValueMap(options=options)]


def query(ref_id: str, q: spec.Query) -> prometheus.Dataquery:
    built = (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .expr(q.expr)
        .legend_format(q.legend or "__auto")
        .format(prometheus_model.PromQueryFormat(q.format))
    )
    return built.instant() if q.instant else built.range()


PanelBuilder = (
    timeseries.Panel
    | stat.Panel
    | statetimeline.Panel
    | heatmap.Panel
    | bargauge.Panel
    | table.Panel
)


def visualisation(panel: spec.Panel) -> PanelBuilder:
    match panel.kind:
        case "timeseries":
            series = (
                timeseries.Panel()
                .fill_opacity(10)
                .legend(
                    common.VizLegendOptions()
                    .show_legend(True)
                    .display_mode(common_model.LegendDisplayMode.TABLE)
                    .placement(common_model.LegendPlacement.BOTTOM)
                    .calcs(["lastNotNull", "max"])
                )
                .thresholds_style(
                    common.GraphThresholdsStyleConfig().mode(
                        common_model.GraphThresholdsStyleMode.DASHED
                        if panel.threshold is not None
                        else common_model.GraphThresholdsStyleMode.OFF
                    )
                )
            )
            if panel.stacked:
                series = series.stacking(
                    common.StackingConfig().mode(common_model.StackingMode.NORMAL)
                ).fill_opacity(40)
            return series
        case "stat":
            return (
                stat.Panel()
                .graph_mode(common_model.BigValueGraphMode.AREA)
                .color_mode(common_model.BigValueColorMode.VALUE)
                .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            )
        case "state":
            return (
                statetimeline.Panel()
                .show_value(common_model.VisibilityMode.AUTO)
                .merge_values(True)
                .fill_opacity(80)
            )
        case "heatmap":
            return (
                heatmap.Panel()
                .calculate(False)
                .color(heatmap.HeatmapColorOptions().scheme("Oranges").steps(64))
                .y_axis(heatmap.YAxisConfig().unit(panel.unit))
            )
        case "bargauge":
            return (
                bargauge.Panel()
                .display_mode(common_model.BarGaugeDisplayMode.GRADIENT)
                .orientation(common_model.VizOrientation.HORIZONTAL)
                .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            )
        case "table":
            return table.Panel()


def build_panel(panel: spec.Panel, panel_id: int, thresholds: Thresholds) -> PanelBuilder:
    built = visualisation(panel)
    refs = "ABCDEFGHIJ"
    built = (
        built.id(panel_id)
        .title(panel.title)
        .description(description(panel, thresholds))
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(panel.height)
        .thresholds(
            builder.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps(steps(panel, thresholds))
        )
        .targets([query(refs[i], q) for i, q in enumerate(panel.queries)])
    )
    if panel.mapping is not None:
        built = built.mappings(mappings(panel))
    if panel.kind in ("stat", "state", "bargauge") or panel.threshold is not None:
        built = built.color_scheme(builder.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    if panel.minimum is not None:
        built = built.min(panel.minimum)
    if panel.maximum is not None:
        built = built.max(panel.maximum)
    links: list[Builder[model.DashboardLink]] = [
        builder.DashboardLink(f"Runbook: {alert}")
        .type(model.DashboardLinkType.LINK)
        .url(thresholds.runbook_url(alert))
        .target_blank(True)
        for alert in panel.runbook_alerts()
    ]
    if links:
        built = built.links(links)
    return built


def variable(name: str, label: str, query_text: str) -> builder.QueryVariable:
    return (
        builder.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query_text)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def dashboard_links(
    board: spec.Dashboard, boards: Sequence[spec.Dashboard], thresholds: Thresholds
) -> list[Builder[model.DashboardLink]]:
    links: list[Builder[model.DashboardLink]] = [
        builder.DashboardLink(other.title)
        .type(model.DashboardLinkType.LINK)
        .url(f"/d/{other.uid}")
        .icon("dashboard")
        .include_vars(True)
        .keep_time(True)
        for other in boards
        if other.uid != board.uid
    ]
    links.append(
        builder.DashboardLink("Runbooks")
        .type(model.DashboardLinkType.LINK)
        .url(str(thresholds.settings["runbook_base_url"]))
        .icon("doc")
        .target_blank(True)
    )
    return links


def build(
    board: spec.Dashboard, boards: Sequence[spec.Dashboard], thresholds: Thresholds
) -> dict[str, Any]:
    dash = (
        builder.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags([TAG, *board.tags])
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(
            builder.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(variable("job", "Job", "label_values(resilience_exporter_build_info, job)"))
        .with_variable(
            variable(
                "instance",
                "Exporter",
                'label_values(resilience_exporter_build_info{job=~"$job"}, instance)',
            )
        )
        .with_variable(
            variable("target", "Target", f"label_values({board.target_selector}, target)")
        )
        .links(dashboard_links(board, boards, thresholds))
    )
    panel_id = 1
    for row in board.rows:
        dash = dash.with_row(builder.Row(row.title).id(panel_id))
        panel_id += 1
        for panel in row.panels:
            dash = dash.with_panel(build_panel(panel, panel_id, thresholds))
            panel_id += 1
    encoded: dict[str, Any] = json.loads(json.dumps(dash.build(), cls=JSONEncoder))
    return encoded


def render(thresholds: Thresholds | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    thresholds = thresholds or load_thresholds()
    dashboards = boards.dashboards(thresholds)
    uids = [board.uid for board in dashboards]
    if len(set(uids)) != len(uids):
        raise DashboardError(f"duplicate dashboard uids: {uids}")
    return {
        board.file_name: json.dumps(build(board, dashboards, thresholds), indent=2, sort_keys=True)
        + "\n"
        for board in dashboards
    }


def stale_files(out_dir: Path, rendered: Mapping[str, str]) -> list[str]:
    """Files in out_dir that differ from `rendered`, are missing, or should not be there."""
    found = [
        name
        for name, text in rendered.items()
        if not (out_dir / name).exists() or (out_dir / name).read_text() != text
    ]
    found += sorted(p.name for p in out_dir.glob("*.json") if p.name not in rendered)
    return found


def write(out_dir: Path, rendered: Mapping[str, str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in out_dir.glob("*.json"):
        if path.name not in rendered:
            path.unlink()
    for name, text in rendered.items():
        (out_dir / name).write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR)
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = stale_files(args.out, rendered)
        for name in stale:
            print(f"{args.out / name}: out of date", file=sys.stderr)
        if stale:
            print("run `make dashboards`", file=sys.stderr)
        return 1 if stale else 0
    write(args.out, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
