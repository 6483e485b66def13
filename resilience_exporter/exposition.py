"""From samples to what /metrics and /probe serve.

Every family the exporter exports, the probes' and its own status alike, is a `Sample` of a
declared `Family`; `metric_families` turns samples into client_python families (sorted by
name, so the order never depends on which module was imported first), and `Exposition`
serves the latest snapshots plus the status as a cached exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import utils as prometheus_utils
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from resilience_exporter.families import CATALOG, Family, HistogramValue, Sample
from resilience_exporter.runtime import Snapshot, SnapshotStore

# client_python's own spelling of `le` values, so buckets read as they do everywhere else.
float_to_go_string = cast(Callable[[float], str], prometheus_utils.floatToGoString)

Encoder = Callable[[CollectorRegistry], bytes]
_EOF = b"# EOF\n"


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


def metric_families(samples: Iterable[Sample]) -> list[Metric]:
    """client_python families for the samples, sorted by family name; empty label values
    are left out, as Prometheus does."""
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
    return [metrics[name] for name in sorted(metrics)]


class FamiliesCollector(Collector):
    """Families already built, e.g. for one /probe answer."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def render_samples(encoder: Encoder, samples: Iterable[Sample]) -> bytes:
    """A whole exposition of the samples, in the encoder's format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(metric_families(samples)))
    return encoder(registry)


def _part(encoder: Encoder, samples: Iterable[Sample]) -> bytes:
    """The samples' families, to be joined with others (without OpenMetrics' `# EOF`)."""
    return render_samples(encoder, samples).removesuffix(_EOF)


def _family_name(header_name: str) -> str:
    """The declared name of a family from its `# HELP` line (OpenMetrics drops `_total`)."""
    return header_name if header_name in CATALOG else header_name + "_total"


@dataclass(frozen=True, slots=True)
class _Block:
    """One family of one snapshot, as an encoder writes it: header lines, then sample lines."""

    family: str
    header: bytes
    lines: bytes


def _split_blocks(text: bytes) -> list[_Block]:
    blocks: list[_Block] = []
    # Sample lines start with a metric name and escape newlines in label values: a line
    # starting with "# HELP " can only open a family.
    for chunk in (b"\n" + text).split(b"\n# HELP ")[1:]:
        body = b"# HELP " + chunk + (b"" if chunk.endswith(b"\n") else b"\n")
        lines = body.split(b"\n")
        n_header = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
        header = b"\n".join(lines[:n_header]) + b"\n"
        name = _family_name(chunk.split(b" ", 1)[0].decode())
        blocks.append(_Block(name, header, b"\n".join(lines[n_header:])))
    return blocks


class Exposition:
    """What /metrics serves, cheap to serve again and again.

    Rendering thousands of samples through client_python at every scrape costs tens of
    milliseconds with hundreds of targets. Instead each snapshot is rendered once per encoder
    when it is published (as per-family blocks), the blocks of all snapshots are joined once
    per change of `SnapshotStore.generation`, and only the small families that change on
    their own (the exporter's status, client_python's process and platform families) are
    rendered at each scrape.
    """

    def __init__(
        self, store: SnapshotStore, status: Callable[[], Iterable[Sample]] = tuple
    ) -> None:
        self._store = store
        self._status = status
        self.fresh = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.fresh)
        PlatformCollector(registry=self.fresh)
        # per encoder: target -> (the snapshot rendered, its blocks)
        self._blocks: dict[Encoder, dict[str, tuple[Snapshot, list[_Block]]]] = {}
        # per encoder: (generation, snapshot families)
        self._joined: dict[Encoder, tuple[int, bytes]] = {}

    def render(self, encoder: Encoder) -> bytes:
        generation = self._store.generation
        cached = self._joined.get(encoder)
        if cached is None or cached[0] != generation:
            cached = self._joined[encoder] = (generation, self._join(encoder))
        status = _part(encoder, self._status())
        return b"".join((status, cached[1], encoder(self.fresh)))

    def _join(self, encoder: Encoder) -> bytes:
        snapshots = self._store.latest()
        rendered = self._blocks.setdefault(encoder, {})
        for gone in rendered.keys() - {snap.target for snap in snapshots}:
            del rendered[gone]
        per_family: dict[str, list[_Block]] = {}
        for snap in snapshots:
            entry = rendered.get(snap.target)
            if entry is None or entry[0] is not snap:
                blocks = _split_blocks(_part(encoder, snap.samples))
                entry = rendered[snap.target] = (snap, blocks)
            for block in entry[1]:
                per_family.setdefault(block.family, []).append(block)
        parts: list[bytes] = []
        for name in sorted(per_family):
            blocks = per_family[name]
            parts.append(blocks[0].header)
            parts.extend(block.lines for block in blocks)
        return b"".join(parts)
