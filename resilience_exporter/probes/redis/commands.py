"""Everything a probe asks besides PING, in one pipeline (one round trip): `INFO`, then
`SLOWLOG LEN`, `SLOWLOG GET 1`, `LATENCY LATEST` and, on Redis Cluster nodes, `CLUSTER INFO`.

Each command after INFO needs an ACL right of its own. A server that refuses one (NOPERM, or a
command renamed or disabled away) loses only that command's series: the target stays up, the
refusal is logged once, and the command is asked again after `REFUSED_RECHECK_SECONDS`, so that
a right granted later is picked up without flooding the server's ACL LOG meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.probes.redis.config import RedisTarget
from resilience_exporter.probes.redis.info import cluster_enabled, info_samples
from resilience_exporter.reasons import ProbeError

log = logging.getLogger(__name__)

REFUSED_RECHECK_SECONDS = 300.0

SLOWLOG_LENGTH = family(
    "resilience_redis_slowlog_length",
    "Entries in the slow log (SLOWLOG LEN).",
    "gauge",
    ("target",),
    group="redis",
)
SLOWLOG_LAST_DURATION = family(
    "resilience_redis_slowlog_last_duration_seconds",
    "Execution time of the newest slow log entry (its command and arguments are not read "
    "out); absent while the slow log is empty.",
    "gauge",
    ("target",),
    group="redis",
)
LATENCY_SPIKE_DURATION = family(
    "resilience_redis_latency_spike_duration_seconds",
    "Latency monitor, per event (command, fork, aof-fsync-always, ...): the latest spike "
    "above latency-monitor-threshold; absent while the monitor is off or saw none.",
    "gauge",
    ("target", "event"),
    group="redis",
)
LATENCY_SPIKE_TIMESTAMP = family(
    "resilience_redis_latency_spike_timestamp_seconds",
    "Latency monitor, per event: when the latest spike happened (Unix time, server clock).",
    "gauge",
    ("target", "event"),
    group="redis",
)
CLUSTER_STATE_OK = family(
    "resilience_redis_cluster_state_ok",
    "Redis Cluster nodes only: 1 if the node reports cluster_state:ok, 0 for fail.",
    "gauge",
    ("target",),
    group="redis",
)
CLUSTER_SLOTS = family(
    "resilience_redis_cluster_slots",
    "Redis Cluster nodes only: hash slots assigned, and of those ok, pfail (suspected by this "
    "node) and fail (agreed by the masters); 16384 slots in all.",
    "gauge",
    ("target", "state"),
    group="redis",
)
CLUSTER_KNOWN_NODES = family(
    "resilience_redis_cluster_known_nodes",
    "Redis Cluster nodes only: nodes this node knows, itself included.",
    "gauge",
    ("target",),
    group="redis",
)
CLUSTER_SIZE = family(
    "resilience_redis_cluster_size",
    "Redis Cluster nodes only: masters serving at least one hash slot.",
    "gauge",
    ("target",),
    group="redis",
)

Parser = Callable[[str, Any], list[Sample]]


@dataclass(frozen=True, slots=True)
class Extra:
    """A command sent with INFO: the ACL right it needs (as `ACL SETUSER` spells it), its
    arguments and what its reply becomes."""

    acl: str
    args: tuple[str, ...]
    parse: Parser


def _integer(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeError("protocol", f"expected an integer, got {type(value).__name__}")
    return float(value)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _slowlog_length(name: str, reply: Any) -> list[Sample]:
    return [sample(SLOWLOG_LENGTH, _integer(reply), target=name)]


def _slowlog_newest(name: str, reply: Any) -> list[Sample]:
    # [[id, unix time, duration in microseconds, [arguments...], client, client name]]
    if not isinstance(reply, list) or not reply:
        return []
    entry = reply[0]
    if not isinstance(entry, list) or len(entry) < 3:
        raise ProbeError("protocol", "SLOWLOG GET returned an entry without a duration")
    return [sample(SLOWLOG_LAST_DURATION, _integer(entry[2]) / 1e6, target=name)]


def _latency_latest(name: str, reply: Any) -> list[Sample]:
    # [[event, unix time, latest in ms, all-time max in ms], ...]; events are Redis' own names.
    out: list[Sample] = []
    for entry in reply if isinstance(reply, list) else []:
        if not isinstance(entry, list) or len(entry) < 3:
            raise ProbeError("protocol", "LATENCY LATEST returned a malformed entry")
        event = _text(entry[0])
        out.append(sample(LATENCY_SPIKE_TIMESTAMP, _integer(entry[1]), target=name, event=event))
        latest = _integer(entry[2]) / 1000
        out.append(sample(LATENCY_SPIKE_DURATION, latest, target=name, event=event))
    return out


def parse_cluster_info(reply: Any) -> Mapping[str, str]:
    fields: dict[str, str] = {}
    for line in _text(reply).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _cluster_info(name: str, reply: Any) -> list[Sample]:
    fields = parse_cluster_info(reply)
    state = fields.get("cluster_state")
    if state not in ("ok", "fail"):
        raise ProbeError("protocol", f"CLUSTER INFO has an unknown cluster_state {state!r}")
    out = [sample(CLUSTER_STATE_OK, 1.0 if state == "ok" else 0.0, target=name)]
    for slots in ("assigned", "ok", "pfail", "fail"):
        value = fields.get(f"cluster_slots_{slots}", "")
        if value.isdigit():
            out.append(sample(CLUSTER_SLOTS, float(value), target=name, state=slots))
    for key, fam in (("cluster_known_nodes", CLUSTER_KNOWN_NODES), ("cluster_size", CLUSTER_SIZE)):
        value = fields.get(key, "")
        if value.isdigit():
            out.append(sample(fam, float(value), target=name))
    return out


EXTRAS: tuple[Extra, ...] = (
    Extra("slowlog|len", ("SLOWLOG", "LEN"), _slowlog_length),
    Extra("slowlog|get", ("SLOWLOG", "GET", "1"), _slowlog_newest),
    Extra("latency|latest", ("LATENCY", "LATEST"), _latency_latest),
)
CLUSTER_INFO = Extra("cluster|info", ("CLUSTER", "INFO"), _cluster_info)
# Every right the probe uses on the server; docs/redis-pgbouncer.md lists the same.
ACL_RIGHTS: tuple[str, ...] = (
    "ping",
    "info",
    "client|setname",
    "hello",
    *(e.acl for e in (*EXTRAS, CLUSTER_INFO)),
)


def _refusal(exc: BaseException) -> bool:
    """The server will keep refusing this command: no right to it, or no such command."""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return True
    message = str(exc).lower()
    return isinstance(exc, redis.exceptions.ResponseError) and (
        "unknown command" in message or "unknown subcommand" in message
    )


class RefusedCommands:
    """The commands a server refused, each held back until its recheck time."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._until: dict[str, float] = {}

    def allowed(self, extra: Extra, now: float) -> bool:
        return self._until.get(extra.acl, 0.0) <= now

    def refused(self, extra: Extra, exc: BaseException, now: float) -> None:
        if extra.acl not in self._until:
            log.warning(
                "the server refused a command: its series are left out",
                extra={
                    "target": self.target,
                    "command": " ".join(extra.args[:2]),
                    "acl": f"+{extra.acl}",
                    "err": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                },
            )
        self._until[extra.acl] = now + REFUSED_RECHECK_SECONDS

    def answered(self, extra: Extra) -> None:
        if self._until.pop(extra.acl, None) is not None:
            log.info(
                "the server answers a command it refused before",
                extra={"target": self.target, "command": " ".join(extra.args[:2])},
            )


class ServerQueries:
    """INFO and the extras for one target; remembers refusals and whether the server is a
    Redis Cluster node."""

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.refused = RefusedCommands(target.name)
        self._cluster_node: bool | None = None  # what the last INFO said

    def _asks_cluster(self) -> bool:
        configured = self.target.cluster
        return configured if configured is not None else bool(self._cluster_node)

    async def run(self, client: Redis) -> list[Sample]:
        now = time.monotonic()
        extras = [e for e in EXTRAS if self.refused.allowed(e, now)]
        if self._asks_cluster() and self.refused.allowed(CLUSTER_INFO, now):
            extras.append(CLUSTER_INFO)
        async with client.pipeline(transaction=False) as pipe:
            pipe.info()
            for extra in extras:
                pipe.execute_command(*extra.args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        info = replies[0]
        if isinstance(info, BaseException):
            raise info
        name = self.target.name
        samples = info_samples(name, info)
        node = cluster_enabled(info)
        if self.target.cluster and not node:
            raise ProbeError("other", "cluster: true, but the server has cluster support disabled")
        found_just_now = node and not self._cluster_node and self.target.cluster is None
        if found_just_now and self.refused.allowed(CLUSTER_INFO, now):
            # Ask at once rather than one probe late.
            extras.append(CLUSTER_INFO)
            replies.append(await self._one(client, CLUSTER_INFO))
        self._cluster_node = node
        for extra, reply in zip(extras, replies[1:], strict=True):
            samples += self._parsed(extra, reply, now)
        return samples

    @staticmethod
    async def _one(client: Redis, extra: Extra) -> Any:
        command: Any = client.execute_command  # typed in some redis-py releases, not in others
        try:
            return await command(*extra.args)
        except redis.exceptions.ResponseError as exc:
            return exc

    def _parsed(self, extra: Extra, reply: Any, now: float) -> Sequence[Sample]:
        if isinstance(reply, BaseException):
            if _refusal(reply):
                self.refused.refused(extra, reply, now)
                return []
            if isinstance(reply, redis.exceptions.ResponseError):
                return []  # BUSY, LOADING, ...: this probe only
            raise reply
        self.refused.answered(extra)
        return extra.parse(self.target.name, reply)
