"""Redis: the signals that come before an outage, each provoked on real servers (slow log and
latency, a master and its replica: persistence, lag, the link), read through the real exporter
and, for the alerts, fired and resolved in a real Prometheus running the shipped rules.
Sentinel and Cluster: test_redis_sentinel_and_cluster.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from conftest import REDIS_ACL_PASSWORD
from exporter_process import ExporterProcess, Scrape, probes_done, up_is
from redis_support import JOB, PASSWORD, config_of, redis_target, rules_with_short_for
from tests_support import wait_firing, wait_resolved

from resilience_exporter.probes.redis import commands
from resilience_exporter.probes.redis.commands import EXTRAS, RefusedCommands
from scripts.testservers.base import wait_until
from scripts.testservers.prometheus import PrometheusServer
from scripts.testservers.redis import RedisServer

BACKLOG = 16 * 1024  # the smallest repl-backlog-size Redis accepts
REPL_TIMEOUT = 5  # the replica's: how long a silent master keeps its link up
# The master pings its replica every second (14 bytes in the replication stream) and the
# replica acknowledges every second: a replica in sync trails by the pings in between.
IN_FLIGHT_BYTES = 4 * 14
# Let a test CONFIG SET dir (a protected setting since Redis 7) and record latency spikes.
DEBUGGABLE = ("enable-protected-configs local", "latency-monitor-threshold 1")
# A Lua loop the server spends tens of milliseconds in: a "command" latency spike.
BUSY_SCRIPT = "local i = 0 while i < 3000000 do i = i + 1 end return i"


# --- slow log, latency monitor, activity ------------------------------------------------------
@pytest.fixture
def debuggable() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD, extra_config=DEBUGGABLE) as server:
        yield server


@pytest.mark.slow
def test_slowlog_latency_activity_and_errors_without_arguments(
    debuggable: RedisServer, workdir: Path
) -> None:
    secret_key = "resilience:never-exported-key-7f1c"
    with debuggable.client() as admin:
        admin.config_set("slowlog-log-slower-than", 0)  # every command is slow
        admin.set(secret_key, "never-exported-value")
        admin.eval(BUSY_SCRIPT, 0)
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            admin.lpush(secret_key, "x")
    config = config_of(redis_target("slow", debuggable))
    with ExporterProcess(workdir, config=config, env={"REDIS_PW": PASSWORD}) as exp:
        m = exp.wait_for(
            "slow log and latency series",
            lambda e: (
                e.has("resilience_redis_slowlog_last_duration_seconds", target="slow")
                and e.has("resilience_redis_latency_spike_duration_seconds", target="slow")
            ),
            timeout=30,
        )
        t = {"target": "slow"}
        assert (m.value("resilience_redis_slowlog_length", **t) or 0) >= 2
        newest = m.value("resilience_redis_slowlog_last_duration_seconds", **t)
        assert newest is not None
        assert 0 <= newest < 1
        spike = m.value("resilience_redis_latency_spike_duration_seconds", **t, event="command")
        assert spike is not None
        assert spike >= 0.001, "the Lua loop took at least a millisecond"
        when = m.value("resilience_redis_latency_spike_timestamp_seconds", **t, event="command")
        assert when is not None
        assert abs(when - time.time()) < 120
        assert m.label_values("resilience_redis_latency_spike_duration_seconds", "event") <= {
            "command", "fast-command", "fork", "expire-cycle", "eviction-cycle",
            "eviction-del", "aof-write", "aof-fsync-always", "aof-write-pending-fsync",
            "aof-write-active-child", "aof-write-alone", "aof-fstat", "aof-rename",
            "aof-rewrite-diff-write", "rdb-unlink-temp-file", "active-defrag-cycle",
            "module-acquire-GIL", "while-blocked-cron", "commands",
        }  # fmt: skip
        assert (m.value("resilience_redis_commands_processed_total", **t) or 0) >= 3
        assert m.types["resilience_redis_commands_processed"] == "counter"
        assert m.has("resilience_redis_instantaneous_ops_per_second", **t)
        assert (m.value("resilience_redis_memory_fragmentation_ratio", **t) or 0) > 0
        assert (m.value("resilience_redis_error_replies_total", **t) or 0) >= 1
        assert (m.value("resilience_redis_cpu_seconds_total", **t, mode="user") or 0) > 0
        assert m.has("resilience_redis_cpu_seconds_total", **t, mode="system")
        # The slow log holds the key and its value: neither is read out into a series.
        assert "never-exported" not in m.text
        assert "resilience:" not in m.text


@pytest.mark.slow
def test_a_refused_command_leaves_its_series_out_and_the_target_up(
    debuggable: RedisServer, workdir: Path
) -> None:
    """An ACL user without the rights to SLOWLOG and LATENCY (the documented ACL before
    the exporter read them): those two are refused. The target stays up with everything
    else, each refusal is logged once and the server's ACL LOG is not flooded: the command
    is not sent again at every probe."""
    with debuggable.client() as admin:
        admin.execute_command(
            "ACL", "SETUSER", "oldrights", "reset", "on", f">{REDIS_ACL_PASSWORD}",
            "+ping", "+info", "+client|setname", "+hello",
        )  # fmt: skip
        admin.eval(BUSY_SCRIPT, 0)
    target = f"""
  - name: limited
    kind: redis
    url: redis://oldrights@127.0.0.1:{debuggable.port}/0
    password: ${{REDIS_PW}}"""
    env = {"REDIS_PW": REDIS_ACL_PASSWORD}
    with ExporterProcess(workdir, config=config_of(target), env=env) as exp:
        m = exp.wait_for("five probes", probes_done("limited", 5), timeout=30)
        assert m.value("resilience_up", target="limited") == 1
        assert m.has("resilience_redis_rdb_last_save_success", target="limited")
        for left_out in (
            "resilience_redis_slowlog_length",
            "resilience_redis_slowlog_last_duration_seconds",
            "resilience_redis_latency_spike_duration_seconds",
        ):
            assert not m.has(left_out, target="limited"), left_out
        logs = exp.logs()
        refusals = [line for line in logs.splitlines() if "refused a command" in line]
        assert sorted(re.findall(r"acl=\S+", "\n".join(refusals))) == [
            "acl=+latency|latest", "acl=+slowlog|get", "acl=+slowlog|len",
        ], logs  # fmt: skip
        assert REDIS_ACL_PASSWORD not in logs
    with debuggable.client() as admin:
        counts = {entry["object"]: entry["count"] for entry in admin.acl_log()}
    assert counts == {"slowlog|len": 1, "slowlog|get": 1, "latency|latest": 1}, counts


def test_a_refused_command_is_asked_again_after_the_recheck_time() -> None:
    refused = RefusedCommands("t")
    slowlog = EXTRAS[0]
    assert refused.allowed(slowlog, now=0.0)
    refused.refused(slowlog, redis.exceptions.NoPermissionError("NOPERM"), now=10.0)
    assert not refused.allowed(slowlog, now=10.0 + commands.REFUSED_RECHECK_SECONDS - 1)
    assert all(refused.allowed(other, now=11.0) for other in EXTRAS[1:])
    assert refused.allowed(slowlog, now=10.0 + commands.REFUSED_RECHECK_SECONDS)
    refused.answered(slowlog)
    assert refused.allowed(slowlog, now=11.0)


# --- master and replica: persistence, lag, link ------------------------------------------------
@dataclass
class Replicated:
    master: RedisServer
    replica: RedisServer
    exporter: ExporterProcess
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    workdir = tmp_path_factory.mktemp("redis-replicated")
    rules = rules_with_short_for(
        workdir,
        "ResilienceRedisRdbSaveFailing",
        "ResilienceRedisAofFailing",
        "ResilienceRedisReplicaLagging",
        "ResilienceRedisReplicationLinkDown",
    )
    with (
        RedisServer(
            password=PASSWORD,
            # Pings every second: a replica that hears nothing for its repl-timeout drops the
            # link, which with the default 10 s would happen whenever no test writes.
            extra_config=[
                *DEBUGGABLE,
                f"repl-backlog-size {BACKLOG}",
                "repl-ping-replica-period 1",
            ],
        ) as master,
        RedisServer(
            password=PASSWORD, replica_of=master, extra_config=[f"repl-timeout {REPL_TIMEOUT}"]
        ) as replica,
        ExporterProcess(
            workdir,
            config=config_of(redis_target("primary", master), redis_target("secondary", replica)),
            env={"REDIS_PW": PASSWORD},
        ) as exporter,
        PrometheusServer(scrape={JOB: [f"127.0.0.1:{exporter.port}"]}, rule_files=rules) as prom,
    ):
        exporter.wait_for(
            "the replica in sync",
            lambda e: (
                e.value("resilience_redis_replication_link_up", target="secondary") == 1
                and e.has("resilience_redis_replica_state", target="primary", state="online")
            ),
            timeout=60,
        )
        yield Replicated(master, replica, exporter, prom)


def replica_address(stack: Replicated) -> str:
    return f"127.0.0.1:{stack.replica.port}"


def caught_up(e: Scrape, primary: dict[str, str]) -> bool:
    lag = e.value("resilience_redis_replica_offset_lag_bytes", **primary)
    return lag is not None and lag <= IN_FLIGHT_BYTES


@pytest.mark.slow
def test_replication_series_on_both_ends(replicated: Replicated) -> None:
    address = replica_address(replicated)
    primary = {"target": "primary", "replica": address}
    # Just after the initial sync the replica's first acknowledgements trail a few pings.
    m = replicated.exporter.wait_for(
        "the replica caught up", lambda e: caught_up(e, primary), timeout=30
    )
    assert m.value("resilience_redis_replica_state", **primary, state="online") == 1
    assert (m.value("resilience_redis_replica_ack_age_seconds", **primary) or 0) <= 2
    assert m.value("resilience_redis_replication_backlog_bytes", target="primary") == BACKLOG
    assert not m.has("resilience_redis_replication_link_down_seconds", target="primary")
    secondary = {"target": "secondary"}
    assert m.value("resilience_redis_replication_link_down_seconds", **secondary) == 0
    assert m.value("resilience_redis_replication_sync_in_progress", **secondary) == 0
    assert (m.value("resilience_redis_replication_last_io_seconds", **secondary) or 0) <= 2
    assert not m.has("resilience_redis_replica_state", target="secondary")


def bgsave_done(client: redis.Redis) -> bool:
    return bool(client.info("persistence")["rdb_bgsave_in_progress"] == 0)


@pytest.mark.slow
def test_a_failed_bgsave_and_aof_rewrite_fire_and_a_good_one_resolves(
    replicated: Replicated,
) -> None:
    """`CONFIG SET dir /proc` (where even root cannot create a file) and BGSAVE: the save
    fails; BGREWRITEAOF likewise. Back to a writable dir, both succeed again."""
    exporter, prometheus = replicated.exporter, replicated.prometheus
    t = {"target": "primary"}
    m = exporter.scrape()
    assert m.value("resilience_redis_rdb_last_save_success", **t) == 1
    assert m.value("resilience_redis_aof_last_rewrite_success", **t) == 1
    assert m.value("resilience_redis_aof_last_write_success", **t) == 1
    assert m.value("resilience_redis_aof_enabled", **t) == 0
    with replicated.master.client() as admin:
        writable = admin.config_get("dir")["dir"]
        admin.config_set("dir", "/proc")
        try:
            for n in range(5):
                admin.set(f"k{n}", "v")
            admin.bgsave()
            wait_until(lambda: bgsave_done(admin), timeout=20, what="BGSAVE to end")
            with pytest.raises(redis.exceptions.ResponseError, match="AOF background rewriting"):
                admin.bgrewriteaof()
            m = exporter.wait_for(
                "the failed save and rewrite",
                lambda e: (
                    e.value("resilience_redis_rdb_last_save_success", **t) == 0
                    and e.value("resilience_redis_aof_last_rewrite_success", **t) == 0
                ),
                timeout=20,
            )
            assert (m.value("resilience_redis_rdb_changes_since_last_save", **t) or 0) >= 5
            age = m.value("resilience_redis_rdb_last_save_age_seconds", **t) or 0
            exporter.wait_for(
                "the age of the last good save to grow",
                lambda e: (
                    (e.value("resilience_redis_rdb_last_save_age_seconds", **t) or 0) >= age + 2
                ),
                timeout=20,
            )
            wait_firing(prometheus, "ResilienceRedisRdbSaveFailing", timeout=60, **t)
            wait_firing(prometheus, "ResilienceRedisAofFailing", timeout=60, **t)
        finally:
            admin.config_set("dir", writable)
        admin.bgsave()
        wait_until(lambda: bgsave_done(admin), timeout=20, what="BGSAVE to end")
        admin.bgrewriteaof()
    m = exporter.wait_for(
        "a good save and rewrite",
        lambda e: (
            e.value("resilience_redis_rdb_last_save_success", **t) == 1
            and e.value("resilience_redis_aof_last_rewrite_success", **t) == 1
        ),
        timeout=20,
    )
    assert m.value("resilience_redis_rdb_changes_since_last_save", **t) == 0
    assert (m.value("resilience_redis_latest_fork_duration_seconds", **t) or 0) > 0
    wait_resolved(prometheus, "ResilienceRedisRdbSaveFailing", timeout=60, **t)
    wait_resolved(prometheus, "ResilienceRedisAofFailing", timeout=60, **t)


@pytest.mark.slow
def test_a_frozen_replica_falls_behind_and_catches_up(replicated: Replicated) -> None:
    """SIGSTOP on the replica and writes on the master: the master sees the replica's
    acknowledged offset stay behind by what was written (more than the backlog here)."""
    exporter, prometheus = replicated.exporter, replicated.prometheus
    lag = {"target": "primary", "replica": replica_address(replicated)}
    replicated.replica.freeze()
    try:
        with replicated.master.client() as admin:
            for n in range(32):
                admin.set(f"bulk{n}", "x" * 1024)
        m = exporter.wait_for(
            "the replica's offset lag to pass the backlog",
            lambda e: (e.value("resilience_redis_replica_offset_lag_bytes", **lag) or 0) > BACKLOG,
            timeout=20,
        )
        assert m.value("resilience_redis_replica_state", **lag, state="online") == 1
        exporter.wait_for(
            "the replica's last acknowledgement to age",
            lambda e: (e.value("resilience_redis_replica_ack_age_seconds", **lag) or 0) >= 2,
            timeout=20,
        )
        wait_firing(prometheus, "ResilienceRedisReplicaLagging", timeout=60, **lag)
    finally:
        replicated.replica.thaw()
    exporter.wait_for(
        "the replica caught up",
        lambda e: caught_up(e, lag),
        timeout=30,
    )
    wait_resolved(prometheus, "ResilienceRedisReplicaLagging", timeout=60, **lag)


@pytest.mark.slow
def test_a_hung_master_ages_the_link_then_drops_it(replicated: Replicated) -> None:
    """SIGSTOP on the master: the replica hears nothing (last I/O grows), drops the link
    after its repl-timeout (5 s here, so that probes every second see the last I/O age) and
    counts the seconds it has been down."""
    exporter, prometheus = replicated.exporter, replicated.prometheus
    t = {"target": "secondary"}
    replicated.master.freeze()
    try:
        exporter.wait_for(
            "the replica's last I/O from the master to age",
            lambda e: (e.value("resilience_redis_replication_last_io_seconds", **t) or 0) >= 2,
            timeout=20,
        )
        m = exporter.wait_for(
            "the link down",
            lambda e: e.value("resilience_redis_replication_link_up", **t) == 0,
            timeout=20,
        )
        assert not m.has("resilience_redis_replication_last_io_seconds", **t)
        down = m.value("resilience_redis_replication_link_down_seconds", **t) or 0
        exporter.wait_for(
            "the link-down seconds to grow",
            lambda e: (
                (e.value("resilience_redis_replication_link_down_seconds", **t) or 0) >= down + 2
            ),
            timeout=20,
        )
        wait_firing(prometheus, "ResilienceRedisReplicationLinkDown", timeout=60, **t)
        assert up_is(0, "primary", "timeout")(exporter.scrape())
    finally:
        replicated.master.thaw()
    exporter.wait_for(
        "the link back up",
        lambda e: (
            e.value("resilience_redis_replication_link_up", **t) == 1
            and e.value("resilience_redis_replication_link_down_seconds", **t) == 0
        ),
        timeout=60,
    )
    wait_resolved(prometheus, "ResilienceRedisReplicationLinkDown", timeout=60, **t)


@pytest.mark.slow
def test_a_replica_that_never_reached_its_master_counts_from_its_start(workdir: Path) -> None:
    """Redis says master_link_down_since_seconds:-1 until the link has been up once."""
    with RedisServer() as nowhere:
        port = nowhere.port
    with RedisServer(extra_config=[f"replicaof 127.0.0.1 {port}"]) as orphan:
        target = f"""
  - name: orphan
    kind: redis
    url: redis://127.0.0.1:{orphan.port}/0"""
        with ExporterProcess(workdir, config=config_of(target)) as exp:
            m = exp.wait_for(
                "the orphan's link down for two seconds",
                lambda e: (
                    (
                        e.value("resilience_redis_replication_link_down_seconds", target="orphan")
                        or 0
                    )
                    >= 2
                ),
                timeout=30,
            )
            assert m.value("resilience_redis_replication_link_up", target="orphan") == 0
            with orphan.client() as client:
                info = client.info("replication")
            assert info["master_link_down_since_seconds"] == -1
