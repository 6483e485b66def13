"""Spreading a fleet of targets over N exporter replicas, by rendezvous (highest random
weight) hashing: every shard scores every target, SHA-256 of the shard's index and the
target's name, and the highest score owns the target. The scores are the same in every process
and on every machine (unlike Python's salted `hash()`), so the replicas agree on who owns what
without talking to each other; going from N to N+1 shards moves only the targets the new shard
now wins, about 1/(N+1) of them. The host probe is not sharded: every replica reports the host
(the pod) it runs on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from resilience_exporter.configuration.loader import Config
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.families import Sample, family, sample

SHARD = family(
    "resilience_exporter_shard",
    "Always 1; labels tell which shard of the targets this replica probes (index of count).",
    "gauge",
    ("index", "count"),
    group="exporter",
)


class ShardError(ValueError):
    """Invalid --shard.index / --shard.count."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"--shard.count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"--shard.index must be between 0 and --shard.count - 1 "
                f"({self.count - 1}), got {self.index}"
            )

    @classmethod
    def parse(cls, *, index: str, count: str) -> Shard:
        try:
            return cls(index=int(index), count=int(count))
        except ValueError as exc:
            if isinstance(exc, ShardError):
                raise
            raise ShardError(
                f"--shard.index and --shard.count are integers, got {index!r} and {count!r}"
            ) from exc

    def owns(self, target_name: str) -> bool:
        return owner(target_name, self.count) == self.index

    def samples(self) -> list[Sample]:
        return [sample(SHARD, 1.0, index=str(self.index), count=str(self.count))]


def score(target_name: str, shard_index: int) -> int:
    """The weight of `target_name` on shard `shard_index`: the highest weight wins it."""
    digest = hashlib.sha256(f"{shard_index}\0{target_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(target_name: str, count: int) -> int:
    """The shard that probes `target_name` among `count` shards."""
    return max(range(count), key=lambda index: score(target_name, index))


def assigned_targets(config: Config, shard: Shard) -> Iterator[TargetConfig]:
    """The host (on every shard) and the configured targets this shard owns."""
    if config.host is not None:
        yield config.host
    yield from (t for t in config.targets if shard.owns(t.name))
