from __future__ import annotations

from pathlib import Path

from resilience_exporter import metricsdoc

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_reference_is_generated_from_the_code() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == metricsdoc.render(), "run `make docs` and commit docs/metrics.md"
