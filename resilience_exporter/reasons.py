"""Why a probe failed, as a small closed set of `reason` label values."""

from __future__ import annotations

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
    "internal",
    "breaker_open",
]
REASONS: tuple[Reason, ...] = get_args(Reason)
# What a probe itself can fail with; `breaker_open` means no probe was made at all.
# `internal`: the exporter failed, not the target (an exception no table explains: a defect,
# or a client library that changed under it); the target still reads down, with that reason.
PROBE_REASONS: tuple[Reason, ...] = tuple(r for r in REASONS if r != "breaker_open")


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified probe failure. `persistent` failures (bad credentials, unknown database,
    TLS misconfiguration) will not heal by retrying soon; transient ones may. A
    `breaker_open` failure carries the last real failure as its `cause`. An `internal` one
    is the exporter's own: it never counts against the target's breaker."""

    reason: Reason
    message: str
    persistent: bool = False
    cause: Failure | None = None


class ProbeError(Exception):
    """Raised by probes when they already know the reason of a failure."""

    def __init__(self, reason: Reason, message: str, *, persistent: bool = False) -> None:
        super().__init__(message)
        self.failure = Failure(reason, message, persistent)
