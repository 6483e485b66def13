"""The `generic` health document (docs/application-health.md), built from the shared views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resilience_exporter.metrics.breaker_schema import BreakerView
from resilience_exporter.metrics.families import HistogramValue
from resilience_exporter.metrics.generic_document import GENERIC_FORMAT_VERSION
from resilience_exporter.metrics.pool_schema import PoolStats


def breaker_entry(name: str, view: BreakerView) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "state": view.state}
    if view.calls is not None:
        entry["calls"] = dict(view.calls)
    if view.transitions is not None:
        entry["transitions"] = [
            {"from": from_state, "to": to_state, "count": count}
            for (from_state, to_state), count in sorted(view.transitions.items())
        ]
    if view.call_duration_quantiles is not None:
        entry["call_duration_seconds"] = {
            f"{quantile:g}": seconds for quantile, seconds in view.call_duration_quantiles.items()
        }
    optional = {
        "failure_ratio": view.failure_ratio,
        "next_attempt_at": view.next_attempt_at,
        "fallbacks": view.fallbacks,
        "slow_calls": view.slow_calls,
        "slow_call_ratio": view.slow_call_ratio,
    }
    entry.update({key: value for key, value in optional.items() if value is not None})
    return entry


def pool_entry(name: str, stats: PoolStats) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "max": stats.max_size,
        "in_use": stats.in_use,
        "idle": stats.idle,
    }
    optional = {
        "min": stats.min_size,
        "waiting": stats.pending,
        "connect_errors": stats.connect_errors,
        "acquire_errors": stats.acquire_errors,
        "lost": stats.lost,
        "overflow": stats.overflow,
        "long_held": stats.long_held,
        "leak_threshold_seconds": stats.leak_threshold,
        "oldest_checkout_age_seconds": stats.oldest_checkout_age,
    }
    entry.update({key: value for key, value in optional.items() if value is not None})
    for key, histogram in (
        ("acquire_seconds", stats.acquire),
        ("connect_seconds", stats.connect),
        ("hold_seconds", stats.hold),
    ):
        if histogram is not None:
            entry[key] = histogram_entry(histogram)
    return entry


def histogram_entry(histogram: HistogramValue) -> dict[str, Any]:
    """Cumulative counts by upper bound, as Prometheus' `le` labels spell them."""
    bounds = [f"{bound:g}" for bound in histogram.bounds] + ["+Inf"]
    return {
        "buckets": dict(zip(bounds, histogram.cumulative_counts, strict=True)),
        "sum": histogram.sum,
    }


def generic_document(
    breakers: Mapping[str, BreakerView], pools: Mapping[str, PoolStats]
) -> dict[str, Any]:
    return {
        "version": GENERIC_FORMAT_VERSION,
        "breakers": [breaker_entry(name, view) for name, view in breakers.items()],
        "pools": [pool_entry(name, stats) for name, stats in pools.items()],
    }
