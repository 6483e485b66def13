"""What the probes found, as the exposition reads it: the latest `Snapshot` of every target,
in a `SnapshotStore` with one writer (the probes' loop) and readers that take whole copies."""

from __future__ import annotations

from dataclasses import dataclass, field

from resilience_exporter.metrics.breaker_schema import BreakerState
from resilience_exporter.metrics.encoding import Lines
from resilience_exporter.reasons import Failure


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one round of a target found, its samples already written (`encoding.Lines`):
    bytes and strings, which the garbage collector need not follow, however many targets."""

    target: str
    kind: str
    description: str
    up: bool | None  # None until the first probe has finished
    failure: Failure | None
    finished_at: float | None
    lines: Lines
    breaker: BreakerState = "closed"
    # Where in its interval the target is probed (seconds): snapshots of targets probed at
    # nearby moments are kept next to each other in the exposition.
    phase: float = 0.0


@dataclass
class SnapshotStore:
    """The latest snapshot of every target. Replacing a dict entry is atomic for readers on
    the event loop; `generation` lets the exposition cache tell when anything changed."""

    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    generation: int = 0

    def put(self, snapshot: Snapshot) -> None:
        self.snapshots[snapshot.target] = snapshot
        self.generation += 1

    def drop(self, target: str) -> None:
        if self.snapshots.pop(target, None) is not None:
            self.generation += 1

    def latest(self) -> list[Snapshot]:
        return list(self.snapshots.values())
