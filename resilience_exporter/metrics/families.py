"""Metric family descriptors and the immutable samples probes publish.

Probe modules declare their families at import time, next to the queries that fill them.
Every declared family lands in `CATALOG`, from which `docs/metrics.md` is generated and
against which alert rules and dashboards are checked.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

FamilyType = Literal["gauge", "counter", "histogram", "summary"]
# The exporter's own namespace, and the process families every Prometheus client exports.
NAMESPACES = ("resilience_", "process_", "python_")

# Latency buckets from 0.5 ms to 10 s: probes on loopback take around a millisecond,
# a struggling target several seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family: its full exposition name (counters end in `_total`), help and labels."""

    name: str
    help: str
    type: FamilyType
    labels: tuple[str, ...]
    group: str
    # The labels as a set, to check samples against cheaply (samples are made by the million).
    label_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_set", frozenset(self.labels))
        if not self.name.startswith(NAMESPACES):
            raise ValueError(f"{self.name}: every family lives in the resilience_ namespace")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counter names end in _total")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError(f"{self.name}: only counters end in _total")


CATALOG: dict[str, Family] = {}


def family(name: str, help: str, type: FamilyType, labels: Sequence[str], *, group: str) -> Family:
    """Declare a family once; declaring the same name twice differently is a programming error."""
    declared = Family(name, help, type, tuple(labels), group)
    existing = CATALOG.setdefault(name, declared)
    if existing != declared:
        raise ValueError(f"family {name} declared twice with different shapes")
    return existing


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """Cumulative bucket counts, as Prometheus wants them (each bucket includes the ones below)."""

    bounds: tuple[float, ...]
    cumulative_counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative_counts[-1] if self.cumulative_counts else 0


class HistogramAccumulator:
    """Owned by one probe runner; `value()` hands out an immutable copy for snapshots."""

    __slots__ = ("_bounds", "_counts", "_sum", "_value")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)  # last slot is +Inf
        self._sum = 0.0
        self._value: HistogramValue | None = None

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds
        self._value = None

    def value(self) -> HistogramValue:
        if self._value is None:
            cumulative: list[int] = []
            running = 0
            for count in self._counts:
                running += count
                cumulative.append(running)
            self._value = HistogramValue(self._bounds, tuple(cumulative), self._sum)
        return self._value


@dataclass(frozen=True, slots=True)
class SummaryValue:
    """How many observations and their sum: a mean over any range, at two series' cost."""

    count: int
    sum: float


class SummaryAccumulator:
    __slots__ = ("_count", "_sum")

    def __init__(self) -> None:
        self._count = 0
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._count += 1
        self._sum += seconds

    def value(self) -> SummaryValue:
        return SummaryValue(self._count, self._sum)


SampleValue = float | HistogramValue | SummaryValue


@dataclass(frozen=True, slots=True)
class Sample:
    family: Family
    labels: tuple[tuple[str, str], ...]
    value: SampleValue


def sample(fam: Family, value: SampleValue, **labels: str) -> Sample:
    if labels.keys() != fam.label_set:
        raise ValueError(f"{fam.name}: labels {sorted(labels)} != declared {sorted(fam.labels)}")
    return Sample(fam, tuple(labels.items()), value)


def with_constant_labels(samples: Iterable[Sample], constant: Mapping[str, str]) -> list[Sample]:
    """Add a target's configured constant labels to every sample it produced."""
    if not constant:
        return list(samples)
    extra = tuple(constant.items())
    return [Sample(s.family, s.labels + extra, s.value) for s in samples]
