"""Log lines: logfmt or JSON, every field of a record, secrets masked, exceptions as `err`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from resilience_exporter.configuration.secrets import remember
from resilience_exporter.logs import JsonFormatter, LogfmtFormatter

SECRET = "Log-Secret-77a1"


def record(
    msg: str, *, extra: dict[str, object] | None = None, exc: bool = False
) -> logging.LogRecord:
    logger = logging.getLogger("resilience_exporter.test")
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad password {SECRET}")
        except ValueError:
            exc_info = sys.exc_info()
    made = logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, msg, (), exc_info, extra=extra or {}
    )
    return made


@pytest.fixture(autouse=True)
def secret() -> None:
    remember(SECRET)


def test_logfmt_line() -> None:
    line = LogfmtFormatter().format(
        record(
            "probe failed",
            extra={"target": "orders-db", "err": 'said "no" = refused', "persistent": True,
                   "unset": None, "count": 3},
        )
    )  # fmt: skip
    assert line.startswith("ts=")
    assert ' level=warning logger=resilience_exporter.test msg="probe failed" ' in line
    assert 'target=orders-db err="said \\"no\\" = refused" persistent=true count=3' in line
    assert "unset" not in line


def test_json_line_and_exception() -> None:
    line = JsonFormatter().format(
        record("closing failed", extra={"dsn": f"x:{SECRET}@h"}, exc=True)
    )
    fields = json.loads(line)
    assert list(fields)[:4] == ["ts", "level", "logger", "msg"]
    assert fields["ts"].endswith("Z")
    assert fields["err"].startswith("ValueError: bad password")
    raise_line = next(
        number
        for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1)
        if text.strip().startswith("raise ValueError(")
    )
    assert fields["at"] == f"{__name__}:{raise_line}", "the module and line it was raised at"
    assert SECRET not in line


def test_secrets_are_masked_everywhere() -> None:
    line = LogfmtFormatter().format(
        record(f"connecting with {SECRET}", extra={"url": f"redis://u:{SECRET}@h/0"}, exc=True)
    )
    assert SECRET not in line
    assert "<secret>" in line
