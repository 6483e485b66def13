"""From samples to what /metrics and /probe serve.

Every family the exporter exports, the probes' and its own status alike, is a `Sample` of a
declared `Family`; `metric_families` turns samples into client_python families (sorted by
name, so the order never depends on which module was imported first).

`Exposition` serves /metrics. A scrape never renders or compresses the fleet: a builder
renders each changed snapshot once, joins the families of all targets and compresses the
result, in a worker thread, at most once per `min_interval` (longer when a build takes long),
and only for the formats scraped lately. A scrape appends the few families that change on
their own (the exporter's status, client_python's process families) to the last build; for
gzip, the build's deflate stream is kept open (flushed to a byte boundary) so that the
scrape only compresses its own small part and closes the stream, and the CRC continues from
the build's. Caches are bounded by the number of targets times the two formats.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import cast

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import utils as prometheus_utils
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from resilience_exporter.families import (
    CATALOG,
    Family,
    HistogramValue,
    Sample,
    SampleValue,
    SummaryValue,
)
from resilience_exporter.runtime import Snapshot, SnapshotStore

log = logging.getLogger(__name__)

# client_python's own spelling of `le` values, so buckets read as they do everywhere else.
float_to_go_string = cast(Callable[[float], str], prometheus_utils.floatToGoString)

Encoder = Callable[[CollectorRegistry], bytes]
_EOF = b"# EOF\n"
# Fast compression: at a few MB per build it is several times cheaper than zlib's default
# level for a body still about 15 times smaller than the text.
GZIP_LEVEL = 1
# The gzip header for a deflate stream without a file name or time stamp (RFC 1952).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# A format nobody scraped for this long is no longer built in the background.
_WANTED_SECONDS = 300.0


class Format(Enum):
    TEXT = "text"
    OPENMETRICS = "openmetrics"

    @property
    def content_type(self) -> str:
        if self is Format.OPENMETRICS:
            return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        return CONTENT_TYPE_PLAIN_0_0_4

    @property
    def encoder(self) -> Encoder:
        if self is Format.OPENMETRICS:
            return cast(Encoder, openmetrics.generate_latest)
        return cast(Encoder, generate_latest)


def _params(entry: str) -> tuple[str, dict[str, str]]:
    media_type, *params = (part.strip() for part in entry.split(";"))
    pairs = (param.partition("=") for param in params)
    return media_type.lower(), {key.strip().lower(): value.strip() for key, _, value in pairs}


def _q(params: dict[str, str]) -> float:
    try:
        return float(params.get("q", "1"))
    except ValueError:
        return 0.0


def _at_least_1_0_0(version: str) -> bool:
    try:
        return tuple(int(part) for part in version.split(".")) >= (1, 0, 0)
    except ValueError:
        return False


def negotiate(accept: str | None) -> Format:
    """The format the client prefers (Prometheus: OpenMetrics); the text format 0.0.4 when
    it says nothing we serve. OpenMetrics before 1.0.0 is not served."""
    openmetrics_q = text_q = 0.0
    for entry in (accept or "").split(","):
        media_type, params = _params(entry)
        if media_type == "application/openmetrics-text":
            version = params.get("version")
            if version is None or _at_least_1_0_0(version):
                openmetrics_q = max(openmetrics_q, _q(params))
        elif media_type in ("text/plain", "text/*", "*/*"):
            text_q = max(text_q, _q(params))
    return Format.OPENMETRICS if openmetrics_q > 0 and openmetrics_q >= text_q else Format.TEXT


def accepts_gzip(accept_encoding: str | None) -> bool:
    for entry in (accept_encoding or "").split(","):
        coding, params = _params(entry)
        if coding in ("gzip", "*") and _q(params) > 0:
            return True
    return False


def _add(metric: Metric, fam: Family, labels: dict[str, str], value: SampleValue) -> None:
    if isinstance(value, SummaryValue):
        metric.add_sample(f"{fam.name}_count", labels, value.count)
        metric.add_sample(f"{fam.name}_sum", labels, value.sum)
    elif isinstance(value, HistogramValue):
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
    for chunk in (b"\n" + text.removesuffix(_EOF)).split(b"\n# HELP ")[1:]:
        body = b"# HELP " + chunk + (b"" if chunk.endswith(b"\n") else b"\n")
        lines = body.split(b"\n")
        n_header = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
        header = b"\n".join(lines[:n_header]) + b"\n"
        name = _family_name(chunk.split(b" ", 1)[0].decode())
        blocks.append(_Block(name, header, b"\n".join(lines[n_header:])))
    return blocks


@dataclass(frozen=True, slots=True)
class Build:
    """The fleet's families in one format: the text, and the same as a raw deflate stream
    flushed to a byte boundary but not finished, with the text's CRC-32 and length."""

    generation: int
    plain: bytes
    deflated: bytes
    crc: int
    built_at: float


class _FormatBuilder:
    """Renders snapshots of one format and joins them; used by one build at a time."""

    def __init__(self, fmt: Format) -> None:
        self.format = fmt
        # target -> (the snapshot rendered, its blocks)
        self._blocks: dict[str, tuple[Snapshot, list[_Block]]] = {}

    @property
    def cached_targets(self) -> int:
        return len(self._blocks)

    def build(self, snapshots: Sequence[Snapshot], generation: int) -> Build:
        encoder = self.format.encoder
        rendered = self._blocks
        for gone in rendered.keys() - {snap.target for snap in snapshots}:
            del rendered[gone]
        per_family: dict[str, list[_Block]] = {}
        for snap in snapshots:
            entry = rendered.get(snap.target)
            if entry is None or entry[0] is not snap:
                blocks = _split_blocks(render_samples(encoder, snap.samples))
                entry = rendered[snap.target] = (snap, blocks)
            for block in entry[1]:
                per_family.setdefault(block.family, []).append(block)
        parts: list[bytes] = []
        for name in sorted(per_family):
            blocks = per_family[name]
            parts.append(blocks[0].header)
            parts.extend(block.lines for block in blocks)
        plain = b"".join(parts)
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return Build(generation, plain, deflated, zlib.crc32(plain), time.monotonic())


@dataclass
class _FormatState:
    builder: _FormatBuilder
    latest: Build | None = None
    requested_at: float = 0.0
    building: asyncio.Task[Build] | None = field(default=None, repr=False)


class Exposition:
    """What /metrics serves (see the module's docstring)."""

    def __init__(
        self,
        store: SnapshotStore,
        status: Callable[[], Iterable[Sample]] = tuple,
        *,
        min_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._status = status
        self.min_interval = min_interval
        self.fresh = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.fresh)
        PlatformCollector(registry=self.fresh)
        self._formats = {fmt: _FormatState(_FormatBuilder(fmt)) for fmt in Format}
        self._background: asyncio.Task[None] | None = None
        self.last_build_seconds = 0.0
        self.builds = 0

    # --- serving ---------------------------------------------------------------------------
    async def body(self, fmt: Format, *, gzip: bool) -> bytes:
        state = self._formats[fmt]
        state.requested_at = time.monotonic()
        build = state.latest
        if build is None:  # the first scrape of this format waits for its first build
            build = await self._build(fmt)
        self._ensure_background()
        fresh = self._fresh(fmt)
        if not gzip:
            return build.plain + fresh
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        tail = compressor.compress(fresh) + compressor.flush(zlib.Z_FINISH)
        size = (len(build.plain) + len(fresh)) & 0xFFFFFFFF
        trailer = struct.pack("<II", zlib.crc32(fresh, build.crc), size)
        return b"".join((_GZIP_HEADER, build.deflated, tail, trailer))

    def _fresh(self, fmt: Format) -> bytes:
        """The families that change on their own, rendered now (with OpenMetrics' `# EOF`)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FamiliesCollector(metric_families(self._status())))
        status = fmt.encoder(registry).removesuffix(_EOF)
        return status + fmt.encoder(self.fresh)

    # --- building --------------------------------------------------------------------------
    async def _build(self, fmt: Format) -> Build:
        """One build of the format, in a worker thread; concurrent callers share it."""
        state = self._formats[fmt]
        if state.building is None or state.building.done():
            snapshots = self._store.latest()
            generation = self._store.generation
            self.builds += 1
            state.building = asyncio.ensure_future(
                asyncio.to_thread(state.builder.build, snapshots, generation)
            )
        build = await asyncio.shield(state.building)
        if state.latest is None or build.generation >= state.latest.generation:
            state.latest = build
        return build

    def _ensure_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._rebuild_forever(), name="exposition")

    async def _rebuild_forever(self) -> None:
        """Keeps the formats scraped lately up to date, one build per interval at most; the
        interval stretches so that building never takes more than a fifth of the time."""
        while self._wanted():
            await asyncio.sleep(max(self.min_interval, 5 * self.last_build_seconds))
            started = time.perf_counter()
            try:
                await self.refresh()
            except Exception:  # serving the previous build beats stopping the updates
                log.exception("building the exposition failed")
            self.last_build_seconds = time.perf_counter() - started
        # Nobody scrapes any more: the next scrape starts the builder again.

    def _wanted(self) -> list[Format]:
        now = time.monotonic()
        return [
            fmt
            for fmt, state in self._formats.items()
            if now - state.requested_at < _WANTED_SECONDS
        ]

    async def refresh(self) -> None:
        """Build now every format scraped lately that is behind the store."""
        generation = self._store.generation
        for fmt in self._wanted():
            latest = self._formats[fmt].latest
            if latest is None or latest.generation != generation:
                await self._build(fmt)

    def cached_targets(self) -> dict[Format, int]:
        return {fmt: state.builder.cached_targets for fmt, state in self._formats.items()}

    async def close(self) -> None:
        task, self._background = self._background, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
