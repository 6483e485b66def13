"""Redis Sentinel and Redis Cluster, provoked on real servers: a quorum lost and regained, a
real failover followed without a stall, a cluster losing a master; each read through the real
exporter and, for the alerts, fired and resolved in a real Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from conftest import REDIS_DEFAULT_PASSWORD
from exporter_process import ExporterProcess, Scrape, up_is
from redis_support import JOB, PASSWORD, config_of, redis_target, rules_with_short_for
from tests_support import wait_firing, wait_resolved

from resilience_exporter.configuration.loader import parse
from resilience_exporter.configuration.yamlfile import ConfigError
from scripts.testservers.base import wait_until
from scripts.testservers.prometheus import PrometheusServer
from scripts.testservers.redis import RedisCluster, RedisServer, SentinelServer


@dataclass
class Watched:
    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]


@pytest.fixture
def watched() -> Iterator[Watched]:
    """A master, its replica and two Sentinels that must both agree (quorum 2) and call a
    silent peer down after one second."""
    servers: list[RedisServer | SentinelServer] = []
    try:
        master = RedisServer(password=PASSWORD)
        servers.append(master)
        master.start()
        replica = RedisServer(password=PASSWORD, replica_of=master)
        servers.append(replica)
        replica.start()
        sentinels = [SentinelServer(master, quorum=2, down_after_ms=1000) for _ in range(2)]
        for sentinel in sentinels:
            servers.append(sentinel)
            sentinel.start()
        yield Watched(master, replica, sentinels)
    finally:
        for server in reversed(servers):
            server.remove()


def sentinel_target(name: str, sentinels: list[SentinelServer]) -> str:
    hosts = ", ".join(f'"127.0.0.1:{s.port}"' for s in sentinels)
    return f"""
  - name: {name}
    kind: redis
    sentinel: {{hosts: [{hosts}], service: {sentinels[0].service}}}
    password: ${{REDIS_PW}}"""


@pytest.mark.slow
def test_sentinel_quorum_lost_fires_and_regained_resolves(watched: Watched, workdir: Path) -> None:
    first, second = watched.sentinels
    rules = rules_with_short_for(workdir, "ResilienceRedisSentinelNoQuorum")
    config = config_of(sentinel_target("ha", [first]))
    with (
        ExporterProcess(workdir, config=config, env={"REDIS_PW": PASSWORD}) as exp,
        PrometheusServer(scrape={JOB: [f"127.0.0.1:{exp.port}"]}, rule_files=rules) as prom,
    ):
        t = {"target": "ha"}
        m = exp.wait_for(
            "both Sentinels and the replica known, quorum reachable",
            lambda e: (
                e.value("resilience_redis_sentinel_known_sentinels", **t) == 2
                and e.value("resilience_redis_sentinel_known_replicas", **t) == 1
                and e.value("resilience_redis_sentinel_quorum_reachable", **t) == 1
            ),
            timeout=60,
        )
        assert m.value("resilience_redis_sentinel_quorum", **t) == 2
        second.stop()
        m = exp.wait_for(
            "quorum unreachable",
            lambda e: e.value("resilience_redis_sentinel_quorum_reachable", **t) == 0,
            timeout=30,
        )
        # The master is still there and probed: only failing over is impossible.
        assert m.value("resilience_up", **t) == 1
        assert m.value("resilience_redis_sentinel_known_sentinels", **t) == 2
        wait_firing(prom, "ResilienceRedisSentinelNoQuorum", timeout=60, **t)
        second.start()
        exp.wait_for(
            "quorum reachable again",
            lambda e: e.value("resilience_redis_sentinel_quorum_reachable", **t) == 1,
            timeout=60,
        )
        wait_resolved(prom, "ResilienceRedisSentinelNoQuorum", timeout=60, **t)


def exporter_clients(server: RedisServer) -> int:
    with server.client() as client:
        return sum(1 for c in client.client_list() if c.get("name") == "resilience-exporter")


@pytest.mark.slow
def test_sentinel_failover_is_followed_without_a_stall(watched: Watched, workdir: Path) -> None:
    """SENTINEL FAILOVER promotes the replica: the target follows the new master, the
    exporter's pool to the old one is dropped, /metrics answers within a short timeout all
    the while, and probes go on without hanging (at most one may meet the old master as
    Sentinel closes its clients' connections)."""
    old, new = watched.master, watched.replica
    config = config_of(sentinel_target("ha", watched.sentinels))
    with ExporterProcess(workdir, config=config, env={"REDIS_PW": PASSWORD}) as exp:
        t = {"target": "ha"}
        exp.wait_for(
            "the replica known and the old master probed",
            lambda e: (
                e.value("resilience_redis_sentinel_known_replicas", **t) == 1
                and e.value(
                    "resilience_redis_sentinel_master", **t, address=f"127.0.0.1:{old.port}"
                )
                == 1
                and e.value("resilience_redis_connected_replicas", **t) == 1
            ),
            timeout=60,
        )
        assert exporter_clients(old) == 1
        assert exporter_clients(new) == 0
        with redis.Redis(host="127.0.0.1", port=watched.sentinels[0].port, socket_timeout=5) as s:
            assert s.execute_command("SENTINEL", "FAILOVER", watched.sentinels[0].service)
        probes_before = exp.scrape().value("resilience_probe_duration_seconds_count", **t) or 0
        scrapes: list[Scrape] = []

        def followed() -> bool:
            # A scrape never waits on a target: a client timeout well under the probe's.
            m = exp.scrape(timeout=0.9)
            scrapes.append(m)
            return (
                m.value("resilience_redis_sentinel_master", **t, address=f"127.0.0.1:{new.port}")
                == 1
                and m.value("resilience_redis_role", **t, role="master") == 1
                and m.value("resilience_up", **t) == 1
            )

        wait_until(followed, timeout=60, interval=0.2, what="the target to follow the new master")
        assert not scrapes[-1].has(
            "resilience_redis_sentinel_master", **t, address=f"127.0.0.1:{old.port}"
        )
        wait_until(
            lambda: exporter_clients(new) == 1 and exporter_clients(old) == 0,
            timeout=10, what="the exporter's pool moved to the new master",
        )  # fmt: skip
        after = exp.scrape()
        # Probes went on through the failover and none hung until its timeout.
        assert (after.value("resilience_probe_duration_seconds_count", **t) or 0) > probes_before
        assert not after.value("resilience_probe_errors_total", **t, reason="timeout")
        downs = [m.series("resilience_up", **t) for m in scrapes if up_is(0, "ha")(m)]
        assert len(downs) <= 1, downs


@pytest.mark.slow
def test_redis_cluster_state_and_a_failed_master(redis_server: RedisServer, workdir: Path) -> None:
    rules = rules_with_short_for(
        workdir, "ResilienceRedisClusterFailing", "ResilienceRedisClusterSlotsNotOk"
    )
    with RedisCluster(password=PASSWORD) as cluster:
        first, second, third = cluster.nodes
        config = config_of(
            redis_target("node-found", first),
            redis_target("node-declared", second, "\n    cluster: true"),
            redis_target("node-not-asked", third, "\n    cluster: false"),
            f"""
  - name: no-cluster
    kind: redis
    url: redis://127.0.0.1:{redis_server.port}/0
    password: ${{DEFAULT_PW}}
    cluster: true""",
        )
        env = {"REDIS_PW": PASSWORD, "DEFAULT_PW": REDIS_DEFAULT_PASSWORD}
        with (
            ExporterProcess(workdir, config=config, env=env) as exp,
            PrometheusServer(scrape={JOB: [f"127.0.0.1:{exp.port}"]}, rule_files=rules) as prom,
        ):
            m = exp.wait_for(
                "the cluster targets probed",
                lambda e: (
                    e.has("resilience_redis_cluster_state_ok", target="node-found")
                    and e.has("resilience_redis_cluster_state_ok", target="node-declared")
                    and up_is(1, "node-not-asked")(e)
                    and up_is(0, "no-cluster", "other")(e)
                ),
                timeout=30,
            )
            for name in ("node-found", "node-declared"):
                t = {"target": name}
                assert m.value("resilience_up", **t) == 1
                assert m.value("resilience_redis_cluster_state_ok", **t) == 1
                for state, slots in (("assigned", 16384), ("ok", 16384), ("pfail", 0), ("fail", 0)):
                    assert m.value("resilience_redis_cluster_slots", **t, state=state) == slots
                assert m.value("resilience_redis_cluster_known_nodes", **t) == 3
                assert m.value("resilience_redis_cluster_size", **t) == 3
                assert m.value("resilience_redis_role", **t, role="master") == 1
            assert not m.has("resilience_redis_cluster_state_ok", target="node-not-asked")
            assert not m.has("resilience_redis_cluster_state_ok", target="no-cluster")
            _, landing, _ = exp.get("/")
            assert "cluster support disabled" in landing

            third.stop()
            t = {"target": "node-found"}
            m = exp.wait_for(
                "the stopped master's slots failed",
                lambda e: (
                    e.value("resilience_redis_cluster_state_ok", **t) == 0
                    and e.value("resilience_redis_cluster_slots", **t, state="fail") == 5461
                ),
                timeout=30,
            )
            assert m.value("resilience_redis_cluster_slots", **t, state="ok") == 16384 - 5461
            assert m.value("resilience_redis_cluster_known_nodes", **t) == 3
            assert m.value("resilience_up", **t) == 1
            wait_firing(prom, "ResilienceRedisClusterFailing", timeout=60, **t)
            wait_firing(prom, "ResilienceRedisClusterSlotsNotOk", timeout=60, **t)

            third.start()
            exp.wait_for(
                "the cluster whole again",
                lambda e: (
                    e.value("resilience_redis_cluster_state_ok", **t) == 1
                    and e.value("resilience_redis_cluster_slots", **t, state="ok") == 16384
                ),
                timeout=60,
            )
            wait_resolved(prom, "ResilienceRedisClusterFailing", timeout=60, **t)
            wait_resolved(prom, "ResilienceRedisClusterSlotsNotOk", timeout=60, **t)


def test_cluster_true_with_sentinel_is_refused() -> None:
    with pytest.raises(ConfigError, match="Redis Cluster does not use Sentinel"):
        parse(
            "targets: [{name: c, kind: redis, cluster: true,"
            " sentinel: {hosts: ['h:26379'], service: m}}]",
            "test.yml",
            env={},
        )
