"""Publishing a Python application's own breakers and pools on the exporter's schema.

    from resilience_exporter.instrument import Instrumentation

    health = Instrumentation(source="checkout")
    health.track_breaker(payments_breaker)          # pybreaker, aiobreaker or circuitbreaker
    health.track_pool(engine)                       # SQLAlchemy Engine / AsyncEngine / pool,
    health.track_pool(pg_pool, name="events-db")    # asyncpg, psycopg_pool, redis-py
    health.register()                               # into prometheus_client's REGISTRY, or
    health.add_asgi_route(app)                      # FastAPI / Starlette: GET /health/resilience
    health.add_aiohttp_route(app)                   # (aiohttp), or health.wsgi_app() (WSGI)

Importing this package starts nothing and imports none of the breaker or pool libraries nor
a web framework; each is imported only when one of its objects is passed or the matching
method used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from resilience_exporter.instrument.breaker import BreakerTracker
from resilience_exporter.instrument.checkouts import DEFAULT_LEAK_THRESHOLD
from resilience_exporter.instrument.document import generic_document
from resilience_exporter.instrument.pools import (
    PoolReader,
    PsycopgPoolReader,
    RedisPoolReader,
    reader_for,
)
from resilience_exporter.metrics.breaker_schema import BreakerView, breaker_samples
from resilience_exporter.metrics.families import Sample
from resilience_exporter.metrics.pool_schema import PoolStats, pool_samples

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    import redis
    import redis.asyncio
    from aiohttp import web
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = ["BreakerTracker", "Instrumentation", "PoolReader"]

DEFAULT_PATH = "/health/resilience"


class Instrumentation:
    """The breakers and pools of one application; `source` becomes their `source` label."""

    def __init__(self, *, source: str) -> None:
        if not source:
            raise ValueError("source names the application and must not be empty")
        self.source = source
        self._lock = threading.Lock()
        self._breakers: dict[str, BreakerTracker] = {}
        self._pools: dict[str, PoolReader] = {}

    def track_breaker(
        self,
        breaker: Any,
        *,
        name: str | None = None,
        window: int = 100,
        slow_call_threshold: float | None = None,
    ) -> BreakerTracker:
        """A `pybreaker.CircuitBreaker`, an `aiobreaker.CircuitBreaker` or a
        `circuitbreaker.CircuitBreaker`, recognised by its class. `window`: how many recent
        calls the failure ratio (and the durations) cover; `slow_call_threshold`: seconds
        beyond which a call counts as slow (call durations are measured only when given)."""
        tracker = BreakerTracker(breaker, window=window, slow_call_threshold=slow_call_threshold)
        self._add(self._breakers, name or tracker.name, tracker)
        return tracker

    def track_pool(
        self,
        pool: Any,
        *,
        name: str | None = None,
        leak_threshold: float = DEFAULT_LEAK_THRESHOLD,
    ) -> PoolReader:
        """A SQLAlchemy `Engine`, `AsyncEngine` or `QueuePool`, an asyncpg `Pool`, a
        psycopg_pool pool, a redis-py pool, or any `PoolReader` (an object with a `name` and a
        `stats()` returning `PoolStats`), recognised by its class. Where the checkouts can be
        observed (SQLAlchemy, asyncpg, psycopg_pool) acquires and holds are timed, and
        connections out for longer than `leak_threshold` seconds are reported."""
        reader = reader_for(pool, name=name, leak_threshold=leak_threshold)
        self._add(self._pools, reader.name, reader)
        return reader

    def track_psycopg_pool(
        self,
        pool: ConnectionPool[Any] | AsyncConnectionPool[Any],
        *,
        name: str | None = None,
        leak_threshold: float | None = None,
    ) -> None:
        """The pool's own statistics; with a `leak_threshold`, its checkouts too (as
        `track_pool` does)."""
        reader = PsycopgPoolReader(pool, name=name, leak_threshold=leak_threshold)
        self._add(self._pools, reader.name, reader)

    def track_redis_pool(
        self, pool: redis.ConnectionPool | redis.asyncio.ConnectionPool, *, name: str
    ) -> None:
        self._add(self._pools, name, RedisPoolReader(pool, name=name))

    def _add(self, where: dict[str, Any], name: str, item: object) -> None:
        with self._lock:
            if name in where:
                raise ValueError(f"{name!r} is tracked already")
            where[name] = item

    def views(self) -> tuple[dict[str, BreakerView], dict[str, PoolStats]]:
        with self._lock:
            breakers, pools = dict(self._breakers), dict(self._pools)
        return (
            {name: tracker.view() for name, tracker in breakers.items()},
            {name: reader.stats() for name, reader in pools.items()},
        )

    def samples(self) -> list[Sample]:
        breakers, pools = self.views()
        out: list[Sample] = []
        for name, view in breakers.items():
            out += breaker_samples(name, self.source, view)
        for name, stats in pools.items():
            out += pool_samples(name, self.source, stats)
        return out

    def document(self) -> dict[str, Any]:
        """The `generic` health document, ready for `json.dumps`."""
        return generic_document(*self.views())

    # prometheus_client

    def collect(self) -> Iterator[Metric]:
        from resilience_exporter.metrics.client_python import metric_families

        yield from metric_families(self.samples())

    def register(self, registry: CollectorRegistry | None = None) -> None:
        """Add the families to an application's registry (client_python's global one by
        default)."""
        from prometheus_client import REGISTRY

        # A Protocol in client_python 0.21 and later, an abstract class before: this class is
        # a collector by its collect(), without inheriting from either.
        (registry or REGISTRY).register(cast("Collector", self))

    # Serving the document

    def aiohttp_handler(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        from aiohttp import web

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(self.document())

        return handler

    def add_aiohttp_route(self, app: web.Application, path: str = DEFAULT_PATH) -> None:
        app.router.add_get(path, self.aiohttp_handler())

    def asgi_app(self) -> DocumentASGIApp:
        """An ASGI application answering GET (and HEAD) with the document."""
        return DocumentASGIApp(self)

    def add_asgi_route(self, app: Any, path: str = DEFAULT_PATH) -> None:
        """GET `path` on a Starlette or FastAPI application (anything with Starlette's
        `add_route`), served by `asgi_app()`; nothing of Starlette is imported."""
        app.add_route(path, self.asgi_app(), methods=["GET"])

    def wsgi_app(self) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
        """A WSGI application answering every request with the document; mount it at a path
        of the application's framework (or use it alone)."""

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            body = json.dumps(self.document()).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]

        return app


class DocumentASGIApp:
    """A class rather than a function: Starlette runs a plain function given as a route's
    endpoint as a request handler, and an object as an ASGI application."""

    def __init__(self, instrumentation: Instrumentation) -> None:
        self.instrumentation = instrumentation

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"the health document is served over HTTP, not {scope['type']}")
        if scope["method"] in ("GET", "HEAD"):
            status, body = 200, json.dumps(self.instrumentation.document()).encode()
            headers = [(b"content-type", b"application/json")]
        else:
            status, body = 405, b"method not allowed\n"
            headers = [(b"content-type", b"text/plain"), (b"allow", b"GET, HEAD")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})
