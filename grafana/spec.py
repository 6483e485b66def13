"""What the dashboards show, independent of Grafana's JSON: each panel's queries, unit, the
alert threshold it draws and whether it only has data during incidents.

`grafana/generate.py` turns these into dashboards with grafana-foundation-sdk; the renderer
of the preview images and the tests read the generated JSON, not this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PanelKind = Literal["timeseries", "stat", "state", "heatmap", "bargauge", "table"]
Mapping = Literal[
    "up_down",
    "breaker_state",
    "pool_health",
    "streaming",
    "slot_active",
    "replay_paused",
    "ok_failed",
]
Direction = Literal["above", "below"]

# Label matchers every query carries: the dashboard's job and instance variables.
SCRAPE = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    expr: str
    legend: str = ""
    # "heatmap" for histogram buckets, "table" for tables; default time series.
    format: Literal["time_series", "heatmap", "table"] = "time_series"
    instant: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """The panel draws the value `alerts.<alert>.<key>` of alerts/thresholds.yml."""

    alert: str
    key: str
    # "above": the alert fires above the value (green below, red from it on);
    # "below": it fires below the value (red below, green from it on).
    direction: Direction = "above"


@dataclass(frozen=True, slots=True, kw_only=True)
class Panel:
    title: str
    kind: PanelKind
    queries: tuple[Query, ...]
    unit: str
    description: str
    threshold: Threshold | None = None
    # Alerts whose runbook the panel links to (the threshold's alert is added).
    alerts: tuple[str, ...] = ()
    mapping: Mapping | None = None
    # Set when the panel has data only during an incident: a short description of which.
    incident: str | None = None
    width: int = 12
    height: int = 8
    minimum: float | None = None
    maximum: float | None = None
    stacked: bool = False

    def runbook_alerts(self) -> tuple[str, ...]:
        found = list(self.alerts)
        if self.threshold is not None and self.threshold.alert not in found:
            found.insert(0, self.threshold.alert)
        return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    uid: str
    title: str
    file_name: str
    description: str
    # The selector the `target` variable takes its values from.
    target_selector: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=())

    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]
