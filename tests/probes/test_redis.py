"""The Redis probe against real Redis servers (and a real Sentinel), through the real exporter."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REDIS_ACL_PASSWORD, REDIS_ACL_USER, REDIS_DEFAULT_PASSWORD, redis_acl_rights
from exporter_process import ExporterProcess, probes_done, up_is
from tests_support import eventually

from resilience_exporter.configuration.loader import embedded_default, parse
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.probes.redis.config import RedisTarget
from resilience_exporter.probes.redis.probe import RedisProbe
from scripts.testservers.redis import RedisServer, SentinelServer

MAXMEMORY = 64 * 1024 * 1024


@pytest.mark.slow
def test_families_and_plausible_values(redis_server: RedisServer, workdir: Path) -> None:
    with redis_server.client() as client:
        client.set("resilience:present", "1")
        client.get("resilience:present")
        client.get("resilience:absent")
    config = f"""
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: cache
    kind: redis
    url: redis://{REDIS_ACL_USER}@127.0.0.1:{redis_server.port}/0
    password: ${{REDIS_PW}}
    pool: {{max_connections: 3}}
    labels: {{team: web}}
  - name: cache-socket
    kind: redis
    url: unix://{redis_server.socket_path}
    password: ${{REDIS_DEFAULT_PW}}
host: {{enabled: false}}
"""
    env = {"REDIS_PW": REDIS_ACL_PASSWORD, "REDIS_DEFAULT_PW": REDIS_DEFAULT_PASSWORD}
    with ExporterProcess(workdir, config=config, env=env) as exp:
        m = exp.wait_for(
            "two probes of each",
            lambda e: probes_done("cache")(e) and probes_done("cache-socket")(e),
            timeout=30,
        )
        for target in ("cache", "cache-socket"):
            t = {"target": target}
            assert m.value("resilience_up", **t, kind="redis") == 1, exp.logs()
            assert (m.value("resilience_redis_ping_duration_seconds_count", **t) or 0) >= 2
            assert (m.value("resilience_redis_ping_duration_seconds_sum", **t) or 0) > 0
            # The exporter's own connection is one of them.
            assert (m.value("resilience_redis_connected_clients", **t) or 0) >= 1
            assert m.value("resilience_redis_blocked_clients", **t) == 0
            assert m.value("resilience_redis_max_clients", **t) == 1000
            assert (m.value("resilience_redis_memory_used_bytes", **t) or 0) > 100_000
            # maxmemory 0 means no limit and is exported as it is.
            assert m.value("resilience_redis_memory_max_bytes", **t) == 0
            assert m.value("resilience_redis_evicted_keys_total", **t) == 0
            assert m.value("resilience_redis_rejected_connections_total", **t) == 0
            assert (m.value("resilience_redis_keyspace_hits_total", **t) or 0) >= 1
            assert (m.value("resilience_redis_keyspace_misses_total", **t) or 0) >= 1
            assert m.value("resilience_redis_role", **t, role="master") == 1
            assert m.value("resilience_redis_connected_replicas", **t) == 0
            assert not m.has("resilience_redis_replication_link_up", **t)
            assert not m.has("resilience_redis_sentinel_up", **t)
            # With the documented ACL every command is answered.
            assert m.has("resilience_redis_slowlog_length", **t)
            assert m.value("resilience_redis_rdb_last_save_success", **t) == 1
            assert m.value("resilience_redis_aof_enabled", **t) == 0
            age = m.value("resilience_redis_rdb_last_save_age_seconds", **t)
            assert age is not None
            assert age >= 0
            assert (m.value("resilience_redis_commands_processed_total", **t) or 0) >= 1
            assert not m.has("resilience_redis_replication_link_down_seconds", **t)
            assert not m.has("resilience_redis_cluster_state_ok", **t)
        assert m.value("resilience_up", target="cache", team="web") == 1
        assert m.types["resilience_redis_ping_duration_seconds"] == "summary"
        assert m.types["resilience_redis_evicted_keys"] == "counter"
        pool = {"pool": "cache", "source": "exporter"}
        assert m.value("resilience_pool_max_connections", **pool) == 3
        in_use = m.value("resilience_pool_connections", **pool, state="in_use")
        idle = m.value("resilience_pool_connections", **pool, state="idle")
        assert in_use is not None
        assert idle is not None
        assert 1 <= in_use + idle <= 3
        assert (m.value("resilience_pool_acquire_duration_seconds_count", **pool) or 0) >= 2
        assert (m.value("resilience_pool_connect_duration_seconds_count", **pool) or 0) >= 1
        assert m.value("resilience_pool_errors_total", **pool, operation="connect") == 0
        assert m.value("resilience_pool_errors_total", **pool, operation="acquire") == 0
        with redis_server.client() as client:
            names = [c.get("name") for c in client.client_list()]
        assert "resilience-exporter" in names
        assert "refused a command" not in exp.logs()


def test_the_documented_acl_is_the_one_the_tests_use() -> None:
    """docs/redis-pgbouncer.md and docs/security.md give the same minimal ACL, with every
    right the probe uses; conftest's ACL user is made from the same list."""
    rights = " ".join(redis_acl_rights())
    for doc in ("docs/redis-pgbouncer.md", "docs/security.md"):
        text = (Path(__file__).resolve().parents[2] / doc).read_text()
        found = re.findall(r"ACL SETUSER monitor on >\S+ -@all ([^`\n]+)", text)
        assert found == [rights], (doc, found)


@pytest.fixture
def replicated() -> Iterator[tuple[RedisServer, RedisServer, SentinelServer]]:
    master = RedisServer(password="Master-Pw-3b81", maxmemory=MAXMEMORY)
    replica = RedisServer(password="Master-Pw-3b81", replica_of=master)
    sentinel = SentinelServer(master)
    try:
        master.start()
        replica.start()
        sentinel.start()
        yield master, replica, sentinel
    finally:
        for server in (sentinel, replica, master):
            server.remove()


@pytest.mark.slow
def test_replica_and_sentinel(
    replicated: tuple[RedisServer, RedisServer, SentinelServer], workdir: Path
) -> None:
    master, replica, sentinel = replicated
    config = f"""
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: primary
    kind: redis
    url: redis://127.0.0.1:{master.port}
    password: ${{MASTER_PW}}
  - name: replica
    kind: redis
    url: redis://127.0.0.1:{replica.port}
    password: ${{MASTER_PW}}
  - name: via-sentinel
    kind: redis
    sentinel: {{hosts: ["127.0.0.1:{sentinel.port}"], service: {sentinel.service}}}
    password: ${{MASTER_PW}}
host: {{enabled: false}}
"""
    env = {"MASTER_PW": "Master-Pw-3b81"}
    with ExporterProcess(workdir, config=config, env=env) as exp:
        m = exp.wait_for(
            "the replica linked and every target up",
            lambda e: (
                e.value("resilience_redis_replication_link_up", target="replica") == 1
                and e.value("resilience_redis_connected_replicas", target="primary") == 1
                and all(up_is(1, t)(e) for t in ("primary", "replica", "via-sentinel"))
            ),
            timeout=60,
        )
        assert m.value("resilience_redis_role", target="replica", role="replica") == 1
        assert not m.has("resilience_redis_role", target="replica", role="master")
        assert m.value("resilience_redis_role", target="primary", role="master") == 1
        assert not m.has("resilience_redis_replication_link_up", target="primary")
        assert m.value("resilience_redis_memory_max_bytes", target="primary") == MAXMEMORY
        t = {"target": "via-sentinel"}
        assert m.value("resilience_redis_sentinel_up", **t) == 1
        assert (
            m.value(
                "resilience_redis_sentinel_master",
                **t,
                service="mymaster",
                address=f"127.0.0.1:{master.port}",
            )
            == 1
        )
        # Probing the master Sentinel named: the same server as the direct target.
        assert m.value("resilience_redis_role", **t, role="master") == 1
        assert m.value("resilience_redis_memory_max_bytes", **t) == MAXMEMORY

        sentinel.stop()
        # The first probe may see its open connection dropped; the next one is refused.
        m = exp.wait_for(
            "sentinel down",
            lambda e: (
                e.value("resilience_redis_sentinel_up", **t) == 0
                and up_is(0, "via-sentinel", "refused")(e)
            ),
            timeout=20,
        )
        assert m.value("resilience_up", target="primary") == 1


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.slow
def test_stopped_then_frozen_redis(own_redis: RedisServer, workdir: Path) -> None:
    config = f"""
targets:
  - name: session-store
    kind: redis
    url: redis://127.0.0.1:{own_redis.port}
    interval: 1s
    timeout: 1s
host: {{enabled: false}}
"""
    name = "session-store"
    with ExporterProcess(workdir, config=config) as exp:
        exp.wait_for("up 1", up_is(1, name), timeout=20)
        own_redis.stop()
        # Within interval + timeout (plus scheduling slack), the right reason shows.
        exp.wait_for("up 0 reason refused", up_is(0, name, "refused"), timeout=2 + 2 + 3)
        m = exp.scrape()
        assert (m.value("resilience_probe_errors_total", target=name, reason="refused") or 0) >= 1
        assert (
            m.value(
                "resilience_pool_errors_total", pool=name, source="exporter", operation="connect"
            )
            or 0
        ) >= 1
        own_redis.start()
        exp.wait_for("up 1 after restart", up_is(1, name), timeout=20)

        own_redis.freeze()
        exp.wait_for("up 0 reason timeout", up_is(0, name, "timeout"), timeout=2 + 2 + 3)
        # Scrapes answer while the target hangs: a client timeout under the target's proves it.
        for _ in range(5):
            exp.scrape(timeout=0.9)
        own_redis.thaw()
        exp.wait_for("up 1 after thaw", up_is(1, name), timeout=20)

        for _ in range(2):  # restarted in a loop: it recovers every time
            own_redis.stop()
            exp.wait_for("up 0 reason refused", up_is(0, name, "refused"), timeout=2 + 2 + 3)
            own_redis.start()
            exp.wait_for("up 1 after restart", up_is(1, name), timeout=30)


@pytest.mark.slow
def test_wrong_or_missing_password_is_auth_and_never_shown(
    redis_server: RedisServer, workdir: Path
) -> None:
    wrong = "Wrong-Redis-Secret-77ab"
    config = f"""
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: wrongpass
    kind: redis
    url: redis://:{wrong}@127.0.0.1:{redis_server.port}/0
  - name: noauth
    kind: redis
    url: redis://127.0.0.1:{redis_server.port}/0
  - name: inline-ok
    kind: redis
    url: redis://{REDIS_ACL_USER}:{REDIS_ACL_PASSWORD}@127.0.0.1:{redis_server.port}/0
host: {{enabled: false}}
"""
    with ExporterProcess(workdir, config=config, args=["--log.level=debug"]) as exp:
        m = exp.wait_for(
            "auth failures and one success",
            lambda e: (
                up_is(0, "wrongpass", "auth")(e)
                and up_is(0, "noauth", "auth")(e)
                and up_is(1, "inline-ok")(e)
            ),
            timeout=30,
        )
        _, landing, _ = exp.get("/")
        assert "wrongpass" in landing
        assert exp.stop() == 0
        logs = exp.logs()
        assert "auth" in logs
        for secret in (wrong, REDIS_ACL_PASSWORD, REDIS_DEFAULT_PASSWORD):
            for where, text in (("metrics", m.text), ("landing page", landing), ("logs", logs)):
                assert secret not in text, f"a password leaked into the {where}"


@pytest.fixture
def tls_redis() -> Iterator[RedisServer]:
    server = RedisServer(tls=True)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.slow
def test_tls_verified_and_unverifiable(tls_redis: RedisServer, workdir: Path) -> None:
    config = f"""
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: tls-verified
    kind: redis
    url: rediss://127.0.0.1:{tls_redis.tls_port}
    tls: {{ca_file: {tls_redis.cert_file}}}
  - name: tls-unknown-ca
    kind: redis
    url: rediss://127.0.0.1:{tls_redis.tls_port}
  - name: tls-unverified
    kind: redis
    url: rediss://127.0.0.1:{tls_redis.tls_port}
    tls: {{insecure_skip_verify: true}}
host: {{enabled: false}}
"""
    with ExporterProcess(workdir, config=config) as exp:
        exp.wait_for(
            "TLS targets probed",
            lambda e: (
                up_is(1, "tls-verified")(e)
                and up_is(0, "tls-unknown-ca", "tls")(e)
                and up_is(1, "tls-unverified")(e)
            ),
            timeout=30,
        )


def _target(text: str) -> TargetConfig:
    return parse(text, "test.yml", env={}).targets[0]


@pytest.mark.slow
async def test_close_then_open_reconnects(redis_server: RedisServer) -> None:
    """The runtime may close a probe (an open breaker) and open it again later."""
    target = _target(
        f"targets: [{{name: cycle, kind: redis, url: 'redis://127.0.0.1:{redis_server.port}',"
        f" password: '{REDIS_DEFAULT_PASSWORD}', interval: 1s, timeout: 1s}}]"
    )
    assert isinstance(target, RedisTarget)
    probe = RedisProbe(target)
    with redis_server.client() as admin:

        def exporter_clients() -> int:
            return sum(1 for c in admin.client_list() if c.get("name") == "resilience-exporter")

        await probe.open()
        assert exporter_clients() == 0, "open() must not connect"
        assert await probe.probe()
        assert exporter_clients() == 1
        await probe.close()
        # The server drops a client when it reads the closed socket, a moment after close().
        await eventually(lambda: exporter_clients() == 0, "close() to drop the connections", 5)
        await probe.open()
        assert exporter_clients() == 0
        samples = await probe.probe()
        assert any(s.family.name == "resilience_redis_role" for s in samples)
        assert exporter_clients() == 1
        await probe.close()


def test_config_moves_url_password_out_and_rejects_bad_combinations() -> None:
    target = _target("targets: [{name: c, kind: redis, url: 'redis://user:Url-Secret-1@h:6380/2'}]")
    assert isinstance(target, RedisTarget)
    assert target.url is not None
    assert "Url-Secret-1" not in target.url
    assert "password" not in target.url
    assert "Url-Secret-1" not in target.describe()
    assert target.describe() == "redis user@h:6380/2"
    assert target.password is not None
    assert target.password.get_secret_value() == "Url-Secret-1"
    in_query = _target("targets: [{name: c, kind: redis, url: 'redis://h/0?password=Q-Secret-2'}]")
    assert isinstance(in_query, RedisTarget)
    assert in_query.url == "redis://h/0"
    assert in_query.resolve_password() == "Q-Secret-2"
    for bad, message in (
        ("{name: c, kind: redis, url: 'redis://:a1b2c@h', password: z}", "url holds a password"),
        (
            "{name: c, kind: redis, url: 'redis://h', tls: {insecure_skip_verify: true}}",
            "rediss://",
        ),
        (
            "{name: c, kind: redis, url: 'redis://h', sentinel: {hosts: ['h:1'], service: m}}",
            "either url or sentinel",
        ),
        ("{name: c, kind: redis}", "either url or sentinel"),
        ("{name: c, kind: redis, sentinel: {hosts: [nohost], service: m}}", "host:port"),
        ("{name: c, kind: redis, url: 'http://h'}", "redis://"),
        ("{name: c, kind: redis, url: 'redis://:a1b2c@h?password=a1b2cd'}", "two different"),
    ):
        with pytest.raises(ConfigError, match=message) as caught:
            _target(f"targets: [{bad}]")
        assert "a1b2c" not in str(caught.value)


def test_redis_url_adds_a_default_target() -> None:
    config = embedded_default(env={"REDIS_URL": "redis://:Env-Secret-88@cache:6379/0"})
    [target] = config.targets
    assert (target.name, target.kind) == ("redis", "redis")
    assert "Env-Secret-88" not in target.describe()
