"""aiohttp's client exceptions. Several of them subclass OSError, so they are looked at
before the standard library's."""

from __future__ import annotations

import aiohttp

from resilience_exporter.classify import classify_builtin, unexplained
from resilience_exporter.reasons import Failure


def classify_http(exc: BaseException) -> Failure:
    known = classify_builtin(exc)
    if known is not None and not isinstance(exc, aiohttp.ClientError):
        return known
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Failure("tls", "TLS certificate verification failed", persistent=True)
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return Failure("tls", "TLS handshake failed", persistent=True)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Failure("dns", "name resolution failed", persistent=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = classify_builtin(exc.os_error)
        return cause or Failure("refused", "cannot connect")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return Failure("timeout", "timed out")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # Also how a server that wants a client certificate turns one away under TLS 1.3:
        # the handshake completes on the client's side before the server hangs up.
        return Failure("other", "the server closed the connection without an answer")
    if isinstance(exc, aiohttp.ClientResponseError):
        return Failure("protocol", type(exc).__name__)
    if isinstance(exc, aiohttp.ClientError):
        return Failure("other", type(exc).__name__)
    return known or unexplained(exc)
