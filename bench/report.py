"""Markdown and JSON for a benchmark run; every number in them comes from the run's dict."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
NOISE = (
    "Numbers from a 2-core VM, one run: timings vary from run to run by tens of percent. "
    "Load average at the end of the run: {load}."
)


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _down(step: dict[str, Any]) -> str:
    """How many targets were down at the end of a scale step, and why (`resilience_up`'s
    reason)."""
    reasons = ", ".join(f"{r} {n}" for r, n in step["targets_down_by_reason"].items())
    return f"{step['targets_down_at_end']}" + (f" ({reasons})" if reasons else "")


def _when(result: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result["started_at"]))


def _load(result: dict[str, Any]) -> str:
    return ", ".join(_fmt(x) for x in result["load_average_at_end"])


def compare_markdown(result: dict[str, Any], command: str) -> str:
    o = result["options"]
    out = [
        f"# resilience-exporter vs the peer exporters ({_when(result)})",
        "",
        f"Command: `{command}`. " + NOISE.format(load=_load(result)),
        "",
        f"Latency: {result['exporters']['resilience-exporter']['scrapes']} scrapes of each "
        f"exporter at {o['rate']:g} rounds/s (one exporter after another in each round), each "
        "with Prometheus' own headers (`Accept: application/openmetrics-text;version=1.0.0,...`, "
        "`Accept-Encoding: gzip`): each exporter answers in the format and encoding it "
        "chooses, the time to read the whole answer is measured. The plain-text column: a fifth "
        'as many scrapes asking for `text/plain;version=0.0.4` without gzip. CPU "loaded" over '
        f'the first phase; CPU "steady" over {o["steady_seconds"]:g} s with one scrape every '
        f"{o['interval']:g} s, our probe interval. RSS at the end, from /proc.",
        "",
        "| exporter | covers | /metrics p50 ms | p99 ms | CPU s/min loaded | CPU s/min steady "
        "| RSS MiB | series | bytes/scrape | bytes on the wire | plain text p50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["exporters"].items():
        out.append(
            f"| {name} | {r['replaces']} | {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} "
            f"| {_fmt(r['cpu_seconds_per_minute_loaded'], 3)} "
            f"| {_fmt(r['cpu_seconds_per_minute_steady'], 3)} | {_fmt(r['rss_bytes'] / MIB, 1)} "
            f"| {r['series']} | {r['bytes_per_scrape']} | {r['wire_bytes_per_scrape']} "
            f"| {_fmt(r['plain_p50_ms'])} |"
        )
    for peer, why in result["missing"].items():
        out.append(f"| {peer} | | {why} | | | | | | | | |")
    out += ["", "Peers: " + "; ".join(
        f"{n}: {r['note']}" for n, r in result["exporters"].items() if r["note"]
    ) + ".", ""]  # fmt: skip

    out += ["## Ratios (ours / peer)", "",
            "| ratio | p50 | p99 | CPU loaded | CPU steady | RSS | series | bytes "
            "| plain text p50 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    keys = ("p50_ms", "p99_ms", "cpu_seconds_per_minute_loaded", "cpu_seconds_per_minute_steady",
            "rss_bytes", "series", "bytes_per_scrape", "plain_p50_ms")  # fmt: skip
    for name, r in result["ratios"].items():
        cells = [_fmt(r[k], 3) if k in r else "" for k in keys]
        out.append(f"| {name} | " + " | ".join(cells) + " |")

    out += ["", "## Probe round trip vs the floor (same run, interleaved)", "",
            "Our whole probe (`probe()` of the kind, through its own pool) against the floor on an "
            "already open connection, and against the probe's own statements replayed bare on "
            "that connection (what we ask the server, without our code around it).", "",
            "| kind | probe p50 ms | p99 ms | floor | floor p50 ms | p99 ms | probe / floor "
            "| round trips | bare statements p50 ms | probe / bare |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for kind, r in result["probe_overhead"].items():
        out.append(
            f"| {kind} | {_fmt(r['probe_p50_ms'], 3)} | {_fmt(r['probe_p99_ms'], 3)} "
            f"| `{r['floor_query']}` | {_fmt(r['floor_p50_ms'], 3)} "
            f"| {_fmt(r['floor_p99_ms'], 3)} | {_fmt(r['ratio_p50'])} "
            f"| {r['probe_round_trips']} | {_fmt(r['bare_statements_p50_ms'], 3)} "
            f"| {_fmt(r['ratio_p50_to_bare'])} |"
        )
    out += ["", "## Targets", ""]
    out += [f"- {line}" for line in compare_verdicts(result)]
    return "\n".join(out) + "\n"


def compare_verdicts(result: dict[str, Any]) -> list[str]:
    ours = result["exporters"]["resilience-exporter"]
    lines = []
    pg = result["exporters"].get("postgres_exporter")
    if pg:
        ratio = ours["p50_ms"] / pg["p50_ms"]
        lines.append(
            f"/metrics p50 ≤ 1/5 of postgres_exporter's, with Prometheus' headers: "
            f"{_fmt(ratio, 3)}x → " + ("met" if ratio <= 0.2 else "missed")
        )
    sums = result["ratios"]["ours / sum of peers"]
    summed = (
        ("cpu_seconds_per_minute_steady", "CPU (steady)"),
        ("cpu_seconds_per_minute_loaded", "CPU (loaded)"),
        ("rss_bytes", "RSS"),
    )
    for key, label in summed:
        if key in sums:
            lines.append(
                f"{label} ≤ sum of the peers measured: {_fmt(sums[key], 3)}x → "
                + ("met" if sums[key] <= 1 else "missed")
            )
    for kind, r in result["probe_overhead"].items():
        lines.append(
            f"{kind} probe p50 ≤ 1.5x floor: {_fmt(r['ratio_p50'])}x → "
            + ("met" if r["ratio_p50"] <= 1.5 else "missed")
            + f" ({r['probe_round_trips']} round trip(s); "
            f"{_fmt(r['ratio_p50_to_bare'])}x the same statements sent bare)"
        )
    if result["missing"]:
        lines.append(
            "Not measured in this run: " + ", ".join(result["missing"]) + " (kind not available)"
        )
    return lines


def scale_markdown(result: dict[str, Any], command: str) -> str:
    out = [
        f"# resilience-exporter at scale ({_when(result)})",
        "",
        f"Command: `{command}`. " + NOISE.format(load=_load(result)),
        "",
        f"PostgreSQL targets on one server ({result['databases']} databases, targets spread over "
        f"them), interval {result['interval']:g} s, measured over {result['cycles']} intervals "
        f"after the first round; /metrics scraped {result['scrape_rate']:g}/s meanwhile. "
        + (
            "The exporter is pinned to CPU 0 (one core), PostgreSQL to the other CPUs."
            if result["pinned"]
            else "Nothing pinned: the exporter shares the CPUs with PostgreSQL's backends."
        ),
        "",
        "| targets | first round done after s | every cycle in its interval | max staleness s "
        "| probes/target | targets down at the end | CPU s/min | CPU ms/min per target | RSS MiB "
        "| RSS KiB per target | /metrics p50 ms | p99 ms | bytes/scrape |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["steps"]:
        out.append(
            f"| {r['targets']} | {_fmt(r['seconds_to_ready'], 1)} "
            f"| {'yes' if r['all_cycles_in_interval'] else 'NO'} "
            f"| {_fmt(r['max_staleness_seconds'])} | {_fmt(r['probes_per_target_min'], 0)}"
            f"-{_fmt(r['probes_per_target_max'], 0)} | {_down(r)} "
            f"| {_fmt(r['cpu_seconds_per_minute'], 3)} "
            f"| {_fmt(r['cpu_seconds_per_minute'] * 1000 / r['targets'], 2)} "
            f"| {_fmt(r['rss_bytes'] / MIB, 1)} | {_fmt(r['rss_bytes'] / 1024 / r['targets'], 1)} "
            f"| {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} | {r['bytes_per_scrape']} |"
        )
    out += [
        "",
        "A cycle is inside its interval when every target kept its schedule: none down at the end, "
        "each target probed at least (measured seconds / interval) - 1 times, and no target's "
        "last success older than interval + timeout at the end.",
        "",
        "![cost against targets](scale.png)",
    ]
    return "\n".join(out) + "\n"


def fleet_markdown(result: dict[str, Any], command: str, *, image: str) -> str:
    o = result["options"]
    prom = result["prometheus_scrape_seconds"]
    extra = result["extra_scrape_ms"]
    stale = result["staleness_seconds"]
    down = result.get("targets_down_by_kind_and_reason", {})
    timeout = min(5.0, o["interval"])
    out = [
        f"# A fleet scraped by Prometheus ({_when(result)})",
        "",
        f"Command: `{command}`. " + NOISE.format(load=_load(result)),
        "",
        f"{o['targets']} targets ({o['targets'] - o['postgres_targets']} Redis over "
        f"{result['redis_servers']} Redis servers, {o['postgres_targets']} PostgreSQL), probed "
        f"every {o['interval']:g} s by {o['shards']} exporter process(es)"
        + (" pinned to CPU 0" if result["pinned"] else "")
        + f", scraped by Debian's Prometheus every {o['interval']:g} s (its own headers: "
        "OpenMetrics, gzip) and by a client asking "
        f"{o['extra_scrape_rate']:g} times a second with the same headers; measured over "
        f"{result['measured_seconds'] / 60:.1f} minutes after the first round of probes "
        f"({result['seconds_to_ready']:.0f} s).",
        "",
        "| what | value |",
        "|---|---:|",
        f"| Prometheus scrapes (failed) | {result['prometheus_scrapes']} "
        f"({result['prometheus_scrapes_failed']}) |",
        f"| Prometheus `scrape_duration_seconds` p50 / p99 / max | {_fmt(prom['p50'], 3)} / "
        f"{_fmt(prom['p99'], 3)} / {_fmt(prom['max'], 3)} s |",
        "| the same, max leaving out each exporter's first two scrapes (they create the series "
        f"in Prometheus) | {_fmt(prom['max_after_two_scrapes'], 3)} s |",
        f"| samples per scrape | {result['samples_per_scrape']:.0f} |",
        f"| extra client's scrapes p50 / p99 | {_fmt(extra['p50_ms'], 1)} / "
        f"{_fmt(extra['p99_ms'], 1)} ms |",
        f"| targets seen by Prometheus / up | {result['targets_seen']} / {result['targets_up']} |",
        "| targets down at the end, by kind/reason | "
        + (", ".join(f"{k}: {n}" for k, n in sorted(down.items())) or "none")
        + " |",
        f"| staleness when scraped (age of the last success) p50 / max | "
        f"{_fmt(stale['p50'], 1)} / {_fmt(stale['max'], 1)} s |",
        f"| scraped samples older than interval + timeout ({o['interval'] + timeout:g} s) "
        f"| {stale['stale_samples']} of {stale['samples']} |",
        f"| exporter CPU (all processes) | {_fmt(result['cores'], 3)} cores |",
        f"| exporter RSS (all processes) | {_fmt(result['rss_bytes'] / MIB, 1)} MiB |",
        f"| cost per target | {_fmt(result['cpu_ms_per_target_per_minute'], 2)} CPU ms/min, "
        f"{_fmt(result['rss_kib_per_target'], 1)} KiB |",
        "",
        "| process | CPU cores | RSS start / end / max MiB | extra scrapes p50 / p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for name, r in result["exporters"].items():
        latency = f"{_fmt(r['p50_ms'], 1)} / {_fmt(r['p99_ms'], 1)}" if "p50_ms" in r else "none"
        out.append(
            f"| {name} | {_fmt(r['cores'], 3)} | {_fmt(r['rss_bytes_start'] / MIB, 1)} / "
            f"{_fmt(r['rss_bytes_end'] / MIB, 1)} / {_fmt(r['rss_bytes_max'] / MIB, 1)} "
            f"| {latency} |"
        )
    out += ["", f"![RSS and CPU over time]({image})"]
    return "\n".join(out) + "\n"


def write(result: dict[str, Any], markdown: str, out_dir: Path, stem: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
