"""Turns the latest snapshots into metric families, client_python style, and serves them
as a cached exposition."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import utils as prometheus_utils
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

import resilience_exporter
from resilience_exporter.families import CATALOG, Family, HistogramValue, Sample, family
from resilience_exporter.runtime import Snapshot, SnapshotStore

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
    """The exporter's own families: build info, targets by kind, status, and every snapshot."""

    def __init__(
        self, snapshots: Callable[[], list[Snapshot]],
        status: Callable[[], Iterable[Sample]] = tuple,
    ) -> None:  # fmt: skip
        self._snapshots = snapshots
        self._status = status

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots()
        yield from head_families(snapshots)
        yield from families_from_samples(self._status())
        yield from families_from_samples(s for snap in snapshots for s in snap.samples)


def head_families(snapshots: Iterable[Snapshot]) -> Iterator[Metric]:
    build = Metric(BUILD_INFO.name, BUILD_INFO.help, "gauge")
    build.add_sample(
        BUILD_INFO.name,
        {"version": resilience_exporter.__version__, "python_version": platform.python_version()},
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


def build_registry(
    snapshots: Callable[[], list[Snapshot]], status: Callable[[], Iterable[Sample]] = tuple
) -> CollectorRegistry:
    """Everything /metrics shows, rendered from scratch at each collect (the reference that
    `Exposition` must match, byte for byte)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshots, status))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


# --- the cached exposition -----------------------------------------------------------------
Encoder = Callable[[CollectorRegistry], bytes]
_EOF = b"# EOF\n"


@dataclass(frozen=True, slots=True)
class _Block:
    """One family of one snapshot, as an encoder writes it: header lines, then sample lines."""

    position: int
    header: bytes
    lines: bytes


def _encode(encoder: Encoder, families: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(list(families)))
    return encoder(registry).removesuffix(_EOF)


def _catalog_position() -> dict[str, int]:
    position: dict[str, int] = {}
    for i, name in enumerate(CATALOG):
        position[name] = i
        position.setdefault(name.removesuffix("_total"), i)  # OpenMetrics' counter header
    return position


def _split_blocks(text: bytes, position: dict[str, int]) -> dict[str, _Block]:
    blocks: dict[str, _Block] = {}
    # Sample lines start with a metric name and escape newlines in label values: a line
    # starting with "# HELP " can only open a family.
    for chunk in (b"\n" + text).split(b"\n# HELP ")[1:]:
        body = b"# HELP " + chunk + (b"" if chunk.endswith(b"\n") else b"\n")
        name = chunk.split(b" ", 1)[0].decode()
        lines = body.split(b"\n")
        n_header = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
        header = b"\n".join(lines[:n_header]) + b"\n"
        blocks[name] = _Block(position[name], header, b"\n".join(lines[n_header:]))
    return blocks


class Exposition:
    """What /metrics serves, cheap to serve again and again.

    Rendering thousands of samples through client_python at every scrape costs tens of
    milliseconds with hundreds of targets. Instead each snapshot is rendered once per encoder
    when it is published (as per-family blocks), the blocks of all snapshots are joined once
    per change of `SnapshotStore.generation`, and only the small families that change on
    their own (status, process, platform, shard) are rendered at each scrape. The result is
    byte for byte what `build_registry` gives.
    """

    def __init__(
        self, store: SnapshotStore, status: Callable[[], Iterable[Sample]] = tuple
    ) -> None:
        self._store = store
        self._status = status
        self.fresh = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.fresh)
        PlatformCollector(registry=self.fresh)
        self._position = _catalog_position()
        self._catalog_size = len(CATALOG)
        # per encoder: target -> (the snapshot rendered, its blocks)
        self._blocks: dict[Encoder, dict[str, tuple[Snapshot, dict[str, _Block]]]] = {}
        # per encoder: (generation, head families, snapshot families)
        self._joined: dict[Encoder, tuple[int, bytes, bytes]] = {}

    def render(self, encoder: Encoder) -> bytes:
        generation = self._store.generation
        cached = self._joined.get(encoder)
        if cached is None or cached[0] != generation or self._catalog_size != len(CATALOG):
            cached = self._joined[encoder] = (generation, *self._join(encoder))
        _, head, snapshot_part = cached
        status = _encode(encoder, families_from_samples(self._status()))
        return b"".join((head, status, snapshot_part, encoder(self.fresh)))

    def _join(self, encoder: Encoder) -> tuple[bytes, bytes]:
        if self._catalog_size != len(CATALOG):  # a kind registered late
            self._position = _catalog_position()
            self._catalog_size = len(CATALOG)
        snapshots = self._store.latest()
        rendered = self._blocks.setdefault(encoder, {})
        for gone in rendered.keys() - {snap.target for snap in snapshots}:
            del rendered[gone]
        per_family: dict[str, list[_Block]] = {}
        for snap in snapshots:
            entry = rendered.get(snap.target)
            if entry is None or entry[0] is not snap:
                text = _encode(encoder, families_from_samples(snap.samples))
                entry = rendered[snap.target] = (snap, _split_blocks(text, self._position))
            for name, block in entry[1].items():
                per_family.setdefault(name, []).append(block)
        ordered = sorted(per_family.values(), key=lambda blocks: blocks[0].position)
        parts: list[bytes] = []
        for blocks in ordered:
            parts.append(blocks[0].header)
            parts.extend(block.lines for block in blocks)
        return _encode(encoder, head_families(snapshots)), b"".join(parts)
