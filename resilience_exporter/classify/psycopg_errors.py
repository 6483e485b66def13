"""psycopg's exceptions, from PostgreSQL and from PgBouncer (which speaks the same protocol
and reports its own troubles as error messages)."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
import psycopg.errors

from resilience_exporter.classify import (
    MessageRules,
    by_message,
    classify_builtin,
    last_line,
    unexplained,
)
from resilience_exporter.reasons import Failure, Reason

SQLSTATE_REASONS: Mapping[type[psycopg.Error], tuple[Reason, bool]] = {
    psycopg.errors.InvalidPassword: ("auth", True),
    psycopg.errors.InvalidAuthorizationSpecification: ("auth", True),
    psycopg.errors.InvalidCatalogName: ("other", True),
    psycopg.errors.TooManyConnections: ("too_many_connections", False),
    # "the database system is starting up / shutting down": not accepting connections now.
    psycopg.errors.CannotConnectNow: ("refused", False),
    psycopg.errors.QueryCanceled: ("timeout", False),
    psycopg.errors.InsufficientPrivilege: ("auth", True),
}

# libpq's connection errors carry no SQLSTATE: only their words tell them apart.
POSTGRES_MESSAGES: MessageRules = (
    ("password authentication failed", "auth", True),
    ("no password supplied", "auth", True),
    ("authentication failed", "auth", True),
    ("pg_hba.conf", "auth", True),
    ('role "', "auth", True),  # role "x" does not exist
    ("does not exist", "other", True),  # database "x" does not exist
    ("too many clients", "too_many_connections", False),
    ("remaining connection slots", "too_many_connections", False),
    ("connection refused", "refused", False),
    ("no such file or directory", "refused", False),  # Unix socket not there
    ("could not translate host name", "dns", True),
    ("name or service not known", "dns", True),
    ("temporary failure in name resolution", "dns", False),
    ("timeout expired", "timeout", False),
    ("ssl", "tls", True),
    ("certificate", "tls", True),
)

PGBOUNCER_MESSAGES: MessageRules = (
    ("query_wait_timeout", "timeout", False),
    # PgBouncer could not log in to the server (down, or refusing the credentials): its
    # log says which. Clients are turned away at once until server_login_retry passes.
    ("server login has been failing", "refused", False),
    ("pgbouncer cannot connect to server", "refused", False),
    ("no more connections allowed", "too_many_connections", False),
    ("not allowed", "auth", True),  # not in admin_users/stats_users
    ("no such user", "auth", True),
    ("no such database", "other", True),
    ("database paused", "other", False),
)


def classify_postgres(exc: BaseException) -> Failure:
    for error_class, (reason, persistent) in SQLSTATE_REASONS.items():
        if isinstance(exc, error_class):
            return Failure(reason, last_line(exc), persistent)
    if isinstance(exc, psycopg.OperationalError):
        return by_message(exc, POSTGRES_MESSAGES, last_line) or Failure("other", last_line(exc))
    if isinstance(exc, psycopg.InterfaceError | psycopg.DataError):
        return Failure("protocol", last_line(exc))
    if isinstance(exc, psycopg.Error):  # the server's own words: no defect of ours
        return Failure("other", last_line(exc))
    return classify_builtin(exc) or unexplained(exc)


def classify_pgbouncer(exc: BaseException) -> Failure:
    if isinstance(exc, psycopg.Error):
        found = by_message(exc, PGBOUNCER_MESSAGES, last_line)
        if found is not None:
            return found
    return classify_postgres(exc)
