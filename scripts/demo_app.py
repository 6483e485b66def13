"""The demo's application: a small FastAPI service with a SQLAlchemy pool on the demo's
PostgreSQL, a redis-py pool on its Redis and a pybreaker breaker around a flaky dependency,
instrumented with `resilience_exporter.instrument` and serving the `generic` document at
/health/resilience for the exporter's `kind: http` target.

    python -m scripts.demo_app --port 8000 --leak-threshold 10
    (DEMO_APP_DATABASE_URL and DEMO_APP_REDIS_URL in the environment, secrets included)

Endpoints: /orders and /cache use the pools; /leak checks a connection out and keeps it,
/release gives the kept ones back; /flaky calls the dependency through the breaker (`fail=1`
makes it fail, `slow=1` makes it slow), answering from a fallback when it fails or the
breaker is open.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

import pybreaker
import redis
import sqlalchemy as sa
import sqlalchemy.exc
import uvicorn
from fastapi import FastAPI, HTTPException

from resilience_exporter.instrument import Instrumentation

SOURCE = "demo-shop"
# The breaker opens after this many failures in a row and lets a trial call in after:
FAIL_MAX = 3
RESET_TIMEOUT = 30
SLOW_CALL_THRESHOLD = 0.5


class DependencyError(ConnectionError):
    """The flaky dependency failed."""


def make_app(*, database_url: str, redis_url: str, leak_threshold: float) -> FastAPI:
    engine = sa.create_engine(database_url, pool_size=2, max_overflow=1, pool_timeout=2)
    cache = redis.ConnectionPool.from_url(redis_url, max_connections=4, socket_timeout=2)
    payments = pybreaker.CircuitBreaker(
        fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT, name="payments"
    )
    health = Instrumentation(source=SOURCE)
    health.track_pool(engine, name="orders-db", leak_threshold=leak_threshold)
    health.track_pool(cache, name="cache")
    tracker = health.track_breaker(payments, slow_call_threshold=SLOW_CALL_THRESHOLD)
    leaked: list[sa.Connection] = []
    leaked_lock = threading.Lock()

    app = FastAPI(title="resilience-exporter demo shop")
    health.add_asgi_route(app)

    # Sync endpoints: FastAPI runs them in its thread pool, as SQLAlchemy's sync engine needs.
    @app.get("/")
    def index() -> dict[str, str]:
        return {
            "/orders": "a query through the SQLAlchemy pool",
            "/cache": "an INCR through the redis-py pool",
            "/leak": "check a connection out and keep it (a leak)",
            "/release": "give the kept connections back",
            "/flaky?fail=1": "a failing call through the breaker (3 in a row open it)",
            "/flaky?slow=1": "a slow call through the breaker",
            "/health/resilience": "the generic document the exporter reads",
        }

    @app.get("/orders")
    def orders() -> dict[str, Any]:
        try:
            with engine.connect() as conn:
                sessions = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity")).scalar()
        except sa.exc.TimeoutError as error:
            raise HTTPException(503, "no connection free: the pool is exhausted") from error
        return {"sessions": sessions}

    @app.get("/cache")
    def cached() -> dict[str, Any]:
        return {"hits": redis.Redis(connection_pool=cache).incr("demo:hits")}

    @app.get("/leak")
    def leak() -> dict[str, Any]:
        try:
            conn = engine.connect()
        except sa.exc.TimeoutError as error:
            raise HTTPException(503, "the pool is exhausted: nothing left to leak") from error
        with leaked_lock:
            leaked.append(conn)
            return {"leaked": len(leaked), "long_held_after_seconds": leak_threshold}

    @app.get("/release")
    def release() -> dict[str, Any]:
        with leaked_lock:
            released = len(leaked)
            while leaked:
                leaked.pop().close()
        return {"released": released}

    def charge(fail: bool, slow: bool) -> str:
        if slow:
            time.sleep(SLOW_CALL_THRESHOLD * 2)
        if fail:
            raise DependencyError("the payment provider is down")
        return "charged"

    @tracker.fallback_to(lambda fail, slow: "queued for later (fallback)")
    def pay(fail: bool, slow: bool) -> str:
        result: str = payments.call(charge, fail, slow)
        return result

    @app.get("/flaky")
    def flaky(fail: int = 0, slow: int = 0) -> dict[str, str]:
        return {"payment": pay(bool(fail), bool(slow)), "breaker": payments.current_state}

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--leak-threshold", type=float, default=10.0, metavar="SECONDS")
    args = parser.parse_args()
    app = make_app(
        database_url=os.environ["DEMO_APP_DATABASE_URL"],
        redis_url=os.environ["DEMO_APP_REDIS_URL"],
        leak_threshold=args.leak_threshold,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
