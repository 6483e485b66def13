"""Turns the latest snapshots into metric families at scrape time, client_python style."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import utils as prometheus_utils
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

import exporter
from exporter.families import CATALOG, Family, HistogramValue, Sample, family
from exporter.runtime import Snapshot

# client_python's own spelling of `le` values, so buckets read as they do everywhere else.
float_to_go_string = cast(Callable[[float], str], prometheus_utils.floatToGoString)

BUILD_INFO = family(
    "resilience_exporter_build_info",
    "Always 1; labels tell the exporter's version and the Python it runs on.",
    "gauge", ("version", "python_version"), group="exporter",
)  # fmt: skip
TARGETS = family(
    "resilience_exporter_targets",
    "Targets configured, by kind.",
    "gauge", ("kind",), group="exporter",
)  # fmt: skip


def _add(
    metric: Metric, fam: Family, labels: dict[str, str], value: float | HistogramValue
) -> None:
    if isinstance(value, HistogramValue):
        base = fam.name
        for bound, count in zip(value.bounds, value.cumulative_counts, strict=False):
            metric.add_sample(f"{base}_bucket", {**labels, "le": float_to_go_string(bound)}, count)
        metric.add_sample(f"{base}_bucket", {**labels, "le": "+Inf"}, value.count)
        metric.add_sample(f"{base}_count", labels, value.count)
        metric.add_sample(f"{base}_sum", labels, value.sum)
    else:
        metric.add_sample(fam.name, labels, value)


def families_from_samples(samples: Iterable[Sample]) -> list[Metric]:
    metrics: dict[str, Metric] = {}
    for s in samples:
        fam = s.family
        metric = metrics.get(fam.name)
        if metric is None:
            # client_python wants a counter family's name without its _total suffix.
            base = fam.name.removesuffix("_total") if fam.type == "counter" else fam.name
            metric = metrics[fam.name] = Metric(base, fam.help, fam.type)
        labels = {k: v for k, v in s.labels if v != ""}
        _add(metric, fam, labels, s.value)
    position = {name: i for i, name in enumerate(CATALOG)}
    return sorted(metrics.values(), key=lambda m: position[_catalog_name(m)])


def _catalog_name(metric: Metric) -> str:
    return metric.name + "_total" if metric.type == "counter" else metric.name


class FamiliesCollector(Collector):
    """Families already built, e.g. for one /probe answer."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class SnapshotCollector(Collector):
    def __init__(
        self, snapshots: Callable[[], list[Snapshot]],
        status: Callable[[], Iterable[Sample]] = tuple,
    ) -> None:  # fmt: skip
        self._snapshots = snapshots
        self._status = status

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots()
        build = Metric(BUILD_INFO.name, BUILD_INFO.help, "gauge")
        build.add_sample(
            BUILD_INFO.name,
            {"version": exporter.__version__, "python_version": platform.python_version()},
            1.0,
        )
        yield build
        kinds: dict[str, int] = {}
        for snap in snapshots:
            kinds[snap.kind] = kinds.get(snap.kind, 0) + 1
        targets = Metric(TARGETS.name, TARGETS.help, "gauge")
        for kind, count in sorted(kinds.items()):
            targets.add_sample(TARGETS.name, {"kind": kind}, count)
        yield targets
        yield from families_from_samples(self._status())
        yield from families_from_samples(s for snap in snapshots for s in snap.samples)


def build_registry(
    snapshots: Callable[[], list[Snapshot]], status: Callable[[], Iterable[Sample]] = tuple
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshots, status))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
