"""Publishing a Python application's own breakers and pools on the exporter's schema.

    from resilience_exporter.instrument import Instrumentation

    health = Instrumentation(source="checkout")
    health.track_breaker(payments_breaker)          # a pybreaker.CircuitBreaker
    health.track_psycopg_pool(db_pool)              # psycopg_pool, sync or async
    health.track_redis_pool(redis_pool, name="cache")
    health.register()                               # into prometheus_client's REGISTRY, or
    health.add_aiohttp_route(app)                   # GET /health/resilience, `generic` JSON

Importing this package starts nothing and needs none of pybreaker, aiohttp's server or a
WSGI framework; each is imported only when the matching method is used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from resilience_exporter.breakers import BreakerView, breaker_samples
from resilience_exporter.families import Sample
from resilience_exporter.instrument.breaker import BreakerTracker
from resilience_exporter.instrument.document import generic_document
from resilience_exporter.instrument.pools import PoolReader, PsycopgPoolReader, RedisPoolReader
from resilience_exporter.pools import PoolStats, pool_samples

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    import pybreaker
    import redis
    import redis.asyncio
    from aiohttp import web
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry
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
        self, breaker: pybreaker.CircuitBreaker, *, name: str | None = None, window: int = 100
    ) -> BreakerTracker:
        tracker = BreakerTracker(breaker, window=window)
        self._add(self._breakers, name or tracker.name, tracker)
        return tracker

    def track_psycopg_pool(
        self, pool: ConnectionPool[Any] | AsyncConnectionPool[Any], *, name: str | None = None
    ) -> None:
        reader = PsycopgPoolReader(pool, name=name)
        self._add(self._pools, reader.name, reader)

    def track_redis_pool(
        self, pool: redis.ConnectionPool | redis.asyncio.ConnectionPool, *, name: str
    ) -> None:
        self._add(self._pools, name, RedisPoolReader(pool, name=name))

    def track_pool(self, reader: PoolReader) -> None:
        """Any other pool: an object with a `name` and a `stats()` returning `PoolStats`."""
        self._add(self._pools, reader.name, reader)

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
        from resilience_exporter.client_python import metric_families

        yield from metric_families(self.samples())

    def register(self, registry: CollectorRegistry | None = None) -> None:
        """Add the families to an application's registry (client_python's global one by
        default)."""
        from prometheus_client import REGISTRY

        (registry or REGISTRY).register(self)

    # Serving the document

    def aiohttp_handler(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        from aiohttp import web

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(self.document())

        return handler

    def add_aiohttp_route(self, app: web.Application, path: str = DEFAULT_PATH) -> None:
        app.router.add_get(path, self.aiohttp_handler())

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
