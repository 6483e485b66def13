"""The application `kind: http` is tested against: the health documents it serves (generic,
Resilience4j's actuator, a custom one with its mapping), behind a bearer token or basic auth."""

from __future__ import annotations

import asyncio
import base64
import copy
from typing import Any

from aiohttp import web

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
