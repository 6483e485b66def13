"""The PostgreSQL probe's replication families and the columns of its statement that fill
them: as a primary, its standbys (pg_stat_replication) and slots (pg_replication_slots); as a
standby, its WAL receiver and replay. `stats.statement()` puts the columns in its one
statement; `samples()` turns them into samples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resilience_exporter.metrics.families import Family, Sample, family, sample

_STANDBY = ("target", "application_name", "client_addr")
_SLOT = ("target", "slot_name", "slot_type")

# --- replication: the primary's view ----------------------------------------------------------
IN_RECOVERY = family(
    "resilience_postgres_in_recovery",
    "1 if the server is a standby (pg_is_in_recovery()), 0 if it is a primary.",
    "gauge",
    ("target",),
    group="postgres",
)
STANDBYS = family(
    "resilience_postgres_standbys",
    "Standbys streaming from this server (pg_stat_replication), by application_name, "
    "client_addr (empty over a Unix socket), state and sync_state (unknown when the role "
    "may not see them).",
    "gauge",
    (*_STANDBY, "state", "sync_state"),
    group="postgres",
)
STANDBY_LAG_BYTES = family(
    "resilience_postgres_standby_lag_bytes",
    "WAL bytes a standby is behind this server's current position, per stage: not yet "
    "sent, written, flushed or replayed by the standby.",
    "gauge",
    (*_STANDBY, "stage"),
    group="postgres",
)
STANDBY_LAG_SECONDS = family(
    "resilience_postgres_standby_lag_seconds",
    "The standby's lag as pg_stat_replication measures it (write_lag, flush_lag, "
    "replay_lag); 0 once caught up with no traffic.",
    "gauge",
    (*_STANDBY, "stage"),
    group="postgres",
)
SLOT_ACTIVE = family(
    "resilience_postgres_replication_slot_active",
    "1 if a consumer is connected to the replication slot, else 0.",
    "gauge",
    _SLOT,
    group="postgres",
)
SLOT_RETAINED = family(
    "resilience_postgres_replication_slot_retained_wal_bytes",
    "WAL the slot keeps on disk: bytes between the current WAL position and the slot's "
    "restart_lsn (0 when it has none).",
    "gauge",
    _SLOT,
    group="postgres",
)
SLOT_WAL_STATUS = family(
    "resilience_postgres_replication_slot_wal_status",
    "1 for the slot's wal_status (reserved, extended, unreserved, lost), 0 for the others. "
    "PostgreSQL 13 and later.",
    "gauge",
    (*_SLOT, "wal_status"),
    group="postgres",
)

# --- replication: the standby's view ----------------------------------------------------------
WAL_RECEIVER_STATUS = family(
    "resilience_postgres_wal_receiver_status",
    "Standbys only: 1 for the WAL receiver's status (pg_stat_wal_receiver; stopped when "
    "no receiver runs, unknown when the role may not see it), 0 for the others.",
    "gauge",
    ("target", "status"),
    group="postgres",
)
REPLAY_LAG_BYTES = family(
    "resilience_postgres_replay_lag_bytes",
    "Standbys only: WAL bytes received but not yet replayed.",
    "gauge",
    ("target",),
    group="postgres",
)
REPLAY_LAG_SECONDS = family(
    "resilience_postgres_replay_lag_seconds",
    "Standbys only: 0 when everything received is replayed (an idle primary sends "
    "nothing), else the age of the last replayed transaction. Absent while behind if "
    "nothing was replayed since the standby started.",
    "gauge",
    ("target",),
    group="postgres",
)
REPLAY_PAUSED = family(
    "resilience_postgres_replay_paused",
    "Standbys only: 1 if WAL replay is paused (pg_is_wal_replay_paused()), else 0.",
    "gauge",
    ("target",),
    group="postgres",
)

WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")
# `unknown`: a receiver runs, but the role may not see its details (no pg_monitor).
RECEIVER_STATUSES = (
    "stopped",
    "starting",
    "streaming",
    "waiting",
    "restarting",
    "stopping",
    "unknown",
)
LAG_STAGES = ("write", "flush", "replay")

# Where WAL stands now: a standby (cascading to others, or holding slots) has no
# pg_current_wal_lsn(), so it counts from what it has received (or replayed from archive).
POSITION = """CASE WHEN pg_is_in_recovery()
                 THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                 ELSE pg_current_wal_lsn() END"""
# The statement's columns: JSON arrays (one round trip however many standbys and slots) whose
# elements `samples()` reads in the order written here.
STANDBYS_COLUMN = """coalesce((SELECT json_agg(json_build_array(
                    application_name, coalesce(host(client_addr), ''), state, sync_state,
                    pg_wal_lsn_diff(p.lsn, sent_lsn)::float8,
                    pg_wal_lsn_diff(p.lsn, write_lsn)::float8,
                    pg_wal_lsn_diff(p.lsn, flush_lsn)::float8,
                    pg_wal_lsn_diff(p.lsn, replay_lsn)::float8,
                    extract(epoch FROM write_lag)::float8,
                    extract(epoch FROM flush_lag)::float8,
                    extract(epoch FROM replay_lag)::float8))
                 FROM pg_stat_replication, wal AS p), '[]')"""
SLOTS_COLUMN = """coalesce((SELECT json_agg(json_build_array(
                    slot_name, slot_type, active,
                    pg_wal_lsn_diff(p.lsn, restart_lsn)::float8, {wal_status}))
                 FROM pg_replication_slots, wal AS p), '[]')"""
RECEIVER_COLUMN = """CASE WHEN pg_is_in_recovery() THEN json_build_array(
           coalesce((SELECT coalesce(status, 'unknown') FROM pg_stat_wal_receiver), 'stopped'),
           pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8,
           extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8,
           pg_is_wal_replay_paused()) END"""


def samples(target: str, row: Mapping[str, Any]) -> list[Sample]:
    """The replication samples of the statement's row (`in_recovery`, `standbys`, `slots`,
    `receiver`)."""
    out = [sample(IN_RECOVERY, 1.0 if row["in_recovery"] else 0.0, target=target)]
    out += _standby_samples(target, row["standbys"])
    out += _slot_samples(target, row["slots"])
    if row["receiver"] is not None:
        out += _recovery_samples(target, row["receiver"])
    return out


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
