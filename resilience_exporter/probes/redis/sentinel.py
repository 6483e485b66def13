"""What the Sentinels reported at the last master discovery: whether one answered, the master
they named, and whether they could fail it over (quorum, Sentinels and replicas known)."""

from __future__ import annotations

from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.probes.redis.client import RedisClients
from resilience_exporter.probes.redis.config import SentinelConfig, host_port

SENTINEL_UP = family(
    "resilience_redis_sentinel_up",
    "Sentinel targets only: 1 if a Sentinel answered the last master discovery, else 0.",
    "gauge",
    ("target",),
    group="redis",
)
SENTINEL_MASTER = family(
    "resilience_redis_sentinel_master",
    "Sentinel targets only: 1 for the master address Sentinel last reported for the service.",
    "gauge",
    ("target", "service", "address"),
    group="redis",
)
SENTINEL_QUORUM_REACHABLE = family(
    "resilience_redis_sentinel_quorum_reachable",
    "Sentinel targets only: 1 if SENTINEL CKQUORUM says enough Sentinels are reachable to "
    "agree the master is down and authorise a failover, 0 if not.",
    "gauge",
    ("target",),
    group="redis",
)
SENTINEL_QUORUM = family(
    "resilience_redis_sentinel_quorum",
    "Sentinel targets only: Sentinels that must agree the master is down (the configured quorum).",
    "gauge",
    ("target",),
    group="redis",
)
SENTINEL_KNOWN_SENTINELS = family(
    "resilience_redis_sentinel_known_sentinels",
    "Sentinel targets only: Sentinels watching the service, as the answering Sentinel knows "
    "them (itself included).",
    "gauge",
    ("target",),
    group="redis",
)
SENTINEL_KNOWN_REPLICAS = family(
    "resilience_redis_sentinel_known_replicas",
    "Sentinel targets only: replicas of the master the answering Sentinel knows, reachable or not.",
    "gauge",
    ("target",),
    group="redis",
)


def sentinel_samples(name: str, config: SentinelConfig, clients: RedisClients) -> list[Sample]:
    if clients.sentinel_up is None:
        return []
    out = [sample(SENTINEL_UP, 1.0 if clients.sentinel_up else 0.0, target=name)]
    if clients.master is not None:
        address = host_port(*clients.master)
        out.append(sample(SENTINEL_MASTER, 1, target=name, service=config.service, address=address))
    report = clients.sentinel_report
    if clients.sentinel_up and report is not None:
        out += [
            sample(SENTINEL_QUORUM, report.quorum, target=name),
            sample(SENTINEL_KNOWN_SENTINELS, report.known_sentinels, target=name),
            sample(SENTINEL_KNOWN_REPLICAS, report.known_replicas, target=name),
        ]
        if report.quorum_reachable is not None:
            reachable = 1.0 if report.quorum_reachable else 0.0
            out.append(sample(SENTINEL_QUORUM_REACHABLE, reachable, target=name))
    return out
