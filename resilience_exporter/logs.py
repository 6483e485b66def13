"""Structured logs (logfmt or JSON) for our own records and every library's, secrets masked.

Every record becomes `ts`, `level`, `logger`, `msg`, then the fields given with
`extra={...}`, then `err` and `at` (the module and line it was raised at: no code, no values)
when an exception came with it; strings and exceptions go through `secrets.redact` on the way
out.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from resilience_exporter.configuration.secrets import redact

LogFormat = Literal["logfmt", "json"]
LOG_LEVELS = ("debug", "info", "warn", "error")
# What every LogRecord has: anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def raised_at(traceback: TracebackType | None) -> str | None:
    """`module:line` of the innermost frame: where an unexpected exception (a defect) came from."""
    if traceback is None:
        return None
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__", "?")
    return f"{module}:{traceback.tb_lineno}"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as the fields a line shows, in order, masked; None values are left out."""
    out: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    out.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        out["err"] = f"{type(exc).__name__}: {exc}"
        out["at"] = raised_at(exc.__traceback__)
    masked: dict[str, Any] = {}
    for key, value in out.items():
        if value is None:
            continue
        if isinstance(value, str):
            value = redact(value)
        elif isinstance(value, BaseException):
            value = redact(repr(value))
        masked[key] = value
    return masked


def _logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(v)}" for key, v in fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), default=str)


def setup(level: str, fmt: LogFormat) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
    # aiohttp logs every request at INFO; an exporter scraped every 15 s should not.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
