"""The failure signals `bench.coverage` looks for: what an SRE watches, and the series (name
regexes) the peer exporters and ours carry each in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    """What an SRE watches, and the series (name regexes) each exporter carries it in."""

    name: str
    peer: Sequence[str]
    ours: Sequence[str]


POSTGRES = (
    Signal("Server reachable", [r"^pg_up$"], [r"^resilience_up$"]),
    Signal(
        "Connection slots used vs max_connections",
        [r"^pg_stat_activity_count$", r"^pg_settings_max_connections$"],
        [r"^resilience_postgres_connections$", r"^resilience_postgres_max_connections$"],
    ),
    Signal(
        "Oldest open transaction",
        [r"^pg_stat_activity_max_tx_duration$"],
        [r"^resilience_postgres_oldest_transaction_seconds$"],
    ),
    Signal(
        "Idle in transaction, for how long",
        [r"^pg_stat_activity_max_tx_duration$", r"^pg_process_idle_seconds"],
        [r"^resilience_postgres_oldest_idle_in_transaction_seconds$"],
    ),
    Signal("Oldest active statement", [], [r"^resilience_postgres_oldest_active_query_seconds$"]),
    Signal(
        "Sessions waiting for a lock / blocked by others",
        [],
        [r"^resilience_postgres_lock_waiting_sessions$", r"^resilience_postgres_blocked_sessions$"],
    ),
    Signal("Longest lock wait", [], [r"^resilience_postgres_oldest_lock_wait_seconds$"]),
    Signal("Locks held, by mode", [r"^pg_locks_count$"], []),
    Signal(
        "Deadlocks",
        [r"^pg_stat_database_deadlocks(_total)?$"],
        [r"^resilience_postgres_deadlocks_total$"],
    ),
    Signal(
        "Rollbacks (and commits)",
        [r"^pg_stat_database_xact_rollback(_total)?$"],
        [r"^resilience_postgres_rollbacks_total$"],
    ),
    Signal(
        "Temporary file bytes",
        [r"^pg_stat_database_temp_bytes(_total)?$"],
        [r"^resilience_postgres_temp_bytes_total$"],
    ),
    Signal(
        "Recovery conflicts (standby)",
        [r"^pg_stat_database_conflicts", r"^pg_stat_database_conflicts_confl_"],
        [r"^resilience_postgres_conflicts_total$"],
    ),
    Signal(
        "Transaction ID age vs autovacuum_freeze_max_age",
        [],
        [r"^resilience_postgres_frozen_xid_age$", r"^resilience_postgres_autovacuum_freeze"],
    ),
    Signal(
        "Primary or standby",
        [r"^pg_replication_is_replica$"],
        [r"^resilience_postgres_in_recovery$"],
    ),
    Signal(
        "Per standby: state, sync state",
        [r"^pg_stat_replication_.*"],
        [r"^resilience_postgres_standbys$"],
    ),
    Signal(
        "Per standby: lag in bytes",
        [r"^pg_stat_replication_pg_(current_wal|wal)_lsn"],
        [r"^resilience_postgres_standby_lag_bytes$"],
    ),
    Signal(
        "Per standby: lag in seconds (write/flush/replay_lag)",
        [r"^pg_stat_replication_.*_lag"],
        [r"^resilience_postgres_standby_lag_seconds$"],
    ),
    Signal(
        "Replication slot active",
        [r"^pg_replication_slots_active$"],
        [r"^resilience_postgres_replication_slot_active$"],
    ),
    Signal(
        "Replication slot WAL retained",
        [r"^pg_replication_slots_pg_wal_lsn_diff$"],
        [r"^resilience_postgres_replication_slot_retained_wal_bytes$"],
    ),
    Signal("Replication slot wal_status", [], [r"^resilience_postgres_replication_slot_wal"]),
    Signal(
        "Standby: replay lag in seconds",
        [r"^pg_replication_lag$"],
        [r"^resilience_postgres_replay_lag_seconds$"],
    ),
    Signal(
        "Standby: WAL received, not replayed",
        [],
        [r"^resilience_postgres_replay_lag_bytes$"],
    ),
    Signal("Standby: WAL receiver status", [], [r"^resilience_postgres_wal_receiver_status$"]),
    Signal("Standby: replay paused", [], [r"^resilience_postgres_replay_paused$"]),
)
PGBOUNCER = (
    Signal(
        "PgBouncer reachable",
        [r"^pgbouncer_up$"],
        [r"^resilience_up$"],
    ),
    Signal(
        "Clients waiting, longest wait",
        [r"^pgbouncer_pools_client_waiting", r"^pgbouncer_pools_client_maxwait"],
        [r"^resilience_pgbouncer_clients$", r"^resilience_pgbouncer_max_wait_seconds$"],
    ),
    Signal(
        "Server connections in login / tested",
        [r"^pgbouncer_pools_server_login", r"^pgbouncer_pools_server_testing"],
        [r"^resilience_pgbouncer_servers$"],
    ),
    Signal(
        "Pool size and reserve pool size",
        [r"^pgbouncer_databases_database_(pool_size|reserve_pool_size)$"],
        [r"^resilience_pgbouncer_pool_size$", r"^resilience_pgbouncer_reserve_pool_size$"],
    ),
    Signal(
        "Client connections vs max_client_conn",
        [r"^pgbouncer_config_max_client_conn", r"^pgbouncer_lists_used_clients"],
        [
            r"^resilience_pgbouncer_client_connections$",
            r"^resilience_pgbouncer_max_client_connections$",
        ],
    ),
    Signal(
        "The database behind PgBouncer reachable through it",
        [],
        [r"^resilience_pgbouncer_database_up$"],
    ),
)
# Words to look for among the peer's families, so that nothing it exports for a signal is
# missed by the regexes above.
KEYWORDS = r"lock|wait|block|xid|frozen|wraparound|receiver|pause|slot|lag|replica|reserve|test"
