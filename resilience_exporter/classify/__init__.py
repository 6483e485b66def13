"""Why a probe failed: each client library's exceptions translated into the closed set of
reasons (`resilience_exporter.reasons`), one module per library, each a table read from top to
bottom: the exception's class first, then words of its message.

A driver's module is imported by the probes that use that driver only, so the exporter loads
no client library it does not probe with.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Sequence

from resilience_exporter.reasons import Failure, ProbeError, Reason

# (words in the lower-cased message, reason, persistent)
MessageRules = Sequence[tuple[str, Reason, bool]]
LinePicker = Callable[[BaseException], str]


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def last_line(exc: BaseException) -> str:
    """libpq puts the server's own words last (after "connection to server ... failed:")."""
    lines = str(exc).strip().splitlines()
    return lines[-1].strip() if lines else type(exc).__name__


def by_message(exc: BaseException, rules: MessageRules, line: LinePicker) -> Failure | None:
    """The first rule whose words the message contains, quoting the message's `line`."""
    text = str(exc).lower()
    for needle, reason, persistent in rules:
        if needle in text:
            return Failure(reason, line(exc), persistent)
    return None


def unexplained(exc: BaseException) -> Failure:
    """An exception neither the client library nor the network explains: the exporter's own
    failure (a defect, or a library that changed under it), never the target's."""
    return internal(exc)


def internal(exc: BaseException) -> Failure:
    return Failure("internal", f"{type(exc).__name__}: {first_line(exc)}")


def classify_builtin(exc: BaseException) -> Failure | None:
    """The exceptions every network client surfaces the same way (the standard library's)."""
    if isinstance(exc, ProbeError):
        return exc.failure
    if isinstance(exc, TimeoutError):
        return Failure("timeout", "timed out")
    if isinstance(exc, ConnectionRefusedError):
        return Failure("refused", "connection refused")
    if isinstance(exc, socket.gaierror):
        return Failure("dns", "name resolution failed", persistent=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Failure("tls", "TLS certificate verification failed", persistent=True)
    if isinstance(exc, ssl.SSLError):
        return Failure("tls", "TLS handshake failed", persistent=True)
    if isinstance(exc, ConnectionError | OSError):
        return Failure("other", type(exc).__name__)
    return None
