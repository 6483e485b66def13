"""The `redis` kind: config (URL, TLS, Sentinel), client (the exporter's pool and Sentinel
clients) and probe (PING, INFO and what they tell)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resilience_exporter.probes.redis.config import RedisTarget
from resilience_exporter.probes.redis.probe import RedisProbe
from resilience_exporter.probing.registry import KindSpec, register_kind


def _from_env_url(url: str) -> Mapping[str, Any]:
    return {"name": "redis", "kind": "redis", "url": url}


def _create(target: RedisTarget) -> RedisProbe:
    return RedisProbe(target)


register_kind(
    KindSpec(
        kind="redis",
        config_model=RedisTarget,
        create=_create,
        from_env_url=_from_env_url,
    )
)
