"""What the PostgreSQL probe asks the server, in one statement, and the samples its row gives:
connection slots, long transactions and statements, locks and blocking, replication (as a
primary: standbys and slots; as a standby: receiver and replay), and per database deadlocks,
conflicts, rollbacks, temp files and the distance to transaction ID wraparound.

PostgreSQL 10 and later; everything works with `pg_monitor` alone. No query text, no PIDs
leave the server: standbys are named by `application_name` and `client_addr`, slots by name,
databases by name, all bounded by the server's configuration (`max_wal_senders`,
`max_replication_slots`, the databases created).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from resilience_exporter.metrics.families import Family, Sample, family, sample
from resilience_exporter.reasons import ProbeError

_STANDBY = ("target", "application_name", "client_addr")
_SLOT = ("target", "slot_name", "slot_type")
_DATABASE = ("target", "database")

# --- connection slots and long transactions ---------------------------------------------------
CONNECTIONS = family(
    "resilience_postgres_connections",
    "Client backends on the server by state, from pg_stat_activity.",
    "gauge", ("target", "state"), group="postgres",
)  # fmt: skip
MAX_CONNECTIONS = family(
    "resilience_postgres_max_connections",
    "The server's max_connections setting.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
RESERVED_CONNECTIONS = family(
    "resilience_postgres_reserved_connections",
    "Connection slots reserved for superusers (superuser_reserved_connections).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
OLDEST_TRANSACTION = family(
    "resilience_postgres_oldest_transaction_seconds",
    "Age of the oldest open transaction of any client backend (0 when none is open).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
OLDEST_IDLE_IN_TRANSACTION = family(
    "resilience_postgres_oldest_idle_in_transaction_seconds",
    "How long the longest session idle in transaction has been idle (0 when none).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
OLDEST_ACTIVE_QUERY = family(
    "resilience_postgres_oldest_active_query_seconds",
    "How long the longest-running statement of a client backend in state active has run "
    "(0 when none runs).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip

# --- locks ------------------------------------------------------------------------------------
LOCK_WAITING = family(
    "resilience_postgres_lock_waiting_sessions",
    "Sessions (any backend type) waiting for a heavyweight lock (wait_event_type Lock).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
OLDEST_LOCK_WAIT = family(
    "resilience_postgres_oldest_lock_wait_seconds",
    "How long the longest current lock wait has lasted (pg_locks.waitstart; before "
    "PostgreSQL 14 the waiting statement's age). 0 when nobody waits.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
BLOCKED = family(
    "resilience_postgres_blocked_sessions",
    "Sessions waiting for a lock that other sessions hold (pg_blocking_pids not empty).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
BLOCKING = family(
    "resilience_postgres_blocking_sessions",
    "Sessions that hold a lock others wait for (distinct pids of pg_blocking_pids).",
    "gauge", ("target",), group="postgres",
)  # fmt: skip

# --- replication: the primary's view ----------------------------------------------------------
IN_RECOVERY = family(
    "resilience_postgres_in_recovery",
    "1 if the server is a standby (pg_is_in_recovery()), 0 if it is a primary.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
STANDBYS = family(
    "resilience_postgres_standbys",
    "Standbys streaming from this server (pg_stat_replication), by application_name, "
    "client_addr (empty over a Unix socket), state and sync_state (unknown when the role "
    "may not see them).",
    "gauge", (*_STANDBY, "state", "sync_state"), group="postgres",
)  # fmt: skip
STANDBY_LAG_BYTES = family(
    "resilience_postgres_standby_lag_bytes",
    "WAL bytes a standby is behind this server's current position, per stage: not yet "
    "sent, written, flushed or replayed by the standby.",
    "gauge", (*_STANDBY, "stage"), group="postgres",
)  # fmt: skip
STANDBY_LAG_SECONDS = family(
    "resilience_postgres_standby_lag_seconds",
    "The standby's lag as pg_stat_replication measures it (write_lag, flush_lag, "
    "replay_lag); 0 once caught up with no traffic.",
    "gauge", (*_STANDBY, "stage"), group="postgres",
)  # fmt: skip
SLOT_ACTIVE = family(
    "resilience_postgres_replication_slot_active",
    "1 if a consumer is connected to the replication slot, else 0.",
    "gauge", _SLOT, group="postgres",
)  # fmt: skip
SLOT_RETAINED = family(
    "resilience_postgres_replication_slot_retained_wal_bytes",
    "WAL the slot keeps on disk: bytes between the current WAL position and the slot's "
    "restart_lsn (0 when it has none).",
    "gauge", _SLOT, group="postgres",
)  # fmt: skip
SLOT_WAL_STATUS = family(
    "resilience_postgres_replication_slot_wal_status",
    "1 for the slot's wal_status (reserved, extended, unreserved, lost), 0 for the others. "
    "PostgreSQL 13 and later.",
    "gauge", (*_SLOT, "wal_status"), group="postgres",
)  # fmt: skip

# --- replication: the standby's view ----------------------------------------------------------
WAL_RECEIVER_STATUS = family(
    "resilience_postgres_wal_receiver_status",
    "Standbys only: 1 for the WAL receiver's status (pg_stat_wal_receiver; stopped when "
    "no receiver runs, unknown when the role may not see it), 0 for the others.",
    "gauge", ("target", "status"), group="postgres",
)  # fmt: skip
REPLAY_LAG_BYTES = family(
    "resilience_postgres_replay_lag_bytes",
    "Standbys only: WAL bytes received but not yet replayed.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
REPLAY_LAG_SECONDS = family(
    "resilience_postgres_replay_lag_seconds",
    "Standbys only: 0 when everything received is replayed (an idle primary sends "
    "nothing), else the age of the last replayed transaction. Absent while behind if "
    "nothing was replayed since the standby started.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip
REPLAY_PAUSED = family(
    "resilience_postgres_replay_paused",
    "Standbys only: 1 if WAL replay is paused (pg_is_wal_replay_paused()), else 0.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip

# --- per database -----------------------------------------------------------------------------
DEADLOCKS = family(
    "resilience_postgres_deadlocks_total",
    "Deadlocks detected in the database (pg_stat_database.deadlocks).",
    "counter", _DATABASE, group="postgres",
)  # fmt: skip
CONFLICTS = family(
    "resilience_postgres_conflicts_total",
    "Queries cancelled by conflicts with recovery on a standby (pg_stat_database.conflicts).",
    "counter", _DATABASE, group="postgres",
)  # fmt: skip
COMMITS = family(
    "resilience_postgres_commits_total",
    "Transactions committed in the database (pg_stat_database.xact_commit).",
    "counter", _DATABASE, group="postgres",
)  # fmt: skip
ROLLBACKS = family(
    "resilience_postgres_rollbacks_total",
    "Transactions rolled back in the database (pg_stat_database.xact_rollback).",
    "counter", _DATABASE, group="postgres",
)  # fmt: skip
TEMP_BYTES = family(
    "resilience_postgres_temp_bytes_total",
    "Bytes written to temporary files by queries of the database (pg_stat_database.temp_bytes).",
    "counter", _DATABASE, group="postgres",
)  # fmt: skip
FROZEN_XID_AGE = family(
    "resilience_postgres_frozen_xid_age",
    "Transactions since the database's datfrozenxid (age(datfrozenxid)): past "
    "autovacuum_freeze_max_age autovacuum must freeze; near 2^31 the server stops writes.",
    "gauge", _DATABASE, group="postgres",
)  # fmt: skip
FREEZE_MAX_AGE = family(
    "resilience_postgres_autovacuum_freeze_max_age",
    "The server's autovacuum_freeze_max_age setting, in transactions.",
    "gauge", ("target",), group="postgres",
)  # fmt: skip

# pg_stat_activity.state values, spelled as label values.
STATES: Mapping[str | None, str] = {
    "active": "active",
    "idle": "idle",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
    "fastpath function call": "fastpath_function_call",
    "disabled": "disabled",
    None: "unknown",
}
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")
# `unknown`: a receiver runs, but the role may not see its details (no pg_monitor).
RECEIVER_STATUSES = (
    "stopped", "starting", "streaming", "waiting", "restarting", "stopping", "unknown",
)  # fmt: skip
LAG_STAGES = ("write", "flush", "replay")

# Where WAL stands now: a standby (cascading to others, or holding slots) has no
# pg_current_wal_lsn(), so it counts from what it has received (or replayed from archive).
_POSITION = """CASE WHEN pg_is_in_recovery()
                 THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                 ELSE pg_current_wal_lsn() END"""

# One round trip for everything; the pieces that depend on the server's version are filled
# in by `statement()`. pg_stat_activity is read once (a materialized CTE); pg_blocking_pids
# runs only for the sessions waiting on a lock. The exporter's own session is counted in
# the connections like any other, but never as the oldest transaction or statement.
_STATEMENT = """
WITH activity AS {materialized} (
    SELECT pid, state, xact_start, query_start, state_change, wait_event_type,
           backend_type = 'client backend' AS client, pid = pg_backend_pid() AS own
    FROM pg_stat_activity),
blocked AS {materialized} (
    SELECT pid, pg_blocking_pids(pid) AS blockers FROM activity
    WHERE wait_event_type = 'Lock'),
wal AS {materialized} (SELECT {position} AS lsn)
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved_connections,
       coalesce((SELECT max(extract(epoch FROM clock_timestamp() - xact_start))
                 FROM activity WHERE client AND xact_start IS NOT NULL AND NOT own), 0)::float8
           AS oldest_transaction,
       coalesce((SELECT max(extract(epoch FROM clock_timestamp() - state_change))
                 FROM activity
                 WHERE client AND state LIKE 'idle in transaction%'), 0)::float8
           AS oldest_idle_in_transaction,
       coalesce((SELECT json_agg(json_build_array(state, n))
                 FROM (SELECT state, count(*) AS n FROM activity WHERE client
                       GROUP BY state) AS s), '[]') AS connections_by_state,
       coalesce((SELECT max(extract(epoch FROM clock_timestamp() - query_start))
                 FROM activity WHERE client AND state = 'active' AND NOT own), 0)::float8
           AS oldest_active_query,
       (SELECT count(*) FROM activity WHERE wait_event_type = 'Lock')::int AS lock_waiting,
       coalesce(({oldest_lock_wait}), 0)::float8 AS oldest_lock_wait,
       (SELECT count(*) FROM blocked WHERE cardinality(blockers) > 0)::int AS blocked,
       (SELECT count(DISTINCT b) FROM blocked, unnest(blockers) AS b)::int AS blocking,
       pg_is_in_recovery() AS in_recovery,
       coalesce((SELECT json_agg(json_build_array(
                    application_name, coalesce(host(client_addr), ''), state, sync_state,
                    pg_wal_lsn_diff(p.lsn, sent_lsn)::float8,
                    pg_wal_lsn_diff(p.lsn, write_lsn)::float8,
                    pg_wal_lsn_diff(p.lsn, flush_lsn)::float8,
                    pg_wal_lsn_diff(p.lsn, replay_lsn)::float8,
                    extract(epoch FROM write_lag)::float8,
                    extract(epoch FROM flush_lag)::float8,
                    extract(epoch FROM replay_lag)::float8))
                 FROM pg_stat_replication, wal AS p), '[]') AS standbys,
       coalesce((SELECT json_agg(json_build_array(
                    slot_name, slot_type, active,
                    pg_wal_lsn_diff(p.lsn, restart_lsn)::float8, {wal_status}))
                 FROM pg_replication_slots, wal AS p), '[]') AS slots,
       CASE WHEN pg_is_in_recovery() THEN json_build_array(
           coalesce((SELECT coalesce(status, 'unknown') FROM pg_stat_wal_receiver), 'stopped'),
           pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8,
           extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8,
           pg_is_wal_replay_paused()) END AS receiver,
       (SELECT json_agg(json_build_array(
                   d.datname, s.deadlocks, s.conflicts, s.xact_commit, s.xact_rollback,
                   s.temp_bytes, age(d.datfrozenxid)))
        FROM pg_database AS d JOIN pg_stat_database AS s ON s.datid = d.oid) AS databases,
       current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age
"""
# pg_locks.waitstart exists from PostgreSQL 14 on; before, the waiting statement's age
# bounds the wait from above.
_LOCK_WAIT_SINCE_WAITSTART = """SELECT extract(epoch FROM clock_timestamp() - min(waitstart))
                          FROM pg_locks WHERE NOT granted"""
_LOCK_WAIT_SINCE_QUERY = """SELECT extract(epoch FROM clock_timestamp() - min(query_start))
                          FROM activity WHERE wait_event_type = 'Lock'"""


@cache
def statement(server_version: int) -> str:
    """The probe's statement for a server version (`server_version_num`, e.g. 150004)."""
    return _STATEMENT.format(
        # Before PostgreSQL 12 every CTE is materialized and the keyword does not exist.
        materialized="MATERIALIZED" if server_version >= 120000 else "",
        position=_POSITION,
        oldest_lock_wait=(
            _LOCK_WAIT_SINCE_WAITSTART if server_version >= 140000 else _LOCK_WAIT_SINCE_QUERY
        ),
        wal_status="wal_status" if server_version >= 130000 else "NULL",
    )


@dataclass
class _Standby:
    """The walsenders of one (application_name, client_addr): more than one standby may
    share both, so they are counted by state and their lags are the worst of them."""

    states: dict[tuple[str, str], int] = field(default_factory=dict)
    lag_bytes: dict[str, float] = field(default_factory=dict)
    lag_seconds: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        state: str,
        sync_state: str,
        *,
        lsn_diffs: Sequence[Any] | None,
        lags: Sequence[Any] | None,
    ) -> None:
        """`None`: hidden from a role without pg_monitor, unknown rather than 0."""
        key = (state, sync_state)
        self.states[key] = self.states.get(key, 0) + 1
        if lsn_diffs is None or lags is None:
            return
        for stage, diff in zip(("sent", *LAG_STAGES), lsn_diffs, strict=True):
            if diff is not None:  # not reported yet by a standby just connected
                self.lag_bytes[stage] = max(self.lag_bytes.get(stage, 0.0), float(diff))
        for stage, lag in zip(LAG_STAGES, lags, strict=True):
            # NULL once the standby has caught up and no WAL flows: no lag.
            self.lag_seconds[stage] = max(self.lag_seconds.get(stage, 0.0), float(lag or 0.0))


def _flags(fam: Family, current: str | None, values: Iterable[str], **labels: str) -> list[Sample]:
    """A state set: one series per possible value, 1 for the current one."""
    label = fam.labels[-1]
    return [
        sample(fam, 1.0 if value == current else 0.0, **labels, **{label: value})
        for value in values
    ]


def samples(target: str, row: Mapping[str, Any] | None) -> list[Sample]:
    """The samples of `statement()`'s row, its columns read by name (`dict_row`)."""
    if row is None:
        raise ProbeError("protocol", "the probe's statement returned no row")
    t = {"target": target}
    counts = dict.fromkeys(STATES.values(), 0)
    for state, count in row["connections_by_state"]:
        counts[STATES.get(state, "unknown")] += int(count)
    out = [sample(CONNECTIONS, n, **t, state=s) for s, n in counts.items()]
    out += [
        sample(MAX_CONNECTIONS, row["max_connections"], **t),
        sample(RESERVED_CONNECTIONS, row["reserved_connections"], **t),
        sample(OLDEST_TRANSACTION, row["oldest_transaction"], **t),
        sample(OLDEST_IDLE_IN_TRANSACTION, row["oldest_idle_in_transaction"], **t),
        sample(OLDEST_ACTIVE_QUERY, row["oldest_active_query"], **t),
        sample(LOCK_WAITING, row["lock_waiting"], **t),
        sample(OLDEST_LOCK_WAIT, max(row["oldest_lock_wait"], 0.0), **t),
        sample(BLOCKED, row["blocked"], **t),
        sample(BLOCKING, row["blocking"], **t),
        sample(IN_RECOVERY, 1.0 if row["in_recovery"] else 0.0, **t),
        sample(FREEZE_MAX_AGE, row["freeze_max_age"], **t),
    ]
    out += _standby_samples(target, row["standbys"])
    out += _slot_samples(target, row["slots"])
    if row["receiver"] is not None:
        out += _recovery_samples(target, row["receiver"])
    out += _database_samples(target, row["databases"] or ())
    return out


def _database_samples(target: str, rows: Sequence[Sequence[Any]]) -> list[Sample]:
    out: list[Sample] = []
    for name, deadlocks, conflicts, commits, rollbacks, temp_bytes, xid_age in rows:
        d = {"target": target, "database": str(name)}
        out += [
            sample(DEADLOCKS, float(deadlocks or 0), **d),
            sample(CONFLICTS, float(conflicts or 0), **d),
            sample(COMMITS, float(commits or 0), **d),
            sample(ROLLBACKS, float(rollbacks or 0), **d),
            sample(TEMP_BYTES, float(temp_bytes or 0), **d),
            sample(FROZEN_XID_AGE, float(xid_age), **d),
        ]
    return out


def _standby_samples(target: str, rows: Sequence[Sequence[Any]]) -> list[Sample]:
    grouped: dict[tuple[str, str], _Standby] = {}
    for name, addr, state, sync_state, *rest in rows:
        standby = grouped.setdefault((str(name or ""), str(addr or "")), _Standby())
        if state is None:  # hidden from a role without pg_monitor: no lag to tell either
            standby.add("unknown", "unknown", lsn_diffs=None, lags=None)
        else:
            standby.add(str(state), str(sync_state), lsn_diffs=rest[:4], lags=rest[4:])
    out: list[Sample] = []
    for (name, addr), standby in grouped.items():
        s = {"target": target, "application_name": name, "client_addr": addr}
        for (state, sync_state), n in standby.states.items():
            out.append(sample(STANDBYS, n, **s, state=state, sync_state=sync_state))
        for stage, lag in standby.lag_bytes.items():
            out.append(sample(STANDBY_LAG_BYTES, max(lag, 0.0), **s, stage=stage))
        for stage, seconds in standby.lag_seconds.items():
            out.append(sample(STANDBY_LAG_SECONDS, seconds, **s, stage=stage))
    return out


def _slot_samples(target: str, rows: Sequence[Sequence[Any]]) -> list[Sample]:
    out: list[Sample] = []
    for name, slot_type, active, retained, wal_status in rows:
        s = {"target": target, "slot_name": str(name), "slot_type": str(slot_type)}
        out.append(sample(SLOT_ACTIVE, 1.0 if active else 0.0, **s))
        out.append(sample(SLOT_RETAINED, max(float(retained or 0.0), 0.0), **s))
        if wal_status is not None:  # PostgreSQL 13 and later
            out += _flags(SLOT_WAL_STATUS, str(wal_status), WAL_STATUSES, **s)
    return out


def _recovery_samples(target: str, receiver: Sequence[Any]) -> list[Sample]:
    status, unreplayed, last_replay_age, paused = receiver
    t = {"target": target}
    # No WAL streamed since the standby started (receive LSN NULL): nothing waits for replay.
    behind = max(float(unreplayed or 0.0), 0.0)
    out = _flags(WAL_RECEIVER_STATUS, str(status), RECEIVER_STATUSES, **t)
    out += [
        sample(REPLAY_LAG_BYTES, behind, **t),
        sample(REPLAY_PAUSED, 1.0 if paused else 0.0, **t),
    ]
    # Caught up is 0 however old the last transaction: an idle primary is not a stuck
    # replay. Behind, the last replayed transaction's age says how stale the standby is.
    if behind == 0:
        out.append(sample(REPLAY_LAG_SECONDS, 0.0, **t))
    elif last_replay_age is not None:
        out.append(sample(REPLAY_LAG_SECONDS, max(float(last_replay_age), 0.0), **t))
    return out
