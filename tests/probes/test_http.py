"""`kind: http` against a real aiohttp application, through the real exporter process."""

from __future__ import annotations

import asyncio
import base64
import copy
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from exporter_process import ExporterProcess, Scrape, promtool_check_metrics
from http_app import BackgroundApp

from resilience_exporter.configuration.loader import parse
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.metrics.breaker_schema import BreakerStateError, breaker_state
from resilience_exporter.metrics.families import HistogramValue
from resilience_exporter.metrics.health_mapping import MappingError, apply
from resilience_exporter.metrics.health_presets import PRESETS
from resilience_exporter.probes.http import HttpProbe, HttpTarget
from scripts.testservers.base import free_port

TOKEN = "Bearer-Secret-9d1c44"
BASIC_USER = "actuator"
BASIC_PASSWORD = "Basic-Secret-51be0a"

GENERIC_DOC: dict[str, Any] = {
    "version": 1,
    "breakers": [
        {
            "name": "payments",
            "state": "OPEN",
            "failure_ratio": 0.75,
            "calls": {"success": 120, "failure": 40, "rejected": 7},
            "transitions": [
                {"from": "closed", "to": "open", "count": 3},
                {"from": "half_open", "to": "closed", "count": 2},
            ],
            "next_attempt_at": 1800000000.5,
        },
        {"name": "inventory", "state": "half-open"},
    ],
    "pools": [
        {
            "name": "orders-db",
            "max": 20,
            "min": 2,
            "in_use": 5,
            "idle": 3,
            "waiting": 4,
            "connect_errors": 6,
            "acquire_errors": 1,
            "lost": 2,
        },
        {"name": "cache", "max": 8, "size": 6, "idle": 2},
    ],
}


def r4j_breaker(state: str, failure_rate: str, not_permitted: int) -> dict[str, Any]:
    status = {"CLOSED": "UP", "OPEN": "CIRCUIT_OPEN", "HALF_OPEN": "CIRCUIT_HALF_OPEN"}
    return {
        "status": status.get(state, "UNKNOWN"),
        "details": {
            "failureRate": failure_rate,
            "failureRateThreshold": "50.0%",
            "slowCallRate": "-1.0%",
            "slowCallRateThreshold": "100.0%",
            "bufferedCalls": 10,
            "slowCalls": 0,
            "slowFailedCalls": 0,
            "failedCalls": 6,
            "notPermittedCalls": not_permitted,
            "state": state,
        },
    }


# What Spring Boot 3's /actuator/health shows with resilience4j-spring-boot3 and
# `management.health.circuitbreakers.enabled: true`.
ACTUATOR_UP: dict[str, Any] = {
    "status": "UP",
    "components": {
        "circuitBreakers": {
            "status": "UP",
            "details": {
                "inventoryService": r4j_breaker("CLOSED", "-1.0%", 0),
                "paymentService": r4j_breaker("HALF_OPEN", "60.0%", 17),
            },
        },
        "db": {
            "status": "UP",
            "details": {"database": "PostgreSQL", "validationQuery": "isValid()"},
        },
        "diskSpace": {
            "status": "UP",
            "details": {"total": 499963174912, "free": 91300069376, "threshold": 10485760},
        },
        "ping": {"status": "UP"},
    },
}
ACTUATOR_DOWN: dict[str, Any] = {
    "status": "DOWN",
    "components": {
        "circuitBreakers": {
            "status": "DOWN",
            "details": {
                "inventoryService": r4j_breaker("FORCED_OPEN", "100.0%", 250),
                "paymentService": r4j_breaker("OPEN", "80.0%", 31),
                "auditService": r4j_breaker("DISABLED", "-1.0%", 0),
            },
        },
        "db": {"status": "DOWN", "details": {"error": "connection refused"}},
    },
}
CUSTOM_DOC: dict[str, Any] = {
    "circuitBreakers": [{"id": "search", "status": "HalfOpen", "errorPercentage": 25}],
    "database": {"primary": {"active": 7, "idle": 1, "maximumPoolSize": 10, "threadsAwaiting": 3}},
}
CUSTOM_MAPPING = """
    mapping:
      breakers:
        items: circuitBreakers
        name: id
        state: status
        failure_rate_percent: errorPercentage
      pools:
        items: database
        max: maximumPoolSize
        in_use: active
        idle: idle
        waiting: threadsAwaiting
"""


def make_app(release: asyncio.Event) -> web.Application:
    def checked(expected: str, document: dict[str, Any]) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != expected:
                return web.json_response({"error": "unauthorized"}, status=401)
            return web.json_response(document)

        return handler

    def fixed(body: str, status: int = 200) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(text=body, status=status, content_type="application/json")

        return handler

    async def down(request: web.Request) -> web.StreamResponse:
        return web.json_response(ACTUATOR_DOWN, status=503)

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response(GENERIC_DOC)

    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(b'{"version": 1, "breakers": [{"name": "pay')
        assert request.transport is not None
        request.transport.close()  # the connection drops in the middle of the body
        return response

    partial = copy.deepcopy(GENERIC_DOC)
    del partial["breakers"][0]["state"]
    basic = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    app = web.Application()
    app.router.add_get("/generic", checked(f"Bearer {TOKEN}", GENERIC_DOC))
    app.router.add_get("/actuator/health", checked(basic, ACTUATOR_UP))
    app.router.add_get("/down/actuator/health", down)
    app.router.add_get("/custom", fixed(web.json_response(CUSTOM_DOC).text or ""))
    app.router.add_get("/malformed", fixed('{"version": 1, "breakers": [}'))
    app.router.add_get("/partial", fixed(web.json_response(partial).text or ""))
    app.router.add_get("/newer", fixed('{"version": 2, "breakers": [], "pools": []}'))
    app.router.add_get("/truncated", truncated)
    app.router.add_get("/error", fixed('{"error": "boom"}', status=500))
    app.router.add_get("/unavailable", fixed("<h1>Service Unavailable</h1>", status=503))
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture(scope="module")
def health_app() -> Iterator[BackgroundApp]:
    release: list[asyncio.Event] = []

    def build() -> web.Application:
        release.append(asyncio.Event())
        return make_app(release[0])

    app = BackgroundApp(build)
    with app:
        yield app
        app.loop.call_soon_threadsafe(release[0].set)


def config(app: BackgroundApp, token_file: Path) -> str:
    base = app.url
    refused = f"http://127.0.0.1:{free_port()}/health"
    return f"""
defaults: {{interval: 1s, timeout: 1s}}
host: {{enabled: false}}
targets:
  - name: shop
    kind: http
    url: {base}/generic
    preset: generic
    bearer_token: ${{APP_TOKEN}}
    labels: {{team: checkout}}
  - name: spring
    kind: http
    url: {base}/actuator/health
    preset: resilience4j
    basic_auth: {{username: {BASIC_USER}, password: "${{APP_PASSWORD}}"}}
  - name: spring-down
    kind: http
    url: {base}/down/actuator/health
    preset: resilience4j
  - name: custom
    kind: http
    url: {base}/custom
{CUSTOM_MAPPING}
  - name: wrong-token
    kind: http
    url: {base}/generic
    bearer_token_file: {token_file}
  - name: malformed
    kind: http
    url: {base}/malformed
  - name: partial
    kind: http
    url: {base}/partial
  - name: newer
    kind: http
    url: {base}/newer
  - name: truncated
    kind: http
    url: {base}/truncated
  - name: error
    kind: http
    url: {base}/error
  - name: unavailable
    kind: http
    url: {base}/unavailable
  - name: slow
    kind: http
    url: {base}/slow
  - name: refused
    kind: http
    url: {refused}
"""


def probed_twice(targets: list[str]) -> Callable[[Scrape], bool]:
    """Each target probed twice, or probed and then held back by its open breaker (a
    persistent failure such as a wrong token opens it at once)."""

    def settled(exp: Scrape, target: str) -> bool:
        probes = exp.value("resilience_probe_duration_seconds_count", target=target) or 0
        held = exp.value(
            "resilience_breaker_state", breaker=target, source="exporter", state="open"
        )
        return probes >= 2 or (probes >= 1 and held == 1)

    return lambda exp: all(settled(exp, t) for t in targets)


TARGETS = [
    "shop", "spring", "spring-down", "custom", "wrong-token", "malformed", "partial", "newer",
    "truncated", "error", "unavailable", "slow", "refused",
]  # fmt: skip


Scraped = tuple[Scrape, str, str, str]


@pytest.fixture(scope="module")
def scraped(
    health_app: BackgroundApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scraped]:
    """One exporter's /metrics once every target was probed twice (as Prometheus scrapes it,
    and in the text format promtool reads), its landing page and its logs."""
    workdir = tmp_path_factory.mktemp("http-exporter")
    token_file = workdir / "token"
    token_file.write_text("Wrong-Token-0f9e21\n")
    env = {"APP_TOKEN": TOKEN, "APP_PASSWORD": BASIC_PASSWORD}
    exporter = ExporterProcess(
        workdir, config=config(health_app, token_file), env=env, args=["--log.level=debug"]
    )
    with exporter:
        m = exporter.wait_for("every target probed twice", probed_twice(TARGETS), timeout=60)
        text_format = exporter.text_format()
        _, landing, _ = exporter.get("/")
        status = exporter.stop()
        assert status == 0
        yield m, landing, exporter.logs(), text_format


def up(m: Scrape, target: str) -> tuple[float | None, str]:
    """`resilience_up` and the real reason: the breaker's last error while it is open."""
    series = m.series("resilience_up", target=target)
    assert len(series) == 1, series
    labels, value = next(iter(series.items()))
    reason = dict(labels).get("reason", "")
    if reason == "breaker_open":
        (last,) = m.series("resilience_breaker_last_error_info", breaker=target, source="exporter")
        reason = dict(last)["reason"]
    return value, reason


@pytest.mark.slow
def test_generic_preset_maps_every_family(scraped: Scraped) -> None:
    m, _, _, _ = scraped
    assert up(m, "shop") == (1, "")
    b = {"breaker": "payments", "source": "shop", "team": "checkout"}
    assert m.value("resilience_breaker_state", **b, state="open") == 1
    assert m.value("resilience_breaker_state", **b, state="closed") == 0
    assert m.value("resilience_breaker_state", **b, state="half_open") == 0
    assert m.value("resilience_breaker_failure_ratio", **b) == 0.75
    assert m.value("resilience_breaker_calls_total", **b, outcome="success") == 120
    assert m.value("resilience_breaker_calls_total", **b, outcome="failure") == 40
    assert m.value("resilience_breaker_calls_total", **b, outcome="rejected") == 7
    transitions = m.series("resilience_breaker_transitions_total", **b)
    assert {(dict(k)["from_state"], dict(k)["to_state"]): v for k, v in transitions.items()} == {
        ("closed", "open"): 3,
        ("half_open", "closed"): 2,
    }
    assert m.value("resilience_breaker_next_attempt_timestamp_seconds", **b) == 1800000000.5
    inventory = {"breaker": "inventory", "source": "shop"}
    assert m.value("resilience_breaker_state", **inventory, state="half_open") == 1
    # What the application does not report is left out, not invented.
    assert not m.has("resilience_breaker_failure_ratio", **inventory)
    assert not m.has("resilience_breaker_calls_total", **inventory)

    p = {"pool": "orders-db", "source": "shop"}
    assert m.value("resilience_pool_connections", **p, state="in_use") == 5
    assert m.value("resilience_pool_connections", **p, state="idle") == 3
    assert m.value("resilience_pool_max_connections", **p) == 20
    assert m.value("resilience_pool_min_connections", **p) == 2
    assert m.value("resilience_pool_pending_requests", **p) == 4
    assert m.value("resilience_pool_errors_total", **p, operation="connect") == 6
    assert m.value("resilience_pool_errors_total", **p, operation="acquire") == 1
    assert m.value("resilience_pool_connections_lost_total", **p) == 2
    cache = {"pool": "cache", "source": "shop"}
    assert m.value("resilience_pool_connections", **cache, state="in_use") == 4  # size - idle
    assert m.value("resilience_pool_connections", **cache, state="idle") == 2
    assert m.value("resilience_pool_max_connections", **cache) == 8
    assert not m.has("resilience_pool_pending_requests", **cache)
    assert m.value("resilience_http_parse_errors_total", target="shop") == 0


@pytest.mark.slow
def test_resilience4j_preset(scraped: Scraped) -> None:
    m, _, _, _ = scraped
    assert up(m, "spring") == (1, "")
    closed = {"breaker": "inventoryService", "source": "spring"}
    assert m.value("resilience_breaker_state", **closed, state="closed") == 1
    assert m.value("resilience_breaker_state", **closed, state="open") == 0
    # -1.0% means "not enough calls yet": no ratio rather than a made-up one.
    assert not m.has("resilience_breaker_failure_ratio", **closed)
    assert m.value("resilience_breaker_calls_total", **closed, outcome="rejected") == 0
    half = {"breaker": "paymentService", "source": "spring"}
    assert m.value("resilience_breaker_state", **half, state="half_open") == 1
    assert m.value("resilience_breaker_failure_ratio", **half) == pytest.approx(0.6)
    assert m.value("resilience_breaker_calls_total", **half, outcome="rejected") == 17
    # bufferedCalls and failedCalls describe the window, not totals: no counters from them.
    assert not m.has("resilience_breaker_calls_total", **half, outcome="success")
    assert not m.has("resilience_breaker_calls_total", **half, outcome="failure")
    assert m.label_values("resilience_breaker_state", "breaker") >= {
        "inventoryService",
        "paymentService",
    }
    assert not m.has("resilience_pool_connections", source="spring")


@pytest.mark.slow
def test_actuator_503_with_a_down_document_still_maps(scraped: Scraped) -> None:
    m, _, _, _ = scraped
    assert up(m, "spring-down") == (1, "")
    s = {"source": "spring-down"}
    assert m.value("resilience_breaker_state", **s, breaker="inventoryService", state="open") == 1
    assert m.value("resilience_breaker_state", **s, breaker="paymentService", state="open") == 1
    assert m.value("resilience_breaker_state", **s, breaker="auditService", state="closed") == 1
    assert m.value("resilience_breaker_failure_ratio", **s, breaker="paymentService") == 0.8
    assert (
        m.value(
            "resilience_breaker_calls_total", **s, breaker="inventoryService", outcome="rejected"
        )
        == 250
    )


@pytest.mark.slow
def test_custom_mapping(scraped: Scraped) -> None:
    m, _, _, _ = scraped
    assert up(m, "custom") == (1, "")
    b = {"breaker": "search", "source": "custom"}
    assert m.value("resilience_breaker_state", **b, state="half_open") == 1
    assert m.value("resilience_breaker_failure_ratio", **b) == 0.25
    p = {"pool": "primary", "source": "custom"}
    assert m.value("resilience_pool_connections", **p, state="in_use") == 7
    assert m.value("resilience_pool_connections", **p, state="idle") == 1
    assert m.value("resilience_pool_max_connections", **p) == 10
    assert m.value("resilience_pool_pending_requests", **p) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "reason", "parse_errors"),
    [
        ("malformed", "protocol", True),
        ("partial", "protocol", True),
        ("newer", "protocol", True),
        ("truncated", "protocol", True),
        ("error", "other", False),
        ("unavailable", "other", False),
        ("wrong-token", "auth", False),
        ("slow", "timeout", False),
        ("refused", "refused", False),
    ],
)
def test_failures_give_the_documented_reason(
    scraped: Scraped, target: str, reason: str, parse_errors: bool
) -> None:
    m, landing, _, _ = scraped
    assert up(m, target) == (0, reason)
    # At least once: a persistent failure (a wrong token) opens the breaker after one probe.
    assert (m.value("resilience_probe_errors_total", target=target, reason=reason) or 0) >= 1
    counted = m.value("resilience_http_parse_errors_total", target=target) or 0
    assert (counted >= 1) if parse_errors else (counted == 0)
    assert not m.has("resilience_breaker_state", source=target)
    assert target in landing


@pytest.mark.slow
def test_secrets_never_shown(scraped: Scraped) -> None:
    m, landing, logs, _ = scraped
    encoded = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    for secret in (TOKEN, BASIC_PASSWORD, encoded, "Wrong-Token-0f9e21"):
        for where, text in (("metrics", m.text), ("landing page", landing), ("logs", logs)):
            assert secret not in text, f"a secret leaked into the {where}"
    assert "probe failed" in logs  # the logs were there to be searched


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


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    preset: generic\n    mapping: {breakers: {items: a, state: b}}\n", "not both"),
        ("    preset: hystrix\n", "preset"),
        ("    bearer_token: x\n    basic_auth: {username: u, password: p}\n", "one of"),
        ("    tls: {cert_file: /nonexistent.pem}\n", "cert_file and key_file"),
        ("    tls: {ca_file: /nonexistent.pem}\n", "cannot load TLS files"),
    ],
)
def test_config_rejections(extra: str, message: str) -> None:
    text = f"""targets:
  - name: app
    kind: http
    url: https://127.0.0.1:8080/health
{extra}"""
    with pytest.raises(ConfigError, match=message):
        parse(text, "app.yml", env={})


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    text = """targets:
  - name: app
    kind: http
    url: http://user:Url-Secret-77@127.0.0.1:8080/health
"""
    with pytest.raises(ConfigError) as caught:
        parse(text, "app.yml", env={})
    assert "basic_auth" in str(caught.value)
    assert "Url-Secret-77" not in str(caught.value)


@pytest.mark.slow
def test_tls_options(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED  # the exporter must show a client cert
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "key"
    ca_file.write_bytes(ca.cert_pem.bytes())
    client = ca.issue_cert("exporter@example.com")
    cert_file.write_bytes(b"".join(pem.bytes() for pem in client.cert_chain_pems))
    key_file.write_bytes(client.private_key_pem.bytes())

    def build() -> web.Application:
        app = web.Application()

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(GENERIC_DOC)

        app.router.add_get("/health", handler)
        return app

    client_cert = f"cert_file: {cert_file}, key_file: {key_file}"
    with BackgroundApp(build, ssl_context=server_context) as app:
        config = f"""
defaults: {{interval: 1s, timeout: 1s}}
host: {{enabled: false}}
targets:
  - {{name: trusted, kind: http, url: {app.url}/health, tls: {{ca_file: {ca_file}, {client_cert}}}}}
  - {{name: insecure, kind: http, url: {app.url}/health,
      tls: {{insecure_skip_verify: true, {client_cert}}}}}
  - {{name: untrusted, kind: http, url: {app.url}/health, tls: {{{client_cert}}}}}
  - {{name: no-client-cert, kind: http, url: {app.url}/health, tls: {{ca_file: {ca_file}}}}}
"""
        with ExporterProcess(tmp_path, config=config) as exporter:
            m = exporter.wait_for(
                "every TLS target probed twice",
                probed_twice(["trusted", "insecure", "untrusted", "no-client-cert"]),
                timeout=60,
            )
    assert up(m, "trusted") == (1, "")
    assert m.value("resilience_breaker_state", source="trusted", breaker="payments", state="open")
    assert up(m, "insecure") == (1, "")
    assert up(m, "untrusted") == (0, "tls")
    # Under TLS 1.3 the server turns the missing certificate away after the handshake.
    assert up(m, "no-client-cert") == (0, "other")


@pytest.mark.slow
def test_exposition_passes_promtool(scraped: Scraped) -> None:
    _, _, _, text_format = scraped
    checked = promtool_check_metrics(text_format)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
    assert checked.stderr.strip() == ""


async def test_close_then_open_probes_again(health_app: BackgroundApp) -> None:
    """The breaker closes a probe while open and opens it again for its trial."""
    text = f"targets:\n  - name: cycle\n    kind: http\n    url: {health_app.url}/custom\n"
    (target,) = parse(text + CUSTOM_MAPPING, "c.yml", env={}).targets
    assert isinstance(target, HttpTarget)
    probe = HttpProbe(target)
    for _ in range(2):
        await probe.open()
        assert await probe.probe()
        await probe.close()
