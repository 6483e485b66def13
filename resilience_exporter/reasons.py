"""Why a probe failed, as a small closed set of `reason` label values."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Literal, get_args

Reason = Literal[
    "timeout",
    "refused",
    "auth",
    "dns",
    "tls",
    "too_many_connections",
    "protocol",
    "other",
    "breaker_open",
]
REASONS: tuple[Reason, ...] = get_args(Reason)
# What a probe itself can fail with; `breaker_open` means no probe was made at all.
PROBE_REASONS: tuple[Reason, ...] = tuple(r for r in REASONS if r != "breaker_open")


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified probe failure. `persistent` failures (bad credentials, unknown database,
    TLS misconfiguration) will not heal by retrying soon; transient ones may. A
    `breaker_open` failure carries the last real failure as its `cause`."""

    reason: Reason
    message: str
    persistent: bool = False
    cause: Failure | None = None


class ProbeError(Exception):
    """Raised by probes when they already know the reason of a failure."""

    def __init__(self, reason: Reason, message: str, *, persistent: bool = False) -> None:
        super().__init__(message)
        self.failure = Failure(reason, message, persistent)


def classify_builtin(exc: BaseException) -> Failure | None:
    """Classify the exceptions that every network client surfaces the same way."""
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
