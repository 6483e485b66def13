"""`kind: http` against a real aiohttp application, through the real exporter process."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from exporter_process import ExporterProcess, Scrape, promtool_check_metrics
from health_support import BASIC_PASSWORD, BASIC_USER, CUSTOM_MAPPING, GENERIC_DOC, TOKEN, make_app
from http_app import BackgroundApp

from resilience_exporter.configuration.loader import parse
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.probes.http import HttpProbe, HttpTarget
from scripts.testservers.base import free_port


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
