"""What the Redis failure scenarios share: the exporter's config for Redis targets, and the
shipped rules with a short `for:` so that an alert test need not wait minutes."""

from __future__ import annotations

from pathlib import Path

from alerts.generate import render, write_rules
from alerts.thresholds import load_thresholds
from scripts.testservers.redis import RedisServer

JOB = "resilience-exporter"
PASSWORD = "Failure-Modes-Pw-41d7"


def rules_with_short_for(workdir: Path, *alerts: str) -> list[Path]:
    """The shipped rules, with `for: 1s` for `alerts` so that a test need not wait minutes."""
    thresholds = load_thresholds(overrides={"alerts": {a: {"for": "1s"} for a in alerts}})
    return write_rules(workdir / "rules", render(thresholds))


def redis_target(name: str, server: RedisServer, extra: str = "") -> str:
    return f"""
  - name: {name}
    kind: redis
    url: redis://127.0.0.1:{server.port}/0
    password: ${{REDIS_PW}}{extra}"""


def config_of(*targets: str) -> str:
    return "defaults: {interval: 1s, timeout: 1s}\nhost: {enabled: false}\ntargets:" + "".join(
        targets
    )
