"""What one `INFO` reply tells: saturation (clients, memory), activity, replication from both
ends, and persistence (RDB, AOF, fork)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from resilience_exporter.metrics.families import Family, Sample, family, sample
from resilience_exporter.probes.redis.config import host_port
from resilience_exporter.reasons import ProbeError

CONNECTED_CLIENTS = family(
    "resilience_redis_connected_clients",
    "Client connections open on the server (INFO connected_clients).",
    "gauge",
    ("target",),
    group="redis",
)
BLOCKED_CLIENTS = family(
    "resilience_redis_blocked_clients",
    "Clients waiting in a blocking command (BLPOP, WAIT, ...).",
    "gauge",
    ("target",),
    group="redis",
)
MAX_CLIENTS = family(
    "resilience_redis_max_clients",
    "The server's maxclients setting.",
    "gauge",
    ("target",),
    group="redis",
)
MEMORY_USED = family(
    "resilience_redis_memory_used_bytes",
    "Memory allocated by Redis (INFO used_memory).",
    "gauge",
    ("target",),
    group="redis",
)
MEMORY_MAX = family(
    "resilience_redis_memory_max_bytes",
    "The server's maxmemory setting; 0 means no limit (saturation ratios must skip it).",
    "gauge",
    ("target",),
    group="redis",
)
EVICTED_KEYS = family(
    "resilience_redis_evicted_keys_total",
    "Keys evicted because of the maxmemory limit.",
    "counter",
    ("target",),
    group="redis",
)
REJECTED_CONNECTIONS = family(
    "resilience_redis_rejected_connections_total",
    "Connections refused because of the maxclients limit.",
    "counter",
    ("target",),
    group="redis",
)
KEYSPACE_HITS = family(
    "resilience_redis_keyspace_hits_total",
    "Successful key lookups.",
    "counter",
    ("target",),
    group="redis",
)
KEYSPACE_MISSES = family(
    "resilience_redis_keyspace_misses_total",
    "Failed key lookups.",
    "counter",
    ("target",),
    group="redis",
)
ROLE = family(
    "resilience_redis_role",
    "1 for the server's replication role (master or replica).",
    "gauge",
    ("target", "role"),
    group="redis",
)
CONNECTED_REPLICAS = family(
    "resilience_redis_connected_replicas",
    "Replicas connected to this server.",
    "gauge",
    ("target",),
    group="redis",
)
REPLICATION_LINK_UP = family(
    "resilience_redis_replication_link_up",
    "Replicas only: 1 if the link to the master is up (master_link_status), else 0.",
    "gauge",
    ("target",),
    group="redis",
)
# --- activity and memory ----------------------------------------------------------------------
COMMANDS_PROCESSED = family(
    "resilience_redis_commands_processed_total",
    "Commands the server processed (INFO total_commands_processed).",
    "counter",
    ("target",),
    group="redis",
)
OPS_PER_SECOND = family(
    "resilience_redis_instantaneous_ops_per_second",
    "Commands per second, as the server samples them (INFO instantaneous_ops_per_sec).",
    "gauge",
    ("target",),
    group="redis",
)
CPU_SECONDS = family(
    "resilience_redis_cpu_seconds_total",
    "CPU time of the server process, system and user (INFO used_cpu_sys, used_cpu_user): "
    "commands run on one thread, so a rate near 1 is a saturated server.",
    "counter",
    ("target", "mode"),
    group="redis",
)
ERROR_REPLIES = family(
    "resilience_redis_error_replies_total",
    "Error replies the server sent (INFO total_error_replies): refused writes (MISCONF, OOM, "
    "READONLY), NOPERM, wrong types, ...",
    "counter",
    ("target",),
    group="redis",
)
FRAGMENTATION = family(
    "resilience_redis_memory_fragmentation_ratio",
    "Resident memory over memory allocated (INFO mem_fragmentation_ratio); meaningless while "
    "the dataset is only a few MB.",
    "gauge",
    ("target",),
    group="redis",
)
# --- replication, master side ----------------------------------------------------------------
BACKLOG = family(
    "resilience_redis_replication_backlog_bytes",
    "Size of the replication backlog (repl_backlog_size): a replica further behind than this "
    "when its link drops needs a full resync.",
    "gauge",
    ("target",),
    group="redis",
)
REPLICA_OFFSET_LAG = family(
    "resilience_redis_replica_offset_lag_bytes",
    "Masters only, per connected replica: the master's replication offset minus the offset "
    "the replica acknowledged.",
    "gauge",
    ("target", "replica"),
    group="redis",
)
REPLICA_ACK_AGE = family(
    "resilience_redis_replica_ack_age_seconds",
    "Masters only, per connected replica: seconds since the replica's last acknowledgement "
    "(INFO slaveN lag).",
    "gauge",
    ("target", "replica"),
    group="redis",
)
REPLICA_STATE = family(
    "resilience_redis_replica_state",
    "Masters only, per connected replica: 1 for its state (wait_bgsave, send_bulk, online).",
    "gauge",
    ("target", "replica", "state"),
    group="redis",
)
# --- replication, replica side ---------------------------------------------------------------
LINK_DOWN_SECONDS = family(
    "resilience_redis_replication_link_down_seconds",
    "Replicas only: seconds the link to the master has been down, 0 while it is up; a replica "
    "that never reached its master counts from its start.",
    "gauge",
    ("target",),
    group="redis",
)
SYNC_IN_PROGRESS = family(
    "resilience_redis_replication_sync_in_progress",
    "Replicas only: 1 while a full synchronisation from the master runs.",
    "gauge",
    ("target",),
    group="redis",
)
LAST_IO_SECONDS = family(
    "resilience_redis_replication_last_io_seconds",
    "Replicas only, while the link is up: seconds since the last data from the master.",
    "gauge",
    ("target",),
    group="redis",
)
# --- persistence -----------------------------------------------------------------------------
RDB_LAST_SAVE_SUCCESS = family(
    "resilience_redis_rdb_last_save_success",
    "1 if the last RDB save (BGSAVE) succeeded, 0 if it failed.",
    "gauge",
    ("target",),
    group="redis",
)
RDB_LAST_SAVE_AGE = family(
    "resilience_redis_rdb_last_save_age_seconds",
    "Seconds since the last successful RDB save (or the server's start), on the server's clock.",
    "gauge",
    ("target",),
    group="redis",
)
RDB_CHANGES = family(
    "resilience_redis_rdb_changes_since_last_save",
    "Writes since the last successful RDB save: what a crash now would lose without AOF.",
    "gauge",
    ("target",),
    group="redis",
)
RDB_SAVE_IN_PROGRESS = family(
    "resilience_redis_rdb_save_in_progress",
    "1 while an RDB save runs.",
    "gauge",
    ("target",),
    group="redis",
)
AOF_ENABLED = family(
    "resilience_redis_aof_enabled",
    "1 if the append-only file is on.",
    "gauge",
    ("target",),
    group="redis",
)
AOF_LAST_WRITE_SUCCESS = family(
    "resilience_redis_aof_last_write_success",
    "1 if the last write to the append-only file succeeded, 0 if it failed.",
    "gauge",
    ("target",),
    group="redis",
)
AOF_LAST_REWRITE_SUCCESS = family(
    "resilience_redis_aof_last_rewrite_success",
    "1 if the last append-only file rewrite succeeded, 0 if it failed.",
    "gauge",
    ("target",),
    group="redis",
)
AOF_REWRITE_IN_PROGRESS = family(
    "resilience_redis_aof_rewrite_in_progress",
    "1 while an append-only file rewrite runs.",
    "gauge",
    ("target",),
    group="redis",
)
FORK_DURATION = family(
    "resilience_redis_latest_fork_duration_seconds",
    "Duration of the latest fork (for a save, a rewrite or a full sync): the server answers "
    "nothing meanwhile.",
    "gauge",
    ("target",),
    group="redis",
)

# INFO fields every server reports, exported as they are (times `scale`): (field, family, scale).
_REQUIRED: tuple[tuple[str, Family, float], ...] = (
    ("connected_clients", CONNECTED_CLIENTS, 1),
    ("blocked_clients", BLOCKED_CLIENTS, 1),
    ("maxclients", MAX_CLIENTS, 1),
    ("used_memory", MEMORY_USED, 1),
    ("maxmemory", MEMORY_MAX, 1),
    ("evicted_keys", EVICTED_KEYS, 1),
    ("rejected_connections", REJECTED_CONNECTIONS, 1),
    ("keyspace_hits", KEYSPACE_HITS, 1),
    ("keyspace_misses", KEYSPACE_MISSES, 1),
    ("connected_slaves", CONNECTED_REPLICAS, 1),
)
# Fields a server may leave out (older versions, or a section disabled): no sample then.
_OPTIONAL: tuple[tuple[str, Family, float], ...] = (
    ("total_commands_processed", COMMANDS_PROCESSED, 1),
    ("instantaneous_ops_per_sec", OPS_PER_SECOND, 1),
    ("total_error_replies", ERROR_REPLIES, 1),
    ("mem_fragmentation_ratio", FRAGMENTATION, 1),
    ("repl_backlog_size", BACKLOG, 1),
    ("rdb_changes_since_last_save", RDB_CHANGES, 1),
    ("rdb_bgsave_in_progress", RDB_SAVE_IN_PROGRESS, 1),
    ("aof_enabled", AOF_ENABLED, 1),
    ("aof_rewrite_in_progress", AOF_REWRITE_IN_PROGRESS, 1),
    ("latest_fork_usec", FORK_DURATION, 1e-6),
)
# Status fields, "ok" or "err": (field, family exported as 1 or 0).
_STATUSES: tuple[tuple[str, Family], ...] = (
    ("rdb_last_bgsave_status", RDB_LAST_SAVE_SUCCESS),
    ("aof_last_write_status", AOF_LAST_WRITE_SUCCESS),
    ("aof_last_bgrewrite_status", AOF_LAST_REWRITE_SUCCESS),
)
_ROLES: Mapping[str, str] = {"master": "master", "slave": "replica"}
MAX_REPLICAS = 64  # slaveN entries read from one INFO: a bound on the `replica` label


def number(info: Mapping[str, Any], key: str) -> float | None:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def cluster_enabled(info: Mapping[str, Any]) -> bool:
    return number(info, "cluster_enabled") == 1


def info_samples(name: str, info: Mapping[str, Any]) -> list[Sample]:
    out: list[Sample] = []
    for key, fam, scale in _REQUIRED:
        value = number(info, key)
        if value is None:
            raise ProbeError("protocol", f"INFO has no numeric {key}")
        out.append(sample(fam, value * scale, target=name))
    for key, fam, scale in _OPTIONAL:
        value = number(info, key)
        if value is not None:
            out.append(sample(fam, value * scale, target=name))
    for mode in ("sys", "user"):
        seconds = number(info, f"used_cpu_{mode}")
        if seconds is not None:
            mode_label = "system" if mode == "sys" else mode
            out.append(sample(CPU_SECONDS, seconds, target=name, mode=mode_label))
    for key, fam in _STATUSES:
        status = info.get(key)
        if status in ("ok", "err"):
            out.append(sample(fam, 1.0 if status == "ok" else 0.0, target=name))
    server_now = number(info, "server_time_usec")
    server_now = server_now / 1e6 if server_now is not None else time.time()
    last_save = number(info, "rdb_last_save_time")
    if last_save is not None:
        out.append(sample(RDB_LAST_SAVE_AGE, max(0.0, server_now - last_save), target=name))
    role = _ROLES.get(str(info.get("role", "")))
    if role is None:
        raise ProbeError("protocol", f"unknown replication role {info.get('role')!r}")
    out.append(sample(ROLE, 1, target=name, role=role))
    if role == "replica":
        out += _replica_side(name, info)
    out += _master_side(name, info)
    return out


def _replica_side(name: str, info: Mapping[str, Any]) -> list[Sample]:
    link_up = info.get("master_link_status") == "up"
    out = [sample(REPLICATION_LINK_UP, 1.0 if link_up else 0.0, target=name)]
    if link_up:
        down = 0.0
    else:
        since = number(info, "master_link_down_since_seconds")
        # -1: the link has never been up since the replica started.
        if since is None or since < 0:
            since = number(info, "uptime_in_seconds")
        down = since or 0.0
    out.append(sample(LINK_DOWN_SECONDS, down, target=name))
    syncing = number(info, "master_sync_in_progress")
    if syncing is not None:
        out.append(sample(SYNC_IN_PROGRESS, syncing, target=name))
    last_io = number(info, "master_last_io_seconds_ago")
    if link_up and last_io is not None and last_io >= 0:
        out.append(sample(LAST_IO_SECONDS, last_io, target=name))
    return out


def _master_side(name: str, info: Mapping[str, Any]) -> list[Sample]:
    """Each connected replica (INFO slaveN), on a master or on a replica with replicas."""
    master_offset = number(info, "master_repl_offset")
    out: list[Sample] = []
    for index in range(MAX_REPLICAS):
        replica = info.get(f"slave{index}")
        if not isinstance(replica, Mapping):
            break
        address = host_port(str(replica.get("ip")), replica.get("port"))
        offset = number(replica, "offset")
        if master_offset is not None and offset is not None:
            lag = max(0.0, master_offset - offset)
            out.append(sample(REPLICA_OFFSET_LAG, lag, target=name, replica=address))
        ack_age = number(replica, "lag")
        if ack_age is not None:
            out.append(sample(REPLICA_ACK_AGE, ack_age, target=name, replica=address))
        state = str(replica.get("state", "unknown"))
        out.append(sample(REPLICA_STATE, 1, target=name, replica=address, state=state))
    return out
