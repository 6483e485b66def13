"""PgBouncer: pools, traffic and limits from its admin console (the `pgbouncer` database),
and optionally a `SELECT 1` through PgBouncer to each database listed in `check_databases`,
so that "PgBouncer is up but the database behind it is not" is visible.

The admin console speaks only the simple query protocol: connections use autocommit and
never prepare statements (`prepare_threshold=None`). The user must be listed in PgBouncer's
`stats_users` (or `admin_users`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from pydantic import Field, field_validator, model_validator

from resilience_exporter.classify.psycopg_errors import classify_pgbouncer
from resilience_exporter.configuration.secrets import PasswordSource
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.probes._libpq import connection_kwargs, endpoint, password_out_of_dsn
from resilience_exporter.probing.abandon import Abandoner
from resilience_exporter.probing.registry import KindSpec, register_kind
from resilience_exporter.reasons import Failure, ProbeError

_POOL_LABELS = ("target", "database", "user")
_DB_LABELS = ("target", "database")

CLIENTS = family(
    "resilience_pgbouncer_clients",
    "Client connections by pool and state (active, waiting, and the cancel-request states).",
    "gauge",
    (*_POOL_LABELS, "state"),
    group="pgbouncer",
)
SERVERS = family(
    "resilience_pgbouncer_servers",
    "Server connections by pool and state (active, idle, used, tested, login, and the "
    "cancel states).",
    "gauge",
    (*_POOL_LABELS, "state"),
    group="pgbouncer",
)
MAX_WAIT = family(
    "resilience_pgbouncer_max_wait_seconds",
    "How long the oldest waiting client of the pool has waited (0 when none waits).",
    "gauge",
    _POOL_LABELS,
    group="pgbouncer",
)
POOL_SIZE = family(
    "resilience_pgbouncer_pool_size",
    "Server connections allowed per user for the database (pool_size, from SHOW DATABASES).",
    "gauge",
    _DB_LABELS,
    group="pgbouncer",
)
RESERVE_POOL_SIZE = family(
    "resilience_pgbouncer_reserve_pool_size",
    "Server connections a pool of the database may open beyond pool_size when clients "
    "have waited reserve_pool_timeout (reserve_pool, from SHOW DATABASES).",
    "gauge",
    _DB_LABELS,
    group="pgbouncer",
)
MAX_CLIENT_CONNECTIONS = family(
    "resilience_pgbouncer_max_client_connections",
    "The max_client_conn setting: client connections PgBouncer accepts in all.",
    "gauge",
    ("target",),
    group="pgbouncer",
)
CLIENT_CONNECTIONS = family(
    "resilience_pgbouncer_client_connections",
    "Client connections open in all (SHOW LISTS used_clients), to compare with max_client_conn.",
    "gauge",
    ("target",),
    group="pgbouncer",
)
TRANSACTIONS = family(
    "resilience_pgbouncer_transactions_total",
    "Transactions pooled (in statement mode: queries).",
    "counter",
    _DB_LABELS,
    group="pgbouncer",
)
QUERIES = family(
    "resilience_pgbouncer_queries_total",
    "Queries pooled.",
    "counter",
    _DB_LABELS,
    group="pgbouncer",
)
RECEIVED_BYTES = family(
    "resilience_pgbouncer_received_bytes_total",
    "Bytes received from clients.",
    "counter",
    _DB_LABELS,
    group="pgbouncer",
)
SENT_BYTES = family(
    "resilience_pgbouncer_sent_bytes_total",
    "Bytes sent to clients.",
    "counter",
    _DB_LABELS,
    group="pgbouncer",
)
QUERY_SECONDS = family(
    "resilience_pgbouncer_query_seconds_total",
    "Time spent by server connections running queries (total_query_time).",
    "counter",
    _DB_LABELS,
    group="pgbouncer",
)
CLIENT_WAIT_SECONDS = family(
    "resilience_pgbouncer_client_wait_seconds_total",
    "Time clients spent waiting for a server connection (total_wait_time).",
    "counter",
    _DB_LABELS,
    group="pgbouncer",
)
AVG_QUERY_DURATION = family(
    "resilience_pgbouncer_avg_query_duration_seconds",
    "Average query duration over PgBouncer's last stats period (avg_query_time).",
    "gauge",
    _DB_LABELS,
    group="pgbouncer",
)
AVG_WAIT_DURATION = family(
    "resilience_pgbouncer_avg_wait_duration_seconds",
    "Average client wait for a server over PgBouncer's last stats period (avg_wait_time).",
    "gauge",
    _DB_LABELS,
    group="pgbouncer",
)
DATABASE_UP = family(
    "resilience_pgbouncer_database_up",
    "1 if a SELECT 1 through PgBouncer to the database (listed in check_databases) "
    "succeeded, else 0 with the reason.",
    "gauge",
    (*_DB_LABELS, "reason"),
    group="pgbouncer",
)

# SHOW POOLS columns: clients and servers by state (the cancel columns exist from 1.18 on).
_CLIENT_STATES: tuple[tuple[str, str], ...] = (
    ("cl_active", "active"),
    ("cl_waiting", "waiting"),
    ("cl_active_cancel_req", "active_cancel_req"),
    ("cl_waiting_cancel_req", "waiting_cancel_req"),
)
_SERVER_STATES: tuple[tuple[str, str], ...] = (
    ("sv_active", "active"),
    ("sv_idle", "idle"),
    ("sv_used", "used"),
    ("sv_tested", "tested"),
    ("sv_login", "login"),
    ("sv_active_cancel", "active_cancel"),
    ("sv_being_canceled", "being_canceled"),
)
# SHOW STATS columns: (column, family, scale). Times are in microseconds.
_STATS: tuple[tuple[str, Any, float], ...] = (
    ("total_xact_count", TRANSACTIONS, 1.0),
    ("total_query_count", QUERIES, 1.0),
    ("total_received", RECEIVED_BYTES, 1.0),
    ("total_sent", SENT_BYTES, 1.0),
    ("total_query_time", QUERY_SECONDS, 1e-6),
    ("total_wait_time", CLIENT_WAIT_SECONDS, 1e-6),
    ("avg_query_time", AVG_QUERY_DURATION, 1e-6),
    ("avg_wait_time", AVG_WAIT_DURATION, 1e-6),
)

ADMIN_DATABASE = "pgbouncer"


class CheckDatabase(PasswordSource):
    """A database to reach through PgBouncer; user and password default to the target's."""

    name: str = Field(min_length=1)
    user: str | None = None


class PgBouncerTarget(TargetConfig, PasswordSource):
    kind: Literal["pgbouncer"]
    dsn: str = Field(min_length=1)
    check_databases: list[CheckDatabase] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_dsn(cls, data: Any) -> Any:
        return password_out_of_dsn(data)

    @field_validator("check_databases", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("dsn")
    @classmethod
    def _admin_database(cls, dsn: str) -> str:
        params = conninfo_to_dict(dsn)
        dbname = params.get("dbname", ADMIN_DATABASE)
        if dbname != ADMIN_DATABASE:
            raise ValueError(
                f"the dsn must name PgBouncer's admin database {ADMIN_DATABASE!r}, not {dbname!r}"
                " (list the databases to reach through PgBouncer in check_databases)"
            )
        return make_conninfo("", **{**params, "dbname": ADMIN_DATABASE})

    @model_validator(mode="after")
    def _unique_checks(self) -> PgBouncerTarget:
        names = [c.name for c in self.check_databases]
        if len(names) != len(set(names)):
            raise ValueError("check_databases lists a database twice")
        return self

    def describe(self) -> str:
        return f"pgbouncer {endpoint(self.dsn, default_port='6432')}"


def _number(row: Mapping[str, Any], column: str) -> float:
    value = row.get(column)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ProbeError("protocol", f"PgBouncer gave no number for {column}")


class PgBouncerProbe:
    def __init__(self, target: PgBouncerTarget) -> None:
        self.target = target
        self._admin: psycopg.AsyncConnection[DictRow] | None = None
        # By database: a check that overran its budget and is still being cancelled.
        self._checks: dict[str, Abandoner] = {}

    # --- connections --------------------------------------------------------------------
    def _kwargs(self, password: str | None, application_name: str) -> dict[str, Any]:
        kwargs = connection_kwargs(
            timeout=self.target.timeout_seconds,
            application_name=application_name,
            password=password,
        )
        # The console understands only the simple query protocol; in transaction pooling,
        # named prepared statements would not survive a server change.
        kwargs["prepare_threshold"] = None
        return kwargs

    async def _admin_connection(self) -> psycopg.AsyncConnection[DictRow]:
        if self._admin is not None and not self._admin.closed:
            return self._admin
        self._admin = await psycopg.AsyncConnection.connect(
            self.target.dsn,
            row_factory=dict_row,
            **self._kwargs(self.target.resolve_password(), "resilience-exporter"),
        )
        return self._admin

    async def _discard_admin(self) -> None:
        conn, self._admin = self._admin, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def open(self) -> None:
        """Nothing connects before the first probe; after close() probing starts again."""

    # --- probing ------------------------------------------------------------------------
    async def probe(self) -> Sequence[Sample]:
        checks = [asyncio.create_task(self._check(db)) for db in self.target.check_databases]
        try:
            samples = await self._console_samples()
        except BaseException:
            await self._discard_admin()
            for task in checks:
                task.cancel()
            await asyncio.gather(*checks, return_exceptions=True)
            raise
        for check in await asyncio.gather(*checks):
            samples.append(check)
        return samples

    async def _show(self, conn: psycopg.AsyncConnection[DictRow], what: str) -> list[DictRow]:
        async with conn.cursor() as cur:
            await cur.execute(f"SHOW {what}")
            return await cur.fetchall()

    async def _console_samples(self) -> list[Sample]:
        name = self.target.name
        conn = await self._admin_connection()
        pools = await self._show(conn, "POOLS")
        stats = await self._show(conn, "STATS")
        databases = await self._show(conn, "DATABASES")
        config = {str(r["key"]): r["value"] for r in await self._show(conn, "CONFIG")}
        lists = {str(r["list"]): r["items"] for r in await self._show(conn, "LISTS")}

        out: list[Sample] = []
        for row in pools:
            labels = {"target": name, "database": str(row["database"]), "user": str(row["user"])}
            for column, state in _CLIENT_STATES:
                if column in row:
                    out.append(sample(CLIENTS, _number(row, column), **labels, state=state))
            for column, state in _SERVER_STATES:
                if column in row:
                    out.append(sample(SERVERS, _number(row, column), **labels, state=state))
            wait = _number(row, "maxwait") + _number(row, "maxwait_us") / 1e6
            out.append(sample(MAX_WAIT, wait, **labels))
        for row in stats:
            labels = {"target": name, "database": str(row["database"])}
            for column, fam, scale in _STATS:
                out.append(sample(fam, _number(row, column) * scale, **labels))
        for row in databases:
            db = {"target": name, "database": str(row["name"])}
            out.append(sample(POOL_SIZE, _number(row, "pool_size"), **db))
            out.append(sample(RESERVE_POOL_SIZE, _number(row, "reserve_pool"), **db))
        out.append(sample(MAX_CLIENT_CONNECTIONS, _number(config, "max_client_conn"), target=name))
        out.append(sample(CLIENT_CONNECTIONS, _number(lists, "used_clients"), target=name))
        return out

    async def _check(self, database: CheckDatabase) -> Sample:
        """`SELECT 1` through PgBouncer; never raises: the outcome is the sample.

        A check that overruns its budget is abandoned (left to finish in the background):
        until it has finished, that database is not checked again.
        """
        check = self._checks.get(database.name)
        if check is None:
            # Leave part of the target's timeout for the console queries that run alongside.
            budget = self.target.timeout_seconds * 0.8
            check = self._checks[database.name] = Abandoner(timeout=budget)
        if check.busy:
            return self._database_up(database, "timeout")
        try:
            await check.run(self._select_one(database), name=f"check:{database.name}")
        except TimeoutError:
            return self._database_up(database, "timeout")
        except Exception as exc:  # the database's trouble is the sample's reason
            return self._database_up(database, classify_pgbouncer(exc).reason)
        return self._database_up(database, "")

    async def _select_one(self, database: CheckDatabase) -> None:
        params = conninfo_to_dict(self.target.dsn)
        params["dbname"] = database.name
        if database.user is not None:
            params["user"] = database.user
        password = database.resolve_password()
        if password is None and database.user is None:
            password = self.target.resolve_password()
        conn = await psycopg.AsyncConnection.connect(
            # PgBouncer passes the name on to the server: tell these from the exporter's pool.
            make_conninfo("", **params),
            **self._kwargs(password, "resilience-exporter-check"),
        )
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()

    def _database_up(self, database: CheckDatabase, reason: str) -> Sample:
        return sample(
            DATABASE_UP,
            0.0 if reason else 1.0,
            target=self.target.name,
            database=database.name,
            reason=reason,
        )

    def local_samples(self) -> Sequence[Sample]:
        return ()

    def classify(self, exc: BaseException) -> Failure:
        return classify_pgbouncer(exc)

    async def close(self) -> None:
        await self._discard_admin()
        checks, self._checks = self._checks, {}
        await asyncio.gather(*(check.cancel() for check in checks.values()))


def _create(target: PgBouncerTarget) -> PgBouncerProbe:
    return PgBouncerProbe(target)


register_kind(KindSpec(kind="pgbouncer", config_model=PgBouncerTarget, create=_create))
