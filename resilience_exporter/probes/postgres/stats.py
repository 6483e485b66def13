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

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.probes.postgres import replication
from resilience_exporter.reasons import ProbeError

_DATABASE = ("target", "database")

# --- connection slots and long transactions ---------------------------------------------------
CONNECTIONS = family(
    "resilience_postgres_connections",
    "Client backends on the server by state, from pg_stat_activity.",
    "gauge",
    ("target", "state"),
    group="postgres",
)
MAX_CONNECTIONS = family(
    "resilience_postgres_max_connections",
    "The server's max_connections setting.",
    "gauge",
    ("target",),
    group="postgres",
)
RESERVED_CONNECTIONS = family(
    "resilience_postgres_reserved_connections",
    "Connection slots reserved for superusers (superuser_reserved_connections).",
    "gauge",
    ("target",),
    group="postgres",
)
OLDEST_TRANSACTION = family(
    "resilience_postgres_oldest_transaction_seconds",
    "Age of the oldest open transaction of any client backend (0 when none is open).",
    "gauge",
    ("target",),
    group="postgres",
)
OLDEST_IDLE_IN_TRANSACTION = family(
    "resilience_postgres_oldest_idle_in_transaction_seconds",
    "How long the longest session idle in transaction has been idle (0 when none).",
    "gauge",
    ("target",),
    group="postgres",
)
OLDEST_ACTIVE_QUERY = family(
    "resilience_postgres_oldest_active_query_seconds",
    "How long the longest-running statement of a client backend in state active has run "
    "(0 when none runs).",
    "gauge",
    ("target",),
    group="postgres",
)

# --- locks ------------------------------------------------------------------------------------
LOCK_WAITING = family(
    "resilience_postgres_lock_waiting_sessions",
    "Sessions (any backend type) waiting for a heavyweight lock (wait_event_type Lock).",
    "gauge",
    ("target",),
    group="postgres",
)
OLDEST_LOCK_WAIT = family(
    "resilience_postgres_oldest_lock_wait_seconds",
    "How long the longest current lock wait has lasted (pg_locks.waitstart; before "
    "PostgreSQL 14 the waiting statement's age). 0 when nobody waits.",
    "gauge",
    ("target",),
    group="postgres",
)
BLOCKED = family(
    "resilience_postgres_blocked_sessions",
    "Sessions waiting for a lock that other sessions hold (pg_blocking_pids not empty).",
    "gauge",
    ("target",),
    group="postgres",
)
BLOCKING = family(
    "resilience_postgres_blocking_sessions",
    "Sessions that hold a lock others wait for (distinct pids of pg_blocking_pids).",
    "gauge",
    ("target",),
    group="postgres",
)

# --- per database -----------------------------------------------------------------------------
DEADLOCKS = family(
    "resilience_postgres_deadlocks_total",
    "Deadlocks detected in the database (pg_stat_database.deadlocks).",
    "counter",
    _DATABASE,
    group="postgres",
)
CONFLICTS = family(
    "resilience_postgres_conflicts_total",
    "Queries cancelled by conflicts with recovery on a standby (pg_stat_database.conflicts).",
    "counter",
    _DATABASE,
    group="postgres",
)
COMMITS = family(
    "resilience_postgres_commits_total",
    "Transactions committed in the database (pg_stat_database.xact_commit).",
    "counter",
    _DATABASE,
    group="postgres",
)
ROLLBACKS = family(
    "resilience_postgres_rollbacks_total",
    "Transactions rolled back in the database (pg_stat_database.xact_rollback).",
    "counter",
    _DATABASE,
    group="postgres",
)
TEMP_BYTES = family(
    "resilience_postgres_temp_bytes_total",
    "Bytes written to temporary files by queries of the database (pg_stat_database.temp_bytes).",
    "counter",
    _DATABASE,
    group="postgres",
)
FROZEN_XID_AGE = family(
    "resilience_postgres_frozen_xid_age",
    "Transactions since the database's datfrozenxid (age(datfrozenxid)): past "
    "autovacuum_freeze_max_age autovacuum must freeze; near 2^31 the server stops writes.",
    "gauge",
    _DATABASE,
    group="postgres",
)
FREEZE_MAX_AGE = family(
    "resilience_postgres_autovacuum_freeze_max_age",
    "The server's autovacuum_freeze_max_age setting, in transactions.",
    "gauge",
    ("target",),
    group="postgres",
)

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
       {standbys} AS standbys,
       {slots} AS slots,
       {receiver} AS receiver,
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
        position=replication.POSITION,
        standbys=replication.STANDBYS_COLUMN,
        slots=replication.SLOTS_COLUMN.format(
            wal_status="wal_status" if server_version >= 130000 else "NULL"
        ),
        receiver=replication.RECEIVER_COLUMN,
        oldest_lock_wait=(
            _LOCK_WAIT_SINCE_WAITSTART if server_version >= 140000 else _LOCK_WAIT_SINCE_QUERY
        ),
    )


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
        sample(FREEZE_MAX_AGE, row["freeze_max_age"], **t),
    ]
    out += replication.samples(target, row)
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
