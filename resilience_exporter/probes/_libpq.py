"""What the PostgreSQL and PgBouncer probes share: libpq DSNs and connection settings."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from resilience_exporter.configuration.secrets import remember


def password_out_of_dsn(data: Any, key: str = "dsn") -> Any:
    """A `mode="before"` validator: move a password written inside the DSN at `key` into the
    `password` key, so that the DSN can be shown. Refuses a password given twice."""
    if not isinstance(data, dict) or not isinstance(data.get(key), str):
        return data
    try:
        params = conninfo_to_dict(data[key])
    except psycopg.ProgrammingError:
        # The message of this error may quote the DSN, password included.
        raise ValueError(f"{key} is not a valid PostgreSQL URL or conninfo string") from None
    password = params.pop("password", None)
    if password is None:
        return data
    if data.get("password") is not None or data.get("password_file") is not None:
        raise ValueError(f"the {key} holds a password: remove it or the password key")
    remember(str(password))
    return {**data, key: make_conninfo("", **params), "password": str(password)}


def connection_kwargs(
    *, timeout: float, application_name: str, password: str | None
) -> dict[str, Any]:
    """psycopg connection settings every probe connection has."""
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": application_name,
        # libpq's connect_timeout has a floor of 2 seconds.
        "connect_timeout": max(2, round(timeout)),
    }
    if password is not None:
        kwargs["password"] = password
    return kwargs


def endpoint(dsn: str, *, default_port: str) -> str:
    """`user@host:port` of a DSN, for secret-free descriptions."""
    params = conninfo_to_dict(dsn)
    host = params.get("host", "localhost")
    return f"{params.get('user', '')}@{host}:{params.get('port', default_port)}"
