"""The health-document mapping (metrics/health_mapping.py) and its presets, on documents:
what each preset reads, the state spellings, and documents and expressions that do not fit."""

from __future__ import annotations

import pytest

from resilience_exporter.configuration.loader import parse
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.metrics.breaker_schema import BreakerStateError, breaker_state
from resilience_exporter.metrics.families import HistogramValue
from resilience_exporter.metrics.health_mapping import MappingError, apply
from resilience_exporter.metrics.health_presets import PRESETS
from resilience_exporter.probes.http import HttpTarget


def test_generic_document_fallbacks_slow_calls_and_call_durations() -> None:
    document = {
        "version": 1,
        "breakers": [
            {
                "name": "payments",
                "state": "closed",
                "calls": {"success": 7, "failure": 2, "timeout": 1, "rejected": 0},
                "fallbacks": 3,
                "slow_calls": 4,
                "slow_call_ratio": 0.4,
                "call_duration_seconds": {"0.5": 0.012, "0.99": 0.3},
            }
        ],
    }
    samples = {
        (s.family.name, tuple(v for k, v in s.labels if k in ("outcome", "quantile"))): s.value
        for s in apply(PRESETS["generic"], document).samples("shop")
    }
    assert samples[("resilience_breaker_calls_total", ("timeout",))] == 1
    assert samples[("resilience_breaker_calls_total", ("failure",))] == 2
    assert samples[("resilience_breaker_fallbacks_total", ())] == 3
    assert samples[("resilience_breaker_slow_calls_total", ())] == 4
    assert samples[("resilience_breaker_slow_call_ratio", ())] == 0.4
    assert samples[("resilience_breaker_call_duration_seconds", ("0.5",))] == 0.012
    assert samples[("resilience_breaker_call_duration_seconds", ("0.99",))] == 0.3


def test_generic_document_pool_checkouts_and_histograms() -> None:
    document = {
        "version": 1,
        "pools": [
            {
                "name": "orders-db", "max": 3, "in_use": 3, "idle": 0, "overflow": 1,
                "long_held": 1, "leak_threshold_seconds": 30, "oldest_checkout_age_seconds": 42.5,
                "hold_seconds": {"buckets": {"+Inf": 4, "1": 3, "0.1": 2}, "sum": 40.2},
                "acquire_seconds": {"buckets": {"0.01": 5, "+Inf": 5}, "sum": 0.02},
            }
        ],
    }  # fmt: skip
    stats = apply(PRESETS["generic"], document).pools["orders-db"]
    assert (stats.overflow, stats.long_held, stats.leak_threshold) == (1, 1, 30.0)
    assert stats.oldest_checkout_age == 42.5
    assert stats.hold == HistogramValue(bounds=(0.1, 1.0), cumulative_counts=(2, 3, 4), sum=40.2)
    assert stats.acquire == HistogramValue(bounds=(0.01,), cumulative_counts=(5, 5), sum=0.02)
    assert stats.connect is None, "what the document leaves out stays out"
    names = {s.family.name for s in apply(PRESETS["generic"], document).samples("shop")}
    assert {
        "resilience_pool_hold_duration_seconds",
        "resilience_pool_long_held_connections",
        "resilience_pool_overflow_connections",
    } <= names
    assert "resilience_pool_connect_duration_seconds" not in names


@pytest.mark.parametrize(
    ("histogram", "message"),
    [
        ({"buckets": {"1": 2}, "sum": 1}, "no \\+Inf bucket"),
        ({"buckets": {"1": 3, "+Inf": 2}, "sum": 1}, "not cumulative"),
        ({"buckets": {"x": 1, "+Inf": 1}, "sum": 1}, "not a number"),
        ({"buckets": {"+Inf": -1}, "sum": 1}, "not a count"),
        ([1, 2], "an object with `buckets`"),
    ],
)
def test_pool_histograms_that_do_not_fit_are_rejected(histogram: object, message: str) -> None:
    document = {
        "version": 1,
        "pools": [{"name": "p", "max": 1, "in_use": 0, "idle": 1, "hold_seconds": histogram}],
    }
    with pytest.raises(MappingError, match=message):
        apply(PRESETS["generic"], document)


@pytest.mark.parametrize(("reported", "ratio"), [("25.0%", 0.25), ("-1.0%", None)])
def test_resilience4j_slow_call_rate(reported: str, ratio: float | None) -> None:
    document = {
        "status": "UP",
        "components": {
            "circuitBreakers": {
                "details": {
                    "inventory": {
                        "status": "UP",
                        "details": {"state": "CLOSED", "slowCallRate": reported},
                    }
                }
            }
        },
    }
    view = apply(PRESETS["resilience4j"], document).breakers["inventory"]
    assert view.slow_call_ratio == ratio


@pytest.mark.parametrize(
    ("spelling", "state"),
    [
        ("closed", "closed"), ("CLOSED", "closed"), ("open", "open"), ("OPEN", "open"),
        ("half_open", "half_open"), ("HALF_OPEN", "half_open"), ("half-open", "half_open"),
        ("HalfOpen", "half_open"), ("FORCED_OPEN", "open"), ("DISABLED", "closed"),
        ("METRICS_ONLY", "closed"),
    ],
)  # fmt: skip
def test_state_spellings(spelling: str, state: str) -> None:
    assert breaker_state(spelling) == state


@pytest.mark.parametrize("bad", ["opened", "", "UNKNOWN", 1, None])
def test_unknown_states_are_rejected(bad: object) -> None:
    with pytest.raises(BreakerStateError):
        breaker_state(bad)


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"version": 1, "breakers": {"x": 1}},
        {"version": 1, "breakers": [{"name": "x", "state": "open", "failure_ratio": 1.5}]},
        {"version": 1, "breakers": [{"name": "x", "state": "open", "calls": {"success": -1}}]},
        {"version": 1, "breakers": [{"name": "x", "state": "open", "failure_ratio": True}]},
        {"version": 1, "breakers": [{"state": "open"}]},
        {"version": 1, "pools": [{"name": "p", "max": 3, "in_use": 1}]},
        {"version": 1, "pools": [{"name": "p", "in_use": 1, "idle": 1}]},
        {"version": 1, "pools": [{"name": "p", "max": 3, "size": 1, "in_use": 2}]},
        {"version": 1, "pools": [{"name": "p", "max": 3, "in_use": 1, "idle": 0}] * 2},
        {"version": 1, "breakers": "open"},
    ],
)
def test_documents_that_do_not_fit_are_rejected(document: object) -> None:
    with pytest.raises(MappingError):
        apply(PRESETS["generic"], document)


@pytest.mark.parametrize(
    ("expression", "message"),
    [("state[?", "JMESPath"), ("divide(a, b)", "unknown JMESPath function divide()")],
)
def test_bad_expressions_are_config_errors_with_the_line(expression: str, message: str) -> None:
    text = f"""targets:
  - name: app
    kind: http
    url: http://127.0.0.1:8080/health
    mapping:
      breakers:
        items: breakers
        state: "{expression}"
"""
    with pytest.raises(ConfigError) as caught:
        parse(text, "app.yml", env={})
    assert [str(issue).split(": ")[:2] for issue in caught.value.issues] == [
        ["app.yml:8", "targets[0].mapping.breakers.state"]
    ]
    assert message in str(caught.value)


def test_subtract_and_ratio_in_a_mapping() -> None:
    """JMESPath has no arithmetic: the exporter's two functions, the window counts and a
    duration unit, as a `mapping:` block uses them."""
    text = """targets:
  - name: app
    kind: http
    url: http://127.0.0.1:8080/health
    mapping:
      breakers:
        items: circuits
        state: state
        failure_ratio: ratio(failed, total)
        window_calls: {success: "subtract(total, failed)", failure: failed}
        window_fallbacks: fallbacks
        call_duration_quantiles: latencyMs
        call_duration_unit: milliseconds
"""
    (target,) = parse(text, "app.yml", env={}).targets
    assert isinstance(target, HttpTarget)
    document = {
        "circuits": [
            {"name": "a", "state": "closed", "failed": 1, "total": 4, "fallbacks": 1,
             "latencyMs": {"0.5": 250, "0.99": -1}},
            {"name": "b", "state": "closed", "failed": 0, "total": 0},
        ]
    }  # fmt: skip
    found = apply(target.health_mapping, document).breakers
    assert found["a"].failure_ratio == 0.25
    assert found["a"].window_calls == {"success": 3, "failure": 1}
    assert found["a"].window_fallbacks == 1
    assert found["a"].call_duration_quantiles == {0.5: 0.25}  # -1: not measured
    assert found["a"].calls is None  # a window is not a total
    assert found["b"].failure_ratio is None  # no calls, no ratio
