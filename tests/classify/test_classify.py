"""Each client library's exceptions, as the library raises them, translated into reasons."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import aiohttp
import psycopg
import psycopg.errors
import pytest
import redis.exceptions
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from resilience_exporter.classify import MessageRules, classify_builtin
from resilience_exporter.classify.aiohttp_errors import classify_http
from resilience_exporter.classify.psycopg_errors import (
    PGBOUNCER_MESSAGES,
    POSTGRES_MESSAGES,
    SQLSTATE_REASONS,
    classify_pgbouncer,
    classify_postgres,
)
from resilience_exporter.classify.redis_errors import REDIS_MESSAGES, classify_redis
from resilience_exporter.reasons import Failure, ProbeError

Classifier = Callable[[BaseException], Failure]


@pytest.mark.parametrize(
    ("classify", "rules", "error"),
    [
        pytest.param(classify_postgres, POSTGRES_MESSAGES, psycopg.OperationalError, id="pg"),
        pytest.param(
            classify_pgbouncer, PGBOUNCER_MESSAGES, psycopg.OperationalError, id="bouncer"
        ),
        pytest.param(classify_redis, REDIS_MESSAGES, redis.exceptions.ResponseError, id="redis"),
    ],
)
def test_every_message_rule_is_reachable(
    classify: Classifier, rules: MessageRules, error: type[Exception]
) -> None:
    """No rule is shadowed by one above it: a message holding a rule's words gets its reason."""
    for needle, reason, persistent in rules:
        failure = classify(error(f"server said: {needle.upper()}"))
        assert (failure.reason, failure.persistent) == (reason, persistent), needle


@pytest.mark.parametrize(("error_class", "expected"), list(SQLSTATE_REASONS.items()))
def test_postgres_sqlstates(error_class: type[psycopg.Error], expected: tuple[str, bool]) -> None:
    failure = classify_postgres(error_class("FATAL:  something\nDETAIL:  the server's words"))
    assert (failure.reason, failure.persistent) == expected
    assert failure.message == "DETAIL:  the server's words"  # libpq's last line


@pytest.mark.parametrize(
    ("exc", "reason", "persistent"),
    [
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 1 failed: '
                "Connection refused\n\tIs the server running on that host and accepting TCP/IP?"
            ),
            "refused",
            False,
        ),
        (psycopg.OperationalError("unexplained trouble"), "other", False),
        (psycopg.InterfaceError("the connection is closed"), "protocol", False),
        (psycopg.DataError("invalid input syntax"), "protocol", False),
        (TimeoutError(), "timeout", False),
        (ProbeError("protocol", "no row"), "protocol", False),
        (ValueError("a bug"), "internal", False),
    ],
)
def test_postgres_by_class(exc: BaseException, reason: str, persistent: bool) -> None:
    failure = classify_postgres(exc)
    assert (failure.reason, failure.persistent) == (reason, persistent)


def test_pgbouncer_words_come_before_postgres_words() -> None:
    exc = psycopg.OperationalError("ERROR:  server login has been failing, try again later")
    assert classify_pgbouncer(exc).reason == "refused"
    assert classify_postgres(exc).reason == "other"
    # What PgBouncer does not explain falls through to PostgreSQL's table.
    assert classify_pgbouncer(psycopg.errors.InvalidPassword("bad")).reason == "auth"


@pytest.mark.parametrize(
    ("exc", "reason", "persistent"),
    [
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "timeout", False),
        (redis.exceptions.AuthenticationError("invalid username-password pair"), "auth", True),
        (redis.exceptions.NoPermissionError("this user has no permissions"), "auth", True),
        (redis.exceptions.InvalidResponse("Protocol Error: b'x'"), "protocol", False),
        (redis.exceptions.DataError("Invalid input"), "protocol", False),
        (redis.exceptions.ResponseError("ERR unknown command"), "other", False),
        (ConnectionRefusedError(), "refused", False),
        (ValueError("a bug"), "internal", False),
    ],
)
def test_redis_by_class(exc: BaseException, reason: str, persistent: bool) -> None:
    failure = classify_redis(exc)
    assert (failure.reason, failure.persistent) == (reason, persistent)


def test_redis_looks_at_the_socket_error_it_wraps() -> None:
    wrapped = redis.exceptions.ConnectionError("Error connecting to cache:6379.")
    wrapped.__cause__ = socket.gaierror(-2, "unexplained")
    assert classify_redis(wrapped).reason == "dns"
    plain = redis.exceptions.ConnectionError("Error connecting to cache:6379.")
    plain.__cause__ = OSError("something")
    assert classify_redis(plain).reason == "other"


_KEY = ConnectionKey("app.example", 443, True, True, None, None, None)
_REQUEST = RequestInfo(
    URL("https://app.example/health"), "GET", CIMultiDictProxy(CIMultiDict()), URL()
)


@pytest.mark.parametrize(
    ("exc", "reason", "persistent"),
    [
        (
            aiohttp.ClientConnectorCertificateError(_KEY, ssl.SSLCertVerificationError("x")),
            "tls",
            True,
        ),
        (aiohttp.ClientConnectorSSLError(_KEY, ssl.SSLError("handshake")), "tls", True),
        (aiohttp.ClientConnectorDNSError(_KEY, socket.gaierror(-2, "unknown")), "dns", True),
        (aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "no")), "refused", False),
        (aiohttp.ClientConnectorError(_KEY, OSError(113, "no route")), "other", False),
        (aiohttp.ServerTimeoutError("read timeout"), "timeout", False),
        (aiohttp.ServerDisconnectedError(), "other", False),
        (aiohttp.ClientResponseError(_REQUEST, ()), "protocol", False),
        (aiohttp.ClientPayloadError("cut"), "other", False),
        (TimeoutError(), "timeout", False),
        (ProbeError("auth", "HTTP 401", persistent=True), "auth", True),
    ],
)
def test_http_by_class(exc: BaseException, reason: str, persistent: bool) -> None:
    failure = classify_http(exc)
    assert (failure.reason, failure.persistent) == (reason, persistent)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (ConnectionRefusedError(), "refused"),
        (socket.gaierror(), "dns"),
        (ssl.SSLCertVerificationError(), "tls"),
        (ssl.SSLError(), "tls"),
        (ConnectionResetError(), "other"),
    ],
)
def test_builtin(exc: BaseException, reason: str) -> None:
    failure = classify_builtin(exc)
    assert failure is not None
    assert failure.reason == reason
    assert classify_builtin(ValueError()) is None
