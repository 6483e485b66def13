"""The HTTP side: /metrics, /-/healthy, /-/ready and a landing page. Nothing here waits on
a target: every handler reads what the background probes already published."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

import resilience_exporter
from resilience_exporter.configuration.secrets import redact
from resilience_exporter.metrics.encoding import render_lines
from resilience_exporter.metrics.exposition import accepts_gzip, negotiate
from resilience_exporter.probing import on_demand
from resilience_exporter.reasons import Failure
from resilience_exporter.web.service import Service


@dataclass
class WebState:
    service: Service
    telemetry_path: str


STATE_KEY = web.AppKey("state", WebState)


async def metrics(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    fmt = negotiate(request.headers.get("Accept"))
    gzip = accepts_gzip(request.headers.get("Accept-Encoding"))
    pieces = await state.service.exposition.body(fmt, gzip=gzip)
    response = web.StreamResponse(
        headers={"Content-Type": fmt.content_type, "Vary": "Accept-Encoding"}
    )
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
    response.content_length = sum(len(piece) for piece in pieces)
    await response.prepare(request)
    if request.method == "HEAD":  # a streamed body would be sent even to HEAD
        return response
    try:
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
    except ConnectionError:
        pass  # the scraper gave up (its timeout): nothing to answer, nothing to log
    return response


async def probe(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    service = state.service
    try:
        target = on_demand.resolve(
            service.config,
            on_demand.single(request.query.getall("target", []), "target"),
            on_demand.single(request.query.getall("module", []), "module"),
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
        )
    except on_demand.ProbeRequestError as exc:
        service.record_probe_request("forbidden" if exc.status == 403 else "bad_request")
        return web.Response(status=exc.status, text=f"{exc}\n")
    snapshot = await service.probe_once(target)
    fmt = negotiate(request.headers.get("Accept"))
    body = render_lines(fmt, snapshot.lines)
    return web.Response(body=body, headers={"Content-Type": fmt.content_type})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[STATE_KEY].service.runtime.ready:
        return web.Response(text="Ready\n")
    return web.Response(status=503, text="Not ready: the first round of probes is running\n")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>resilience-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}
.up{{color:#1a7f37}}.down{{color:#cf222e}}.pending{{color:#9a6700}}</style></head>
<body><h1>resilience-exporter</h1><p>Version {version}.
<a href="{metrics}">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
<table><tr><th>Target</th><th>Kind</th><th>Endpoint</th><th>State</th><th>Reason</th>
<th>Last probe</th></tr>
{rows}
</table></body></html>
"""


def _reason_text(failure: Failure | None) -> str:
    if failure is None:
        return ""
    if failure.reason != "breaker_open":
        return failure.reason
    last = failure.cause
    if last is None:
        return "breaker open"
    persistent = ", persistent" if last.persistent else ""
    return f"breaker open (last: {last.reason}{persistent})"


async def landing(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    rows = []
    now = time.time()
    for snap in sorted(state.service.store.latest(), key=lambda s: (s.kind, s.target)):
        if snap.up is None:
            css, label = "pending", "pending"
        else:
            css, label = ("up", "up") if snap.up else ("down", "down")
        reason = _reason_text(snap.failure)
        detail = redact(snap.failure.message) if snap.failure else ""
        age = f"{now - snap.finished_at:.1f}s ago" if snap.finished_at else "never"
        cells = [
            html.escape(snap.target),
            html.escape(snap.kind),
            html.escape(redact(snap.description)),
            f'<span class="{css}">{label}</span>',
            f'<span title="{html.escape(detail)}">{html.escape(reason)}</span>',
            age,
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    page = _PAGE.format(
        version=html.escape(resilience_exporter.__version__),
        metrics=html.escape(state.telemetry_path),
        rows="\n".join(rows),
    )
    return web.Response(text=page, content_type="text/html")


async def reload(request: web.Request) -> web.Response:
    service = request.app[STATE_KEY].service
    if not service.options.enable_lifecycle:
        return web.Response(status=403, text="Lifecycle API is not enabled.\n")
    error = await service.reload()
    if error is not None:
        return web.Response(status=500, text=f"failed to reload config: {redact(error)}\n")
    return web.Response(text="OK\n")


def make_app(state: WebState) -> web.Application:
    app = web.Application(middlewares=[state.service.guard.middleware])
    # aiohttp before 3.12.14 types its signals for aiosignal < 1.4, whose types changed: with
    # a newer aiosignal no callback matches them. Untyped here, for both.
    on_response_prepare: Any = app.on_response_prepare
    on_response_prepare.append(state.service.guard.add_headers)
    app[STATE_KEY] = state
    app.cleanup_ctx.append(state.service.lifecycle)
    app.router.add_get(state.telemetry_path, metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_route("POST", "/-/reload", reload)
    app.router.add_route("PUT", "/-/reload", reload)
    if state.telemetry_path != "/":
        app.router.add_get("/", landing)
    return app
