"""The `postgres` kind: the target and its probe (probe) and what its one statement asks
the server and exports (stats)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resilience_exporter.probes.postgres.probe import PostgresProbe, PostgresTarget
from resilience_exporter.probing.registry import KindSpec, register_kind

__all__ = ["PostgresProbe", "PostgresTarget"]


def _from_env_url(url: str) -> Mapping[str, Any]:
    return {"name": "database", "kind": "postgres", "dsn": url}


def _create(target: PostgresTarget) -> PostgresProbe:
    return PostgresProbe(target)


register_kind(
    KindSpec(
        kind="postgres",
        config_model=PostgresTarget,
        create=_create,
        from_env_url=_from_env_url,
    )
)
