"""The six dashboards, one module each: Overview, PostgreSQL, PgBouncer, Redis, Circuit
breakers, Host. A module's `dashboard(thresholds)` declares its rows, a function each; a
board's larger rows may live in a module of their own (`postgres_replication`,
`redis_durability`); the query helpers they share are in `_common`."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards import breakers, host, overview, pgbouncer, postgres, redis
from grafana.spec import Dashboard

# The order of the links between the dashboards.
MODULES = (overview, postgres, pgbouncer, redis, breakers, host)


def dashboards(thresholds: Thresholds) -> list[Dashboard]:
    return [module.dashboard(thresholds) for module in MODULES]
