"""`preset: node` end to end. A real Node.js service (Debian's `node`; express, pg,
generic-pool and opossum from `npm ci` and tests/node_app's lock file) holds a pg.Pool on the
test PostgreSQL, a generic-pool and opossum breakers around a dependency the test breaks; the
real exporter reads the document docs/application-health.md tells applications to serve, and
a real Prometheus evaluates the shipped rules on what it exports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape
from http_app import BackgroundApp
from node_service import NODE_APP, NodeService, npm_ci

from alerts.generate import render, write_rules
from alerts.thresholds import load_thresholds
from resilience_exporter.metrics.breaker_schema import OUTCOMES
from scripts.testservers.base import ServerError, wait_until
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer

SOURCE = "orders-service"
APPLICATION_NAME = "resilience-node-test"
ORDERS_MAX, WORKERS_MAX, WORKERS_MIN = 3, 2, 1
# How long the payments breaker stays open before its half-open trial: long enough for the
# exporter and Prometheus to see it open and fire the alert, on a loaded machine too.
RESET_TIMEOUT_SECONDS = 15
QUICK_WINDOW_SECONDS = 4
ALERT = "ResilienceApplicationBreakerOpen"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "application-health.md"


class Dependency:
    """What the payments breaker calls: it answers, fails with HTTP 500, or hangs past the
    breaker's 2 s timeout, as the test sets `mode`."""

    def __init__(self) -> None:
        self.mode = "ok"

    def make_app(self) -> web.Application:
        async def pay(request: web.Request) -> web.StreamResponse:
            if self.mode == "fail":
                return web.Response(status=500, text="broken")
            if self.mode == "slow":
                await asyncio.sleep(5)
            return web.Response(text="paid")

        app = web.Application()
        app.router.add_get("/pay", pay)
        return app


@pytest.fixture(scope="module")
def dependency() -> Iterator[tuple[Dependency, BackgroundApp]]:
    dep = Dependency()
    with BackgroundApp(dep.make_app) as app:
        yield dep, app


@pytest.fixture(scope="module")
def service(
    postgres: PostgresServer, dependency: tuple[Dependency, BackgroundApp]
) -> Iterator[NodeService]:
    npm_ci()
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGUSER": MONITOR_USER,
        "PGPASSWORD": MONITOR_PASSWORD,
        "PGDATABASE": "postgres",
        "APPLICATION_NAME": APPLICATION_NAME,
        "ORDERS_POOL_MAX": str(ORDERS_MAX),
        "WORKERS_POOL_MAX": str(WORKERS_MAX),
        "WORKERS_POOL_MIN": str(WORKERS_MIN),
        "DEPENDENCY_URL": f"{dependency[1].url}/pay",
        "PAYMENTS_RESET_TIMEOUT_MS": str(RESET_TIMEOUT_SECONDS * 1000),
        "QUICK_WINDOW_MS": str(QUICK_WINDOW_SECONDS * 1000),
    }
    with NodeService(env=env) as node:
        yield node


@pytest.fixture(scope="module")
def exporter(
    service: NodeService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    config = f"""
defaults: {{interval: 500ms, timeout: 500ms}}
host: {{enabled: false}}
targets:
  - name: {SOURCE}
    kind: http
    url: {service.url}/health/resilience
    preset: node
"""
    with ExporterProcess(tmp_path_factory.mktemp("node-exporter"), config=config) as process:
        process.wait_for(
            "the exporter to read the service",
            lambda exp: exp.value("resilience_up", target=SOURCE) == 1,
            timeout=30,
        )
        yield process


# --- pools --------------------------------------------------------------------------------
def exported_pool(exp: Scrape, pool: str) -> dict[str, float | None]:
    labels = {"pool": pool, "source": SOURCE}
    return {
        "in_use": exp.value("resilience_pool_connections", **labels, state="in_use"),
        "idle": exp.value("resilience_pool_connections", **labels, state="idle"),
        "pending": exp.value("resilience_pool_pending_requests", **labels),
        "max": exp.value("resilience_pool_max_connections", **labels),
        "min": exp.value("resilience_pool_min_connections", **labels),
    }


def reported_pool(document: dict[str, Any], pool: str) -> dict[str, float | None]:
    """The same numbers from the service's own document, under each library's names."""
    (entry,) = [p for p in document["pools"] if p["name"] == pool]
    if "totalCount" in entry:  # node-postgres
        return {
            "in_use": entry["totalCount"] - entry["idleCount"],
            "idle": entry["idleCount"],
            "pending": entry["waitingCount"],
            "max": entry["max"],
            "min": entry["min"],
        }
    return {  # generic-pool
        "in_use": entry["borrowed"],
        "idle": entry["available"],
        "pending": entry["pending"],
        "max": entry["max"],
        "min": entry["min"],
    }


def pools_agree(
    service: NodeService, exporter: ExporterProcess, expected: dict[str, dict[str, float]]
) -> None:
    """Wait until the service reports `expected`, then until the exporter says the same."""
    wait_until(
        lambda: {p: reported_pool(service.health(), p) for p in expected} == expected,
        timeout=30,
        interval=0.2,
        what=f"the service to report {expected}",
    )
    exporter.wait_for(
        f"the exporter to report {expected}",
        lambda exp: {p: exported_pool(exp, p) for p in expected} == expected,
        timeout=30,
    )


@pytest.mark.slow
def test_pool_sizes_and_waiters_match_the_service(
    service: NodeService, exporter: ExporterProcess, postgres: PostgresServer
) -> None:
    orders = {"max": ORDERS_MAX, "min": 0}
    workers = {"max": WORKERS_MAX, "min": WORKERS_MIN}
    # pg.Pool connects on demand; generic-pool opens `min` workers at once.
    pools_agree(
        service,
        exporter,
        {
            "orders": {"in_use": 0, "idle": 0, "pending": 0, **orders},
            "workers": {"in_use": 0, "idle": WORKERS_MIN, "pending": 0, **workers},
        },
    )
    service.request("POST", f"/pools/orders/hold?count={ORDERS_MAX + 2}")
    service.request("POST", f"/pools/workers/hold?count={WORKERS_MAX + 1}")
    pools_agree(
        service,
        exporter,
        {
            "orders": {"in_use": ORDERS_MAX, "idle": 0, "pending": 2, **orders},
            "workers": {"in_use": WORKERS_MAX, "idle": 0, "pending": 1, **workers},
        },
    )
    # The pool's connections are PostgreSQL's sessions: the server counts the same, once
    # their logins finish (pg.Pool counts a client from the moment it starts connecting).
    wait_until(
        lambda: postgres.backends(APPLICATION_NAME) == ORDERS_MAX,
        timeout=30,
        what=f"{ORDERS_MAX} sessions of {APPLICATION_NAME} on the server",
    )

    service.request("POST", "/pools/orders/release")
    service.request("POST", "/pools/workers/release")
    pools_agree(
        service,
        exporter,
        {
            "orders": {"in_use": 0, "idle": ORDERS_MAX, "pending": 0, **orders},
            "workers": {"in_use": 0, "idle": WORKERS_MAX, "pending": 0, **workers},
        },
    )
    assert postgres.backends(APPLICATION_NAME) == ORDERS_MAX  # idle, kept by the pool


# --- breakers -----------------------------------------------------------------------------
def fire(service: NodeService, breaker: str = "payments") -> tuple[Any, str]:
    """One call through the breaker: its result (the dependency's answer, or the error the
    fallback got) and the breaker's state after it, from opossum's `toJSON().state`."""
    answer = service.request("POST", f"/breakers/{breaker}/fire")
    flags = answer["state"]
    (state,) = [s for s, flag in OPOSSUM_STATES if flags[flag]]
    return answer["result"], state


OPOSSUM_STATES = (("closed", "closed"), ("open", "open"), ("half_open", "halfOpen"))


def window_calls(exp: Scrape, breaker: str) -> dict[str, float | None]:
    labels = {"breaker": breaker, "source": SOURCE}
    return {o: exp.value("resilience_breaker_window_calls", **labels, outcome=o) for o in OUTCOMES}


def state_is(breaker: str, state: str) -> Callable[[Scrape], bool]:
    labels = {"breaker": breaker, "source": SOURCE}
    return lambda exp: exp.value("resilience_breaker_state", **labels, state=state) == 1


def reported_breaker(document: dict[str, Any], breaker: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [b for b in document["breakers"] if b["state"]["name"] == breaker]
    assert len(found) == 1, found
    return found[0]


def reported_outcomes(document: dict[str, Any], breaker: str) -> dict[str, int]:
    """opossum's own counts, read as docs/application-health.md says: its `failures` include
    timeouts and semaphore rejections."""
    status = reported_breaker(document, breaker)["status"]
    return {
        "success": status["successes"],
        "failure": status["failures"] - status["timeouts"] - status["semaphoreRejections"],
        "timeout": status["timeouts"],
        "rejected": status["rejects"] + status["semaphoreRejections"],
    }


def firing(prometheus: PrometheusServer) -> list[dict[str, Any]]:
    return [
        a
        for a in prometheus.alerts()
        if a["labels"].get("alertname") == ALERT
        and a["labels"].get("source") == SOURCE
        and a["labels"].get("breaker") == "payments"
        and a["state"] == "firing"
    ]


@pytest.mark.slow
def test_breaker_closed_open_half_open_closed_with_the_alert(
    service: NodeService,
    exporter: ExporterProcess,
    dependency: tuple[Dependency, BackgroundApp],
    tmp_path: Path,
) -> None:
    dep = dependency[0]
    payments = {"breaker": "payments", "source": SOURCE}
    thresholds = load_thresholds(overrides={"alerts": {ALERT: {"for": "1s"}}})
    rule_files = write_rules(tmp_path / "rules", render(thresholds))
    with PrometheusServer(
        scrape={"resilience-exporter": [f"127.0.0.1:{exporter.port}"]},
        rule_files=rule_files,
        scrape_interval="500ms",
        evaluation_interval="500ms",
    ) as prometheus:
        m = exporter.wait_for("payments closed", state_is("payments", "closed"), timeout=30)
        assert window_calls(m, "payments") == dict.fromkeys(OUTCOMES, 0)
        assert m.value("resilience_breaker_window_fallbacks", **payments) == 0
        # No calls in the window: no ratio and no latency rather than zeros.
        assert not m.has("resilience_breaker_failure_ratio", **payments)
        assert not m.has("resilience_breaker_call_duration_seconds", **payments)
        wait_until(
            lambda: bool(prometheus.query(f'resilience_breaker_state{{source="{SOURCE}"}}')),
            timeout=60,
            interval=0.5,
            what="Prometheus to scrape the service's breakers",
        )

        dep.mode = "ok"
        for _ in range(4):
            assert fire(service) == ("paid", "closed")
        dep.mode = "slow"
        assert fire(service) == ({"fallback": "ETIMEDOUT"}, "closed")
        dep.mode = "fail"
        failures = 0
        state = "closed"
        while state == "closed":
            assert failures < 20, "the breaker never opened"
            result, state = fire(service)
            assert result == {"fallback": "dependency answered HTTP 500"}
            failures += 1
        assert state == "open"
        for _ in range(3):
            assert fire(service) == ({"fallback": "EOPENBREAKER"}, "open")

        expected = {"success": 4, "failure": failures, "timeout": 1, "rejected": 3}
        m = exporter.wait_for(
            f"the exporter to report payments open with calls {expected}",
            lambda exp: (
                state_is("payments", "open")(exp) and window_calls(exp, "payments") == expected
            ),
            timeout=RESET_TIMEOUT_SECONDS,
        )
        assert reported_outcomes(service.health(), "payments") == expected
        # Every failed, timed-out and rejected call was answered by the fallback.
        assert m.value("resilience_breaker_window_fallbacks", **payments) == failures + 1 + 3
        # opossum's own trip ratio: its failures (timeouts included) over all calls fired.
        assert m.value("resilience_breaker_failure_ratio", **payments) == pytest.approx(
            (failures + 1) / (4 + 1 + failures + 3)
        )
        quantiles = {
            dict(k)["quantile"]: v
            for k, v in m.series("resilience_breaker_call_duration_seconds", **payments).items()
        }
        assert set(quantiles) == {"0", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99", "0.995", "1"}
        assert quantiles["1"] >= 1.9, "the timed-out call took the breaker's 2 s timeout"
        assert quantiles["0"] <= quantiles["0.5"] <= quantiles["1"]
        # A window is not a total, and opossum counts no transitions: none are invented.
        assert not m.has("resilience_breaker_calls_total", **payments)
        assert not m.has("resilience_breaker_fallbacks_total", **payments)
        assert not m.has("resilience_breaker_transitions_total", **payments)

        def alert_fired() -> bool:
            if exporter.scrape().value("resilience_breaker_state", **payments, state="open") != 1:
                raise ServerError(
                    f"the breaker left open before {ALERT} fired: this machine was too slow "
                    f"for the {RESET_TIMEOUT_SECONDS} s reset timeout"
                )
            return bool(firing(prometheus))

        wait_until(alert_fired, timeout=RESET_TIMEOUT_SECONDS, interval=0.5, what=f"{ALERT}")
        (alert,) = firing(prometheus)
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["target"] == SOURCE

        exporter.wait_for(
            "payments half-open after its reset timeout",
            state_is("payments", "half_open"),
            timeout=RESET_TIMEOUT_SECONDS + 30,
        )
        assert reported_breaker(service.health(), "payments")["state"]["halfOpen"] is True
        dep.mode = "ok"
        assert fire(service) == ("paid", "closed")
        expected["success"] += 1
        m = exporter.wait_for(
            "payments closed again",
            lambda exp: (
                state_is("payments", "closed")(exp) and window_calls(exp, "payments") == expected
            ),
            timeout=30,
        )
        assert m.value("resilience_breaker_state", **payments, state="open") == 0
        wait_until(
            lambda: not firing(prometheus),
            timeout=60,
            interval=0.5,
            what=f"{ALERT} to resolve",
        )


@pytest.mark.slow
def test_window_counts_leave_with_the_window(
    service: NodeService, exporter: ExporterProcess
) -> None:
    """The window gauges follow opossum's rolling window: calls leave it after
    rollingCountTimeout, and the exporter does not keep them as totals."""
    for _ in range(3):
        assert fire(service, "quick")[0] == "ok"
    exporter.wait_for(
        "the three calls in the quick window",
        lambda exp: window_calls(exp, "quick")["success"] == 3,
        timeout=QUICK_WINDOW_SECONDS,
    )
    m = exporter.wait_for(
        "the quick window to empty",
        lambda exp: window_calls(exp, "quick") == dict.fromkeys(OUTCOMES, 0),
        timeout=QUICK_WINDOW_SECONDS + 30,
    )
    assert reported_outcomes(service.health(), "quick") == dict.fromkeys(OUTCOMES, 0)
    assert not m.has("resilience_breaker_calls_total", breaker="quick", source=SOURCE)


# --- the documentation's route is the one the service runs -------------------------------
def test_the_documented_route_is_the_tested_one() -> None:
    docs = DOCS.read_text()
    module = (NODE_APP / "resilience-health.js").read_text()
    function = module.split("\nmodule.exports")[0].strip()
    assert function in docs, "docs/application-health.md must show tests/node_app's function"
    server = (NODE_APP / "server.js").read_text()
    route = next(line for line in server.splitlines() if line.startswith("app.get("))
    assert route in docs
