"""Structured logs (logfmt or JSON) for our own records and every library's, secrets masked."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, WrappedLogger

from resilience_exporter.secrets import redact

LogFormat = Literal["logfmt", "json"]
LOG_LEVELS = ("debug", "info", "warn", "error")


def _redact_values(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
        elif isinstance(value, BaseException):
            event[key] = redact(repr(value))
    return event


def _exception_to_text(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    exc_info = event.pop("exc_info", None)
    if exc_info:
        exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if isinstance(exc, BaseException):
            event["err"] = f"{type(exc).__name__}: {exc}"
    return event


def setup(level: str, fmt: LogFormat) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.LogfmtRenderer(
            key_order=["ts", "level", "logger", "msg"], drop_missing=True
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _exception_to_text,
            structlog.processors.EventRenamer("msg"),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _redact_values,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
    # aiohttp logs every request at INFO; an exporter scraped every 15 s should not.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
