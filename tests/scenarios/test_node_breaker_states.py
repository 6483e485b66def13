"""opossum's other states, from real breakers in Node.js: a fresh breaker, disabled and shut
down, percentiles turned off, a forgiven timeout, semaphore rejections and calls that outlive
the window, each read through the `node` preset."""

from __future__ import annotations

import json
import subprocess

import pytest
from node_service import NODE_APP, node_binary, npm_ci

from resilience_exporter.metrics.breaker_schema import OUTCOMES, BreakerView
from resilience_exporter.metrics.health_mapping import apply
from resilience_exporter.metrics.health_presets import PRESETS


@pytest.fixture(scope="module")
def edge_breakers() -> dict[str, BreakerView]:
    npm_ci()
    printed = subprocess.run(
        [node_binary(), str(NODE_APP / "edge-documents.js")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return apply(PRESETS["node"], json.loads(printed.stdout)).breakers


@pytest.mark.slow
def test_a_fresh_breaker_has_zeros_but_no_ratio_or_latency(
    edge_breakers: dict[str, BreakerView],
) -> None:
    fresh = edge_breakers["fresh"]
    assert fresh.state == "closed"
    assert fresh.window_calls == dict.fromkeys(OUTCOMES, 0)
    assert fresh.window_fallbacks == 0
    assert fresh.failure_ratio is None
    assert fresh.call_duration_quantiles is None


@pytest.mark.slow
def test_disabled_is_closed_and_shut_down_is_open(edge_breakers: dict[str, BreakerView]) -> None:
    assert edge_breakers["disabled"].state == "closed"  # open, but calls pass unprotected
    assert edge_breakers["shutdown"].state == "open"  # every call is refused


@pytest.mark.slow
def test_percentiles_turned_off_leave_no_latency(edge_breakers: dict[str, BreakerView]) -> None:
    view = edge_breakers["no-percentiles"]
    assert view.window_calls == {"success": 1, "failure": 0, "timeout": 0, "rejected": 0}
    assert view.call_duration_quantiles is None  # opossum reports -1 for each
    assert view.failure_ratio == 0


@pytest.mark.slow
def test_a_forgiven_timeout_does_not_make_a_negative_failure_count(
    edge_breakers: dict[str, BreakerView],
) -> None:
    view = edge_breakers["forgiven"]
    # opossum counts the filtered timeout as a timeout and as a success.
    assert view.window_calls == {"success": 1, "failure": 0, "timeout": 1, "rejected": 0}
    assert view.call_duration_quantiles is not None
    assert view.call_duration_quantiles[1.0] >= 0.009  # its 10 ms timeout, in seconds


@pytest.mark.slow
def test_semaphore_rejections_are_rejected_not_failed(
    edge_breakers: dict[str, BreakerView],
) -> None:
    view = edge_breakers["busy"]
    assert view.window_calls == {"success": 1, "failure": 0, "timeout": 0, "rejected": 1}
    assert view.failure_ratio == 0.5  # opossum's trip ratio counts it as a failure


@pytest.mark.slow
def test_calls_that_outlive_the_window_keep_the_ratio_at_most_one(
    edge_breakers: dict[str, BreakerView],
) -> None:
    view = edge_breakers["outlived"]
    # opossum's window: 1 fire, 2 failures (the timeouts), 1 success.
    assert view.window_calls == {"success": 1, "failure": 0, "timeout": 2, "rejected": 0}
    assert view.failure_ratio == 1
