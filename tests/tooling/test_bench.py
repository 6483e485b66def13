"""Smoke test of the benchmark machinery on a tiny run against the real servers and the real
peer exporters (`make peers` installs them). Timings are never asserted: only that every
number the report needs is there, and positive."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench import compare, fleet, harness, report, scale
from scripts.testservers.base import wait_until

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

POSITIVE_PER_EXPORTER = (
    "p50_ms", "p99_ms", "mean_ms", "rss_bytes", "series", "bytes_per_scrape", "scrapes",
    "wire_bytes_per_scrape", "plain_p50_ms",
)  # fmt: skip


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_compare_report_has_every_exporter_and_number(tmp_path: Path) -> None:
    options = compare.Options(
        scrapes=20, rate=20.0, steady_seconds=2.0, interval=1.0, probe_rounds=10
    )
    result = compare.run(options, tmp_path)

    exporters = result["exporters"]
    assert {"resilience-exporter", "postgres_exporter", "node_exporter"} <= exporters.keys()
    for peer, kind in compare.PEER_KINDS.items():
        # each peer is either measured or said not to be, with the reason
        assert (peer in exporters) != (peer in result["missing"]), peer
        if peer in result["missing"]:
            assert result["missing"][peer] == "not measured: kind not available"
            assert kind in ("redis", "pgbouncer")
    for name, row in exporters.items():
        assert row["scrapes"] == 20, name
        assert row["scrape_errors"] == 0, name
        for key in POSITIVE_PER_EXPORTER:
            assert positive(row[key]), (name, key, row[key])
        assert row["cpu_seconds_per_minute_loaded"] >= 0
        assert row["cpu_seconds_per_minute_steady"] >= 0
        assert row["p99_ms"] >= row["p50_ms"]
    assert "postgres" in result["probe_overhead"]
    for kind, overhead in result["probe_overhead"].items():
        for key in ("probe_p50_ms", "probe_p99_ms", "floor_p50_ms", "floor_p99_ms", "ratio_p50"):
            assert positive(overhead[key]), (kind, key)
    ratios = result["ratios"]
    assert set(ratios) == {f"ours / {p}" for p in exporters if p != "resilience-exporter"} | {
        "ours / sum of peers"
    }
    assert positive(ratios["ours / sum of peers"]["rss_bytes"])
    assert positive(ratios["ours / postgres_exporter"]["p50_ms"])

    markdown = report.compare_markdown(result, "make bench")
    report.write(result, markdown, tmp_path / "results", "compare")
    assert json.loads((tmp_path / "results" / "compare.json").read_text()) == json.loads(
        json.dumps(result)
    )
    text = (tmp_path / "results" / "compare.md").read_text()
    for name in exporters:
        assert f"| {name} |" in text
    for peer in result["missing"]:
        assert f"| {peer} | | not measured: kind not available |" in text
    assert "Command: `make bench`" in text
    assert "## Targets" in text


def test_scale_report_and_plot(tmp_path: Path) -> None:
    options = scale.Options(targets=(3, 6), interval=1.0, cycles=2, databases=2, scrape_rate=5.0)
    result = scale.run(options, tmp_path)

    assert [step["targets"] for step in result["steps"]] == [3, 6]
    for step in result["steps"]:
        for key in ("cpu_seconds_per_minute", "rss_bytes", "p50_ms", "p99_ms",
                    "bytes_per_scrape", "measured_seconds", "max_staleness_seconds"):  # fmt: skip
            assert positive(step[key]), (step["targets"], key)
        assert isinstance(step["all_cycles_in_interval"], bool)
        assert step["probes_per_target_max"] >= step["probes_per_target_min"] >= 0
        assert sum(step["targets_down_by_reason"].values()) == step["targets_down_at_end"]
    markdown = report.scale_markdown(result, "make bench-scale")
    report.write(result, markdown, tmp_path / "results", "scale")
    scale.plot(result, tmp_path / "results" / "scale.png")
    assert (tmp_path / "results" / "scale.png").read_bytes().startswith(b"\x89PNG")
    assert "| 3 |" in (tmp_path / "results" / "scale.md").read_text()


def test_fleet_report_and_plot(tmp_path: Path) -> None:
    options = fleet.Options(
        targets=12, postgres_targets=2, shards=2, interval=2.0, minutes=0.3, extra_scrape_rate=4
    )
    result = fleet.run(options, tmp_path)

    assert result["prometheus_scrapes"] > 0
    assert result["targets_seen"] == 12
    for key in ("cores", "rss_bytes", "cpu_ms_per_target_per_minute", "rss_kib_per_target"):
        assert positive(result[key]), key
    assert positive(result["prometheus_scrape_seconds"]["max"])
    assert positive(result["extra_scrape_ms"]["p50_ms"])
    assert set(result["exporters"]) == {"resilience-exporter-0", "resilience-exporter-1"}
    markdown = report.fleet_markdown(result, "make bench-scale", image="fleet.png")
    report.write(result, markdown, tmp_path / "results", "fleet")
    fleet.plot(result, tmp_path / "results" / "fleet.png")
    assert (tmp_path / "results" / "fleet.png").read_bytes().startswith(b"\x89PNG")
    assert "Prometheus `scrape_duration_seconds`" in (tmp_path / "results" / "fleet.md").read_text()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs to show")
def test_pin_holds_every_thread_of_a_process_and_its_children() -> None:
    """The fleet's "one core" rests on this: a multi-threaded process (the exporter's probe
    and build threads, Prometheus' Go threads) pinned by its PID had only its main thread
    pinned."""
    threads = (
        "import os, threading, time\n"
        "for _ in range(2): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "if os.fork() == 0: time.sleep(30)\n"
        "time.sleep(30)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", threads])
    try:
        root = psutil.Process(process.pid)
        wait_until(
            lambda: root.num_threads() == 3 and len(root.children()) == 1,
            timeout=10.0,
            what="the threads and the child",
        )
        one = {min(os.sched_getaffinity(0))}
        harness.pin(process.pid, one)
        pinned = {
            thread.id: os.sched_getaffinity(thread.id)
            for proc in (root, *root.children())
            for thread in proc.threads()
        }
        assert len(pinned) == 4
        assert all(cpus == one for cpus in pinned.values()), pinned
    finally:
        for child in psutil.Process(process.pid).children():
            child.kill()
        process.kill()
        process.wait()
