"""Sharding: replica i of N probes only the targets it wins by rendezvous hashing."""

from __future__ import annotations

import hashlib
from collections import Counter
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest
from exporter_process import ExporterProcess, Scrape, run_exporter

from resilience_exporter.probing.sharding import Shard, ShardError, owner
from scripts.testservers.base import free_port, wait_until

SHARDS = 3
# owner("users-db", n) for n = 1, 2, 3, 5, 7: what the function gave when it was chosen.
PINNED_OWNERS = [0, 1, 2, 3, 3]
TARGET_NAMES = [f"db-{i:02d}" for i in range(24)]


def fleet_config(dead_port: int) -> str:
    """Postgres targets on a port nobody listens on: each is probed and reported as up 0,
    which is enough to see which replica probes it."""
    lines = ["defaults: {interval: 30s, timeout: 2s}", "targets:"]
    for name in TARGET_NAMES:
        lines += [
            f"  - name: {name}",
            "    kind: postgres",
            f"    dsn: postgresql://monitor@127.0.0.1:{dead_port}/postgres",
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_with_three_shards_every_target_is_probed_by_exactly_one(workdir: Path) -> None:
    config = fleet_config(free_port())
    probed: dict[int, set[str]] = {}
    with ExitStack() as stack:
        exporters = [
            stack.enter_context(
                ExporterProcess(
                    workdir,
                    config=config,
                    env={
                        "RESILIENCE_EXPORTER_SHARD_INDEX": str(index),
                        "RESILIENCE_EXPORTER_SHARD_COUNT": str(SHARDS),
                    },
                )
            )
            for index in range(SHARDS)
        ]
        for index, exp in enumerate(exporters):
            # /-/ready turns 200 once every target of this replica has been probed once.
            wait_until(partial(is_ready, exp), timeout=60, what=f"shard {index} to be ready")
            m = exp.scrape()
            probed[index] = postgres_targets(m)
            assert m.value("resilience_exporter_shard", index=str(index), count="3") == 1
            assert m.value("resilience_up", target="host", kind="host") == 1, "host on every shard"
            assert m.value("resilience_exporter_targets", kind="postgres") == len(probed[index])
            for target in probed[index]:
                assert m.value("resilience_up", target=target, kind="postgres") == 0

    every_probe = [name for names in probed.values() for name in names]
    assert Counter(every_probe) == Counter(TARGET_NAMES), "each target on exactly one shard"
    assert all(probed.values()), f"a shard was left without targets: {probed}"
    for index, names in probed.items():
        assert names == {n for n in TARGET_NAMES if owner(n, SHARDS) == index}


def is_ready(exp: ExporterProcess) -> bool:
    return exp.get("/-/ready")[0] == 200


def postgres_targets(m: Scrape) -> set[str]:
    return {dict(k)["target"] for k in m.series("resilience_up", kind="postgres")}


@pytest.mark.slow
def test_config_check_lists_only_the_shards_targets(workdir: Path) -> None:
    config_path = workdir / "fleet.yml"
    config_path.write_text(fleet_config(free_port()))
    listed: list[str] = []
    for index in range(SHARDS):
        result = run_exporter(
            [f"--config.file={config_path}", "--config.check", f"--shard.index={index}"],
            env={"RESILIENCE_EXPORTER_SHARD_COUNT": str(SHARDS)},
        )
        assert result.returncode == 0, result.stderr
        names = [line.split("\t")[0] for line in result.stdout.splitlines()]
        assert "host" in names
        listed += [n for n in names if n != "host"]
    assert sorted(listed) == sorted(TARGET_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard.index=3", "--shard.count=3"], "--shard.index must be between 0 and"),
        (["--shard.index=-1", "--shard.count=3"], "--shard.index must be between 0 and"),
        (["--shard.count=0"], "--shard.count must be at least 1"),
        (["--shard.index=one"], "are integers"),
    ],
)
def test_invalid_shard_flags_exit_2_with_a_reason(args: list[str], message: str) -> None:
    result = run_exporter([*args, "--config.check"])
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.slow
def test_invalid_shard_env_var_exits_2() -> None:
    result = run_exporter(["--config.check"], env={"RESILIENCE_EXPORTER_SHARD_COUNT": "-2"})
    assert result.returncode == 2
    assert "--shard.count must be at least 1" in result.stderr


def test_owner_is_the_highest_sha256_score_not_pythons_salted_hash() -> None:
    # Pinned: changing the function would silently move every target of every fleet.
    scores = [
        int.from_bytes(hashlib.sha256(f"{i}\0users-db".encode()).digest()[:8], "big")
        for i in range(7)
    ]
    assert owner("users-db", 7) == scores.index(max(scores))
    assert [owner("users-db", n) for n in (1, 2, 3, 5, 7)] == PINNED_OWNERS


@pytest.mark.parametrize("count", range(1, 10))
def test_adding_a_shard_moves_about_one_in_n_plus_one_and_only_to_the_new_shard(
    count: int,
) -> None:
    names = [f"target-{i}" for i in range(10_000)]
    before = {name: owner(name, count) for name in names}
    after = {name: owner(name, count + 1) for name in names}
    moved = [name for name in names if before[name] != after[name]]
    assert all(after[name] == count for name in moved), "a moved target goes to the new shard"
    share = len(moved) / len(names)
    expected = 1 / (count + 1)
    assert abs(share - expected) < 0.2 * expected, (share, expected)


def test_one_shard_owns_everything() -> None:
    shard = Shard()
    assert all(shard.owns(name) for name in TARGET_NAMES)


def test_assignment_spreads_a_large_fleet_evenly() -> None:
    counts = Counter(owner(f"target-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(900 <= n <= 1100 for n in counts.values()), counts


def test_each_name_is_owned_by_exactly_one_shard() -> None:
    shards = [Shard(index=i, count=5) for i in range(5)]
    for i in range(500):
        assert sum(s.owns(f"t{i}") for s in shards) == 1


@pytest.mark.parametrize(("index", "count"), [(0, 0), (2, 2), (-1, 3)])
def test_shard_rejects_impossible_positions(index: int, count: int) -> None:
    with pytest.raises(ShardError):
        Shard(index=index, count=count)
