"""`Instrumentation.track_pool` with real SQLAlchemy engines (sync and async), asyncpg and
psycopg_pool pools against a real PostgreSQL: sizes, in use, overflow, waiting requests,
acquire and hold histograms, connections held past the leak threshold; and the leak alert and
the pool health state in a real Prometheus fed by a real exporter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import circuitbreaker
import pytest
import redis
import sqlalchemy as sa
import sqlalchemy.exc
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import (
    ExporterProcess,
    Scrape,
    application_series,
    http_target_config,
    read_by_http_target,
)
from fastapi import FastAPI
from http_app import BackgroundASGI
from prometheus_client import CollectorRegistry, generate_latest
from psycopg_pool import ConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from tests_support import eventually

from alerts.generate import render, write_rules
from alerts.thresholds import load_thresholds
from resilience_exporter.instrument import Instrumentation
from resilience_exporter.metrics.families import HistogramValue
from resilience_exporter.metrics.pool_schema import PoolStats
from scripts.testservers.base import wait_until
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

# Short enough for a test to hold a connection past it, long enough that a quick query is
# never counted.
LEAK = 0.5


def count(histogram: HistogramValue | None) -> int:
    assert histogram is not None
    return histogram.count


def total(histogram: HistogramValue | None) -> float:
    assert histogram is not None
    return histogram.sum


def sqlalchemy_url(postgres: PostgresServer, *, driver: str, password: str) -> str:
    return f"postgresql+{driver}://{MONITOR_USER}:{password}@127.0.0.1:{postgres.port}/postgres"


@pytest.fixture
def sync_engine(postgres: PostgresServer) -> Iterator[sa.Engine]:
    url = sqlalchemy_url(postgres, driver="psycopg", password=MONITOR_PASSWORD)
    engine = sa.create_engine(url, pool_size=2, max_overflow=1, pool_timeout=30)
    try:
        yield engine
    finally:
        engine.dispose()


def _query(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def test_sqlalchemy_engine_sizes_waiters_histograms_and_leaks(sync_engine: sa.Engine) -> None:
    health = Instrumentation(source="orders")
    reader = health.track_pool(sync_engine, leak_threshold=LEAK)
    assert reader.name == "postgres", "named after the engine's database"

    def stats() -> PoolStats:
        return health.views()[1]["postgres"]

    first, second = sync_engine.connect(), sync_engine.connect()
    now = stats()
    assert (now.in_use, now.idle, now.max_size, now.overflow, now.pending) == (2, 0, 3, 0, 0)
    third = sync_engine.connect()  # beyond pool_size: an overflow connection
    assert (stats().in_use, stats().overflow) == (3, 1)

    waiter = threading.Thread(target=_query, args=(sync_engine,))
    waiter.start()
    wait_until(lambda: stats().pending == 1, timeout=30, what="the fourth request to wait")
    third.close()  # the waiting request gets it
    waiter.join(30)
    now = stats()
    assert now.pending == 0
    assert count(now.acquire) == 4
    assert count(now.hold) == 2
    assert count(now.connect) == 3, "three connections opened"
    assert now.leak_threshold == LEAK

    # first and second stay out: past the threshold they are long-held.
    wait_until(lambda: stats().long_held == 2, timeout=30, what="two long-held connections")
    assert (stats().oldest_checkout_age or 0) > LEAK
    first.close()
    second.close()
    now = stats()
    assert (now.in_use, now.long_held, now.oldest_checkout_age) == (0, 0, 0.0)
    assert count(now.hold) == 4
    assert total(now.hold) > 2 * LEAK

    # Events follow the engine to the pool dispose() makes.
    sync_engine.dispose()
    _query(sync_engine)
    _query(sync_engine)
    now = stats()
    assert count(now.hold) == 6
    assert count(now.acquire) == 5, "the first acquire on the new pool is not timed"
    assert (now.in_use, now.idle) == (0, 1)
    assert (now.lost, now.connect_errors, now.acquire_errors) == (0, 0, 0)


def test_sqlalchemy_timeouts_invalidations_and_connect_errors(postgres: PostgresServer) -> None:
    health = Instrumentation(source="orders")
    url = sqlalchemy_url(postgres, driver="psycopg", password=MONITOR_PASSWORD)
    engine = sa.create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    wrong = sa.create_engine(sqlalchemy_url(postgres, driver="psycopg", password="wrong"))
    health.track_pool(engine, name="small", leak_threshold=LEAK)
    health.track_pool(wrong, name="refused")
    try:
        with engine.connect() as held:
            with pytest.raises(sqlalchemy.exc.TimeoutError):
                engine.connect()
            held.invalidate()  # e.g. after a disconnect: the connection is discarded
        with pytest.raises(sqlalchemy.exc.OperationalError):
            wrong.connect()
        small, refused = health.views()[1]["small"], health.views()[1]["refused"]
        assert (small.acquire_errors, small.lost, small.pending, small.in_use) == (1, 1, 0, 0)
        assert (refused.connect_errors, refused.acquire_errors) == (1, 1)
        assert count(refused.connect) == 0
    finally:
        engine.dispose()
        wrong.dispose()


def test_sqlalchemy_async_engine(postgres: PostgresServer) -> None:
    url = sqlalchemy_url(postgres, driver="psycopg", password=MONITOR_PASSWORD)

    async def use(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def scenario() -> None:
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=30)
        health = Instrumentation(source="reports")
        health.track_pool(engine, name="reports-db", leak_threshold=LEAK)

        def stats() -> PoolStats:
            return health.views()[1]["reports-db"]

        try:
            held = await engine.connect()
            waiter = asyncio.create_task(use(engine))
            await eventually(lambda: stats().pending == 1, "the second request to wait")
            await eventually(lambda: stats().long_held == 1, "the held connection to be long")
            now = stats()
            assert (now.in_use, now.idle, now.max_size, now.overflow) == (1, 0, 1, 0)
            await held.close()
            await asyncio.wait_for(waiter, 30)
            now = stats()
            assert (now.in_use, now.idle, now.pending, now.long_held) == (0, 1, 0, 0)
            assert (count(now.acquire), count(now.hold), count(now.connect)) == (2, 2, 1)
            assert total(now.hold) > LEAK
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_asyncpg_pool(postgres: PostgresServer) -> None:
    dsn = postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)

    async def scenario() -> None:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        health = Instrumentation(source="events")
        health.track_pool(pool, name="events-db", leak_threshold=LEAK)

        def stats() -> PoolStats:
            return health.views()[1]["events-db"]

        try:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
                now = stats()
                assert (now.in_use, now.idle, now.max_size, now.min_size) == (1, 0, 2, 1)
            first, second = await pool.acquire(), await pool.acquire()
            waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
            await eventually(lambda: stats().pending == 1, "the third request to wait")
            with pytest.raises(asyncio.TimeoutError):
                await pool.acquire(timeout=0.05)
            await eventually(lambda: stats().long_held == 2, "two long-held connections")
            await pool.release(first)
            assert await asyncio.wait_for(waiter, 30) == 1
            now = stats()
            assert (now.in_use, now.pending, now.long_held, now.acquire_errors) == (1, 0, 1, 1)
            # A connection closed while checked out goes back to the pool without release().
            await second.close()
            await eventually(lambda: stats().in_use == 0, "the closed connection to go back")
            now = stats()
            assert (now.long_held, now.oldest_checkout_age) == (0, 0.0)
            assert (count(now.acquire), count(now.hold)) == (4, 3)
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_psycopg_pool_checkouts_through_track_pool(postgres: PostgresServer) -> None:
    dsn = postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)
    health = Instrumentation(source="orders")
    with ConnectionPool(dsn, min_size=1, max_size=2, name="orders-db", timeout=30) as pool:
        pool.wait(timeout=30)
        health.track_pool(pool, leak_threshold=LEAK)
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        held = pool.getconn()
        wait_until(
            lambda: health.views()[1]["orders-db"].long_held == 1,
            timeout=30,
            what="the held connection to count as long-held",
        )
        pool.putconn(held)
        now = health.views()[1]["orders-db"]
        # The pool's own statistics are kept; the checkouts add the histograms and leaks.
        assert (now.in_use, now.max_size, now.min_size, now.acquire_errors) == (0, 2, 1, 0)
        assert (count(now.acquire), count(now.hold), now.long_held) == (2, 2, 0)


def test_what_track_pool_refuses(postgres: PostgresServer) -> None:
    health = Instrumentation(source="app")
    with pytest.raises(TypeError, match="not a pool this helper knows"):
        health.track_pool(object())
    with pytest.raises(ValueError, match="name= is required"):
        health.track_pool(redis.ConnectionPool(host="127.0.0.1", port=1))
    url = sqlalchemy_url(postgres, driver="psycopg", password=MONITOR_PASSWORD)
    with pytest.raises(TypeError, match="NullPool is not supported"):
        health.track_pool(sa.create_engine(url, poolclass=NullPool))
    engine = sa.create_engine(url)
    health.track_pool(engine, name="one")
    with pytest.raises(ValueError, match="tracked already"):
        health.track_pool(engine, name="two")
    with pytest.raises(ValueError, match="leak_threshold must be a positive"):
        health.track_pool(sa.create_engine(url), name="three", leak_threshold=0)
    engine.dispose()


def test_a_leak_fires_the_alert_and_shows_the_pool_exhausted(
    postgres: PostgresServer, workdir: Path
) -> None:
    """An application (FastAPI, its pool a SQLAlchemy engine) serves the `generic` document;
    the exporter reads it, Prometheus with the shipped rules (the leak alert's `for:`
    shortened) scrapes the exporter. Holding the only connection past the threshold fires
    ResiliencePoolConnectionLeak and makes the pool exhausted; releasing it clears both."""
    url = sqlalchemy_url(postgres, driver="psycopg", password=MONITOR_PASSWORD)
    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    health = Instrumentation(source="shop")
    health.track_pool(engine, name="orders-db", leak_threshold=LEAK)
    app = FastAPI()
    health.add_asgi_route(app)
    thresholds = load_thresholds(
        overrides={"alerts": {"ResiliencePoolConnectionLeak": {"for": "2s"}}}
    )
    rule_files = write_rules(workdir / "rules", render(thresholds))
    pool = 'pool="orders-db", source="shop"'
    try:
        with (
            BackgroundASGI(app) as served,
            ExporterProcess(
                workdir, config=http_target_config("shop", f"{served.url}/health/resilience")
            ) as exporter,
            PrometheusServer(
                scrape={"resilience-exporter": [f"127.0.0.1:{exporter.port}"]},
                rule_files=rule_files,
            ) as prometheus,
        ):

            def firing() -> bool:
                return any(
                    alert["labels"]["alertname"] == "ResiliencePoolConnectionLeak"
                    and alert["labels"]["pool"] == "orders-db"
                    and alert["state"] == "firing"
                    for alert in prometheus.alerts()
                )

            def state(name: str) -> bool:
                query = f'pool:resilience_pool_health:state{{{pool}, state="{name}"}} == 1'
                return bool(prometheus.query(query))

            wait_until(lambda: state("healthy"), timeout=60, what="the pool to show healthy")
            held = engine.connect()
            try:
                wait_until(lambda: state("exhausted"), timeout=60, what="the pool exhausted")
                wait_until(firing, timeout=60, what="ResiliencePoolConnectionLeak to fire")
                leaked = prometheus.query(f"resilience_pool_long_held_connections{{{pool}}}")
                assert [float(s["value"][1]) for s in leaked] == [1.0]
            finally:
                held.close()
            wait_until(lambda: not firing(), timeout=60, what="the leak alert to resolve")
            wait_until(lambda: state("healthy"), timeout=60, what="the pool healthy again")
            assert prometheus.query(f"resilience_pool_long_held_connections{{{pool}}} == 0")
    finally:
        engine.dispose()


def test_round_trip_of_tracked_pools_and_breakers(postgres: PostgresServer, workdir: Path) -> None:
    """Histograms, overflow, leak figures and the breakers' slow calls and fallbacks read back
    by a `preset: generic` target give the same series as the application's own collector."""
    url = sqlalchemy_url(postgres, driver="psycopg", password=MONITOR_PASSWORD)
    engine = sa.create_engine(url, pool_size=1, max_overflow=2)
    health = Instrumentation(source="shop")
    health.track_pool(engine, name="orders-db", leak_threshold=LEAK)
    breaker = circuitbreaker.CircuitBreaker(
        failure_threshold=1, recovery_timeout=3600, name="prices", fallback_function=lambda: 0
    )
    health.track_breaker(breaker, slow_call_threshold=1.0)

    @breaker  # type: ignore[untyped-decorator]
    def price() -> int:
        raise ConnectionError("prices are down")

    with pytest.raises(ConnectionError):
        price()
    assert price() == 0  # the fallback
    with engine.connect() as first, engine.connect() as second:
        first.execute(sa.text("SELECT 1"))
        second.execute(sa.text("SELECT 1"))
    registry = CollectorRegistry()
    health.register(registry)
    app = FastAPI()
    health.add_asgi_route(app)
    try:
        with BackgroundASGI(app) as served:
            url = f"{served.url}/health/resilience"
            scraped = read_by_http_target(workdir, name="shop", url=url)
            local = Scrape(generate_latest(registry).decode())
    finally:
        engine.dispose()
    assert application_series(scraped, "shop") == application_series(local, "shop")
    assert local.value("resilience_pool_hold_duration_seconds_count", pool="orders-db") == 2
    assert local.value("resilience_pool_acquire_duration_seconds_count", pool="orders-db") == 2
    assert local.value("resilience_pool_overflow_connections", pool="orders-db") == 0
    assert local.value("resilience_pool_leak_threshold_seconds", pool="orders-db") == LEAK
    assert local.value("resilience_breaker_fallbacks_total", breaker="prices") == 1
    assert local.value("resilience_breaker_slow_calls_total", breaker="prices") == 0
