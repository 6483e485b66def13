"""Render a PNG preview of each dashboard from the same queries, against a live Prometheus.

Grafana is not installable where the tests run, so this draws each panel with matplotlib at
its grid position: time series as lines (with the alert threshold dashed), stats as big
numbers, state timelines as coloured bands, heatmaps as heatmaps, bar gauges as bars, tables
as text. It reads the generated JSON, so it shows exactly what the dashboards query.

    python3 -m grafana.render_previews --prometheus http://127.0.0.1:9090 \\
        --job resilience-exporter --out grafana/previews

`make previews` renders them from the end-to-end test's stack
(tests/tooling/test_dashboards_e2e.py).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image

from grafana.generate import DASHBOARDS_DIR

GRID_COLUMNS = 24
INCH_PER_GRID_ROW = 0.28
FIGURE_WIDTH = 16.0
DPI = 60
RANGE_SECONDS = 180
STEP_SECONDS = 2
MAX_SERIES = 8
COLORS = {"green": "#56a64b", "yellow": "#e0b400", "red": "#e02f44"}
Series = list[tuple[dict[str, str], list[tuple[float, float]]]]


class PreviewError(RuntimeError):
    """Prometheus refused a query or could not be reached."""


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """The query as Grafana would send it: `$name` replaced, longest names first."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${name}", values[name])
    return expr


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        full = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(full, timeout=10) as response:
                body = json.loads(response.read())
        except OSError as err:
            raise PreviewError(f"{path} {params.get('query')}: {err}") from err
        if body.get("status") != "success":
            raise PreviewError(f"{path} {params.get('query')}: {body}")
        return body["data"]["result"]

    def instant(self, expr: str) -> Series:
        return [
            (sample["metric"], [(float(sample["value"][0]), float(sample["value"][1]))])
            for sample in self._get("query", {"query": expr})
        ]

    def range(self, expr: str, end: float) -> Series:
        params = {
            "query": expr,
            "start": str(end - RANGE_SECONDS),
            "end": str(end),
            "step": str(STEP_SECONDS),
        }
        return [
            (sample["metric"], [(float(t), float(v)) for t, v in sample["values"]])
            for sample in self._get("query_range", params)
        ]


def legend(template: str, labels: Mapping[str, str]) -> str:
    if not template or template == "__auto":
        shown = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def human(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit in ("bytes", "Bps"):
        suffix = "/s" if unit == "Bps" else ""
        for size, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= size:
                return f"{value / size:.1f} {name}{suffix}"
        return f"{value:.0f} B{suffix}"
    if unit == "s":
        if abs(value) >= 86400:
            return f"{value / 86400:.1f} d"
        if abs(value) >= 60:
            return f"{value / 60:.1f} min"
        if abs(value) >= 1 or value == 0:
            return f"{value:.2f} s"
        return f"{value * 1000:.1f} ms"
    if unit == "dateTimeAsIso":
        return time.strftime("%H:%M:%S", time.gmtime(value / 1000))
    suffix = {"ops": " ops/s", "pps": " p/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def mapping_of(panel: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        for value, result in mapping.get("options", {}).items():
            found[value] = (result.get("text", value), COLORS.get(result.get("color"), "grey"))
    return found


def threshold_steps(panel: Mapping[str, Any]) -> list[tuple[float, str]]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [(float(s["value"]), s["color"]) for s in steps if s["value"] is not None]


def value_colour(panel: Mapping[str, Any], value: float) -> str:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    colour = steps[0]["color"]
    for step in steps[1:]:
        if value >= step["value"]:
            colour = step["color"]
    return COLORS.get(colour, "#3274d9")


def draw_timeseries(ax: Axes, panel: Mapping[str, Any], results: list[tuple[str, Series]]) -> None:
    unit = panel["fieldConfig"]["defaults"]["unit"]
    drawn = 0
    for template, series in results:
        for labels, points in series[:MAX_SERIES]:
            xs = [t - points[-1][0] for t, _ in points]
            ax.plot(xs, [v for _, v in points], linewidth=1.2, label=legend(template, labels))
            drawn += 1
    for value, colour in threshold_steps(panel):
        ax.axhline(value, color=COLORS.get(colour, "red"), linestyle="--", linewidth=1)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v, unit)))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("seconds before now", fontsize=7)
    if drawn:
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)


def draw_stat(ax: Axes, panel: Mapping[str, Any], results: list[tuple[str, Series]]) -> None:
    unit = panel["fieldConfig"]["defaults"]["unit"]
    mapping = mapping_of(panel)
    items = [
        (legend(template, labels), points[-1][1])
        for template, series in results
        for labels, points in series
    ][:4]
    ax.axis("off")
    for index, (name, value) in enumerate(items):
        text, colour = mapping.get(f"{value:g}", (human(value, unit), value_colour(panel, value)))
        x = (index + 0.5) / len(items)
        ax.text(x, 0.45, text, ha="center", va="center", fontsize=20, color=colour, weight="bold")
        ax.text(x, 0.1, name, ha="center", va="center", fontsize=7)


def draw_state(ax: Axes, panel: Mapping[str, Any], results: list[tuple[str, Series]]) -> None:
    mapping = mapping_of(panel)
    rows = [
        (legend(template, labels), points)
        for template, series in results
        for labels, points in series
    ][:MAX_SERIES]
    for index, (_, points) in enumerate(rows):
        end = points[-1][0]
        for t, v in points:
            _, colour = mapping.get(f"{v:g}", (str(v), "grey"))
            ax.broken_barh(
                [(t - end - STEP_SECONDS, STEP_SECONDS)], (index + 0.1, 0.8), color=colour
            )
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [name for name, _ in rows], fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("seconds before now", fontsize=7)
    labels = ", ".join(f"{text}" for text, _ in mapping.values())
    ax.set_title(f"({labels})", fontsize=7, loc="right")


def draw_heatmap(ax: Axes, panel: Mapping[str, Any], results: list[tuple[str, Series]]) -> None:
    buckets = sorted(
        (float(labels.get("le", "inf")), points)
        for _, series in results
        for labels, points in series
    )
    if not buckets:
        return
    width = min(len(points) for _, points in buckets)
    previous = [0.0] * width
    matrix = []
    for _, points in buckets:  # cumulative buckets -> counts per bucket
        values = [v if not math.isnan(v) else 0.0 for _, v in points[-width:]]
        matrix.append([max(v - p, 0.0) for v, p in zip(values, previous, strict=True)])
        previous = values
    ax.imshow(matrix, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest")
    unit = panel["fieldConfig"]["defaults"]["unit"]
    ax.set_yticks(range(len(buckets)), [human(le, unit) for le, _ in buckets], fontsize=6)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("time →", fontsize=7)


def draw_bargauge(ax: Axes, panel: Mapping[str, Any], results: list[tuple[str, Series]]) -> None:
    unit = panel["fieldConfig"]["defaults"]["unit"]
    items = [
        (legend(template, labels), points[-1][1])
        for template, series in results
        for labels, points in series
    ][:MAX_SERIES]
    names = [name for name, _ in items]
    values = [value for _, value in items]
    ax.barh(names, values, color=[value_colour(panel, v) for v in values])
    for index, value in enumerate(values):
        ax.text(value, index, f" {human(value, unit)}", va="center", fontsize=8)
    maximum = panel["fieldConfig"]["defaults"].get("max")
    if maximum is not None:
        ax.set_xlim(0, maximum)
    ax.tick_params(labelsize=7)


def draw_table(ax: Axes, panel: Mapping[str, Any], results: list[tuple[str, Series]]) -> None:
    ax.axis("off")
    unit = panel["fieldConfig"]["defaults"]["unit"]
    lines = []
    for _, series in results:
        for labels, points in series[:MAX_SERIES]:
            shown = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")}
            cells = [f"{k}={v}" for k, v in sorted(shown.items())]
            if unit != "none":
                cells.append(human(points[-1][1], unit))
            lines.append("  ".join(cells))
    text = "\n".join(lines[:MAX_SERIES]) if lines else "(no rows now)"
    ax.text(0.01, 0.95, text, va="top", ha="left", fontsize=7, family="monospace")


DRAW: dict[str, Callable[[Axes, Mapping[str, Any], list[tuple[str, Series]]], None]] = {
    "timeseries": draw_timeseries,
    "stat": draw_stat,
    "state-timeline": draw_state,
    "heatmap": draw_heatmap,
    "bargauge": draw_bargauge,
    "table": draw_table,
}
RANGE_PANELS = {"timeseries", "state-timeline", "heatmap"}


def render_dashboard(
    board: Mapping[str, Any], prometheus: Prometheus, values: Mapping[str, str], out: Path
) -> Path:
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    height = bottom * INCH_PER_GRID_ROW + 0.6
    figure = Figure(figsize=(FIGURE_WIDTH, height), dpi=DPI)
    figure.suptitle(board["title"], fontsize=14, x=0.01, ha="left", y=1 - 0.15 / height)
    top_margin = 0.6 / height
    end = time.time()

    def box(grid: Mapping[str, int]) -> tuple[float, float, float, float]:
        x = grid["x"] / GRID_COLUMNS
        w = grid["w"] / GRID_COLUMNS
        y_top = top_margin + (1 - top_margin) * grid["y"] / bottom
        h = (1 - top_margin) * grid["h"] / bottom
        return x, 1 - y_top - h, w, h

    for panel in board["panels"]:
        x, y, w, h = box(panel["gridPos"])
        if panel["type"] == "row":
            figure.text(x + 0.005, y + h / 2, panel["title"], fontsize=11, weight="bold")
            continue
        # Leave room for the title, the axis labels and the gap between panels.
        pad_x = 0.08 if panel["type"] in ("state-timeline", "bargauge") else 0.035
        pad_top, pad_bottom = 0.3 / height, 0.35 / height
        ax = figure.add_axes(
            (x + pad_x, y + pad_bottom, w - pad_x - 0.01, h - pad_top - pad_bottom)
        )
        ax.set_title(panel["title"], fontsize=9, loc="left")
        results = []
        for target in panel["targets"]:
            expr = substitute(target["expr"], values)
            if panel["type"] in RANGE_PANELS and not target.get("instant"):
                series = prometheus.range(expr, end)
            else:
                series = prometheus.instant(expr)
            results.append((target.get("legendFormat", ""), series))
        if not any(series for _, series in results):
            ax.axis("off")
            ax.text(0.5, 0.5, "no data now", ha="center", va="center", fontsize=9, color="grey")
            continue
        DRAW[panel["type"]](ax, panel, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    drawn = io.BytesIO()
    figure.savefig(drawn, dpi=DPI, format="png")
    # 256 colours lose nothing visible on these charts and two thirds of the bytes.
    Image.open(drawn).convert("RGB").quantize(colors=256).save(out, format="PNG", optimize=True)
    return out


def render_all(
    *,
    prometheus_url: str,
    values_for: Callable[[str], Mapping[str, str]],
    out_dir: Path,
    dashboards_dir: Path = DASHBOARDS_DIR,
) -> list[Path]:
    """One PNG per dashboard JSON, named after it; `values_for(file name)` gives the
    dashboard's variable values (job, instance, target, __rate_interval)."""
    prometheus = Prometheus(prometheus_url)
    return [
        render_dashboard(
            json.loads(path.read_text()),
            prometheus,
            values_for(path.name),
            out_dir / path.name.replace(".json", ".png"),
        )
        for path in sorted(dashboards_dir.glob("*.json"))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL of Prometheus")
    parser.add_argument("--job", default=".*", help="value of $job (a regex)")
    parser.add_argument("--instance", default=".*", help="value of $instance (a regex)")
    parser.add_argument("--target", default=".*", help="value of $target (a regex)")
    parser.add_argument("--rate-interval", default="1m", help="value of $__rate_interval")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "previews")
    args = parser.parse_args(argv)
    values = {
        "job": args.job,
        "instance": args.instance,
        "target": args.target,
        "__rate_interval": args.rate_interval,
    }
    for path in render_all(
        prometheus_url=args.prometheus, values_for=lambda _: values, out_dir=args.out
    ):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
