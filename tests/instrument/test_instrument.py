"""`resilience_exporter.instrument` with real pybreaker breakers, psycopg_pool pools against a real
PostgreSQL and redis-py pools against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import psycopg
import pybreaker
import pytest
import redis
import redis.asyncio
from aiohttp import web
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import Scrape, application_series, read_by_http_target
from fastapi import FastAPI
from http_app import BackgroundApp, BackgroundASGI
from prometheus_client import CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from resilience_exporter.instrument import Instrumentation
from resilience_exporter.metrics.breaker_schema import BreakerView
from resilience_exporter.metrics.health_mapping import apply
from resilience_exporter.metrics.health_presets import PRESETS
from resilience_exporter.metrics.pool_schema import PoolStats
from scripts.testservers.base import ServerProcess, free_port, port_open, require_binary, wait_until
from scripts.testservers.postgres import PostgresServer


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A throwaway redis-server on a free loopback port, stopped by PID."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    binary = require_binary("redis-server", "redis-server")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = ServerProcess("redis", argv, log_path=workdir / "redis.log", cwd=workdir)
    server.start()
    try:
        wait_until(lambda: port_open(port), timeout=30, what="redis-server to listen")
        yield port
    finally:
        server.stop()


def fail() -> None:
    raise ConnectionError("the dependency is down")


def succeed() -> str:
    return "ok"


def test_pybreaker_calls_transitions_and_ratio() -> None:
    # A reset timeout no test run reaches; it is shortened below to let the trial call in.
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=3600, name="payments")
    health = Instrumentation(source="checkout")
    tracker = health.track_breaker(breaker)
    ran: list[str] = []

    def guarded(outcome: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            ran.append(outcome.__name__)
            return outcome()

        return run

    rejected = 0

    def call(outcome: Callable[[], Any]) -> bool:
        nonlocal rejected
        before = len(ran)
        try:
            breaker.call(guarded(outcome))
        except pybreaker.CircuitBreakerError:
            if len(ran) == before:
                rejected += 1
            return False
        except ConnectionError:
            return False
        return True

    assert tracker.view() == BreakerView(
        state="closed", calls={"success": 0, "failure": 0, "rejected": 0}, transitions={},
        next_attempt_at=0.0,
    )  # fmt: skip
    assert call(succeed)
    for _ in range(3):
        assert not call(fail)  # the third one trips the breaker
    view = tracker.view()
    assert view.state == "open"
    assert view.calls == {"success": 1, "failure": 3, "rejected": 0}
    assert view.failure_ratio == 0.75
    assert view.transitions == {("closed", "open"): 1}
    assert view.next_attempt_at is not None
    assert view.next_attempt_at > time.time() + 3000
    for _ in range(2):
        assert not call(succeed)
    assert rejected == 2, "calls while open are rejected without running"

    # Once the reset timeout has passed, a trial call goes through and closes the breaker.
    breaker.reset_timeout = 0
    assert call(succeed)
    view = tracker.view()
    assert view.state == "closed"
    assert view.calls == {"success": 2, "failure": 3, "rejected": 2}
    assert ran.count("succeed") == 2
    assert view.transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }
    assert view.next_attempt_at == 0.0

    # The decorator and the context manager go through the same counting.
    @breaker
    def decorated() -> str:
        return "ok"

    decorated()
    with breaker.calling():
        pass
    assert tracker.view().calls == {"success": 4, "failure": 3, "rejected": 2}


def test_half_open_trial_failure_reopens() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600, name="search")
    health = Instrumentation(source="app")
    tracker = health.track_breaker(breaker)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    breaker.reset_timeout = 0
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)  # the trial call, which fails
    view = tracker.view()
    assert view.state == "open"
    assert view.transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "open"): 1,
    }
    calls = view.calls or {}
    assert calls["failure"] == 2
    assert calls["success"] == 0


@pytest.mark.slow
def test_psycopg_pools_sync_and_async(postgres: PostgresServer) -> None:
    dsn = postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)
    health = Instrumentation(source="orders")
    with ConnectionPool(dsn, min_size=1, max_size=2, name="orders-db", timeout=30) as pool:
        pool.wait(timeout=30)
        health.track_psycopg_pool(pool)
        first, second = pool.getconn(), pool.getconn()
        assert health.views()[1]["orders-db"] == PoolStats(
            in_use=2, idle=0, max_size=2, min_size=1, pending=0,
            connect_errors=0, acquire_errors=0, lost=0,
        )  # fmt: skip
        # A third request waits until a connection comes back.
        waiter = threading.Thread(target=_use_a_connection, args=(pool,))
        waiter.start()
        wait_until(
            lambda: health.views()[1]["orders-db"].pending == 1,
            timeout=30,
            what="the waiting request to show",
        )
        pool.putconn(first)
        waiter.join(60)
        first = pool.getconn()
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.05)  # nothing free: this request gives up
        pool.putconn(first)
        pool.putconn(second)
        stats = health.views()[1]["orders-db"]
        assert (stats.in_use, stats.idle, stats.pending) == (0, 2, 0)
        assert stats.acquire_errors == 1

    async def with_async_pool() -> PoolStats:
        async with AsyncConnectionPool(
            dsn, min_size=2, max_size=3, name="async-db", open=False
        ) as apool:
            await apool.wait(timeout=30)
            health.track_psycopg_pool(apool, name="reports-db")
            async with apool.connection() as conn:
                await conn.execute("SELECT 1")
                return health.views()[1]["reports-db"]

    assert asyncio.run(with_async_pool()) == PoolStats(
        in_use=1, idle=1, max_size=3, min_size=2, pending=0,
        connect_errors=0, acquire_errors=0, lost=0,
    )  # fmt: skip


def _use_a_connection(pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
    with pool.connection(timeout=60) as conn:
        conn.execute("SELECT 1")


# redis-py leaves some pool methods without annotations, hence the ignores below.
@pytest.mark.slow
def test_redis_pools_sync_and_async(redis_port: int) -> None:
    health = Instrumentation(source="cart")
    pool = redis.ConnectionPool(host="127.0.0.1", port=redis_port, max_connections=4)
    health.track_redis_pool(pool, name="sessions")
    try:
        first = pool.get_connection()
        second = pool.get_connection()
        first.send_command("PING")  # type: ignore[no-untyped-call]
        assert first.read_response() in (b"PONG", "PONG")
        assert health.views()[1]["sessions"] == PoolStats(in_use=2, idle=0, max_size=4)
        pool.release(second)
        assert health.views()[1]["sessions"] == PoolStats(in_use=1, idle=1, max_size=4)
        pool.release(first)
        assert redis.Redis(connection_pool=pool).ping()
        assert health.views()[1]["sessions"] == PoolStats(in_use=0, idle=2, max_size=4)
    finally:
        pool.disconnect()

    blocking = redis.BlockingConnectionPool(host="127.0.0.1", port=redis_port, max_connections=3)  # type: ignore[no-untyped-call]
    health.track_redis_pool(blocking, name="locks")
    try:
        held = blocking.get_connection()  # type: ignore[no-untyped-call]
        assert health.views()[1]["locks"] == PoolStats(in_use=1, idle=0, max_size=3)
        blocking.release(held)  # type: ignore[no-untyped-call]
        assert health.views()[1]["locks"] == PoolStats(in_use=0, idle=1, max_size=3)
    finally:
        blocking.disconnect()

    async def with_async_pool() -> tuple[PoolStats, PoolStats]:
        apool = redis.asyncio.ConnectionPool(host="127.0.0.1", port=redis_port, max_connections=5)
        health.track_redis_pool(apool, name="async-cache")
        try:
            client = redis.asyncio.Redis(connection_pool=apool)
            assert await client.ping()
            connection = await apool.get_connection()  # type: ignore[no-untyped-call]
            during = health.views()[1]["async-cache"]
            await apool.release(connection)
            return during, health.views()[1]["async-cache"]
        finally:
            await apool.disconnect()

    during, after = asyncio.run(with_async_pool())
    assert during == PoolStats(in_use=1, idle=0, max_size=5)
    assert after == PoolStats(in_use=0, idle=1, max_size=5)


def test_collector_produces_the_shared_families() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, name="payments")
    health = Instrumentation(source="checkout")
    health.track_breaker(breaker)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    registry = CollectorRegistry()
    health.register(registry)
    m = Scrape(generate_latest(registry).decode())
    b = {"breaker": "payments", "source": "checkout"}
    assert m.value("resilience_breaker_state", **b, state="open") == 1
    assert m.value("resilience_breaker_calls_total", **b, outcome="failure") == 1
    assert m.value("resilience_breaker_failure_ratio", **b) == 1
    assert m.value("resilience_breaker_transitions_total", **b, to_state="open") == 1
    assert m.types["resilience_breaker_calls"] == "counter"


def loaded_by_import(packages: tuple[str, ...], *modules: str) -> str:
    """The modules of `packages` (and the `modules` named) that importing
    resilience_exporter.instrument loads, as printed by a fresh interpreter."""
    code = (
        "import sys, resilience_exporter.instrument\n"
        f"print([m for m in sys.modules\n"
        f"       if m.split('.')[0] in {packages!r} or m in {modules!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


@pytest.mark.slow
def test_importing_starts_and_pulls_in_nothing() -> None:
    packages = ("pybreaker", "aiohttp", "psycopg_pool", "redis")
    assert loaded_by_import(packages, "resilience_exporter.probing.runtime") == "[]"


@pytest.mark.slow
def test_importing_pulls_in_none_of_the_new_libraries() -> None:
    libraries = (
        "sqlalchemy", "asyncpg", "aiobreaker", "circuitbreaker", "fastapi", "starlette",
        "uvicorn", "greenlet",
    )  # fmt: skip
    assert loaded_by_import(libraries) == "[]"


def request(url: str, method: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_asgi_route_on_fastapi_and_the_bare_asgi_app() -> None:
    breaker = pybreaker.CircuitBreaker(name="payments")
    health = Instrumentation(source="checkout")
    health.track_breaker(breaker)
    breaker.call(succeed)
    app = FastAPI()
    health.add_asgi_route(app)
    with BackgroundASGI(app) as served, BackgroundASGI(health.asgi_app()) as bare:
        status, headers, body = request(f"{served.url}/health/resilience", "GET")
        assert (status, headers["content-type"]) == (200, "application/json")
        assert json.loads(body) == health.document()
        assert apply(PRESETS["generic"], json.loads(body)).samples("checkout") == health.samples()
        status, headers, body = request(f"{served.url}/health/resilience", "HEAD")
        assert (status, body) == (200, b"")
        assert request(f"{served.url}/health/resilience", "POST")[0] == 405
        assert request(f"{served.url}/elsewhere", "GET")[0] == 404
        # Alone, the app answers every path; it refuses other methods itself.
        status, headers, body = request(f"{bare.url}/anything", "GET")
        assert (status, json.loads(body)) == (200, health.document())
        status, headers, _ = request(f"{bare.url}/", "DELETE")
        assert (status, headers["allow"]) == (405, "GET, HEAD")


def serve_wsgi(app: Any) -> tuple[str, Callable[[], None]]:
    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(30)

    return f"http://127.0.0.1:{server.server_port}/", stop


def test_wsgi_app_serves_the_generic_document() -> None:
    breaker = pybreaker.CircuitBreaker(name="payments")
    health = Instrumentation(source="checkout")
    health.track_breaker(breaker)
    breaker.call(succeed)
    url, stop = serve_wsgi(health.wsgi_app())
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
            document = json.loads(response.read())
    finally:
        stop()
    assert document == {
        "version": 1,
        "breakers": [
            {
                "name": "payments",
                "state": "closed",
                "failure_ratio": 0.0,
                "calls": {"success": 1, "failure": 0, "rejected": 0},
                "transitions": [],
                "next_attempt_at": 0.0,
            }
        ],
        "pools": [],
    }
    assert apply(PRESETS["generic"], document).samples("checkout") == health.samples()


@pytest.mark.slow
def test_round_trip_through_the_exporter_matches_the_collector(
    postgres: PostgresServer, redis_port: int, workdir: Path
) -> None:
    """The document served in-process, read back by a `preset: generic` target, gives the same
    series as the collector registered in the application's own registry."""
    health = Instrumentation(source="checkout")
    payments = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=3600, name="payments")
    inventory = pybreaker.CircuitBreaker(fail_max=5, name="inventory")
    health.track_breaker(payments)
    health.track_breaker(inventory)
    for func in (succeed, fail, fail, succeed):
        with contextlib.suppress(ConnectionError, pybreaker.CircuitBreakerError):
            payments.call(func)
    inventory.call(succeed)
    with pytest.raises(ConnectionError):
        inventory.call(fail)

    dsn = postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)
    rpool = redis.ConnectionPool(host="127.0.0.1", port=redis_port, max_connections=6)
    health.track_redis_pool(rpool, name="cache")
    with ConnectionPool(dsn, min_size=2, max_size=4, name="orders-db") as pool:
        pool.wait(timeout=30)
        health.track_psycopg_pool(pool)
        held = pool.getconn()
        redis_held = rpool.get_connection()
        registry = CollectorRegistry()
        health.register(registry)

        def build() -> web.Application:
            app = web.Application()
            health.add_aiohttp_route(app)
            return app

        try:
            with BackgroundApp(build) as app:
                scraped = read_by_http_target(
                    workdir, name="checkout", url=f"{app.url}/health/resilience"
                )
                local = Scrape(generate_latest(registry).decode())
        finally:
            pool.putconn(held)
            rpool.release(redis_held)
            rpool.disconnect()

    def shared(exp: Scrape) -> dict[str, dict[Any, float]]:
        return application_series(exp, "checkout")

    assert shared(scraped) == shared(local)
    assert local.value("resilience_breaker_state", breaker="payments", state="open") == 1
    assert local.value("resilience_pool_connections", pool="orders-db", state="in_use") == 1
    assert local.value("resilience_pool_connections", pool="cache", state="in_use") == 1
    assert len(shared(local)["resilience_breaker_calls_total"]) == 6
