"""What /metrics serves.

A scrape never renders or compresses the fleet. A builder, in a worker thread, writes each
changed snapshot's sample lines once (the same bytes serve both formats), joins the families
of all targets and compresses the result, at most once per `min_interval` (longer when a build
takes long), and only for the formats scraped lately. A scrape appends the few families that
change on their own (the exporter's status and process) to the last build; for gzip, the
build's deflate stream is kept open (flushed to a byte boundary), so the scrape compresses only
its own small part and closes the stream, and the CRC continues from the build's. Caches are
bounded by the number of targets and the two formats, whatever the requests ask for.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from resilience_exporter.metrics.encoding import Format, header, render
from resilience_exporter.metrics.families import CATALOG, Sample
from resilience_exporter.metrics.process import ProcessStats
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore

log = logging.getLogger(__name__)

# Fast compression: at a few MB per build it is several times cheaper than zlib's default
# level, for a body still about 15 times smaller than the text.
GZIP_LEVEL = 1
# The gzip header for a deflate stream without a file name or time stamp (RFC 1952).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# A format nobody scraped for this long is no longer built in the background.
_WANTED_SECONDS = 300.0


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


# Targets per compressed segment of a family: small enough that a build recompresses little
# more than what changed, large enough to compress nearly as well as the whole text.
SEGMENT_TARGETS = 32


@dataclass(frozen=True, slots=True)
class _Segment:
    """Part of one family: its header or a run of targets' lines (the snapshots' own bytes,
    not a copy), and those compressed."""

    members: tuple[bytes, ...]
    deflated: bytes


@dataclass(frozen=True, slots=True)
class Build:
    """The fleet's families in one format: its segments, and their text as one raw deflate
    stream flushed to a byte boundary but not finished, with the text's CRC-32 and length."""

    generation: int
    segments: tuple[_Segment, ...]
    deflated: bytes
    crc: int
    size: int
    # Segments compressed by this build (the others were the last build's).
    compressed: int
    # CPU time the build took (not wall time: the worker shares the GIL with the probes).
    cpu_seconds: float


class _Builder:
    """Joins the snapshots' written lines family by family, in segments of a few targets each,
    and compresses each segment on its own (concatenated, they are one valid deflate stream).
    A segment whose bytes did not change since the last build is not compressed again.

    Within a family, targets come in the order of their probing schedule: the targets probed
    since the last build sit next to each other, so few segments change per build, however
    many targets there are. One build runs at a time; the segments kept are the last build's.
    """

    def __init__(self) -> None:
        self._segments: dict[Format, dict[tuple[str, int], _Segment]] = {}

    def build(
        self, snapshots: Sequence[Snapshot], generation: int, formats: Iterable[Format]
    ) -> dict[Format, Build]:
        started = time.thread_time()
        per_family: dict[str, list[bytes]] = {}
        for snap in sorted(snapshots, key=lambda s: (s.phase, s.target)):
            for name, lines in snap.lines:
                per_family.setdefault(name, []).append(lines)
        builds: dict[Format, Build] = {}
        for fmt in formats:
            previous = self._segments.get(fmt, {})
            current: dict[tuple[str, int], _Segment] = {}
            for name in sorted(per_family):
                targets_lines = per_family[name]
                current[(name, -1)] = _segment(
                    previous.get((name, -1)), (header(CATALOG[name], fmt),)
                )
                for index, first in enumerate(range(0, len(targets_lines), SEGMENT_TARGETS)):
                    members = tuple(targets_lines[first : first + SEGMENT_TARGETS])
                    current[(name, index)] = _segment(previous.get((name, index)), members)
            self._segments[fmt] = current
            kept = set(map(id, previous.values()))
            segments = tuple(current.values())
            crc = size = 0
            for segment in segments:
                # A segment's text at a time: zlib lets go of the GIL over a few KB, so the
                # event loop runs meanwhile.
                plain = b"".join(segment.members)
                crc = zlib.crc32(plain, crc)
                size += len(plain)
            builds[fmt] = Build(
                generation=generation,
                segments=segments,
                deflated=b"".join(segment.deflated for segment in segments),
                crc=crc,
                size=size,
                compressed=sum(1 for segment in current.values() if id(segment) not in kept),
                cpu_seconds=time.thread_time() - started,
            )
        return builds


def _segment(previous: _Segment | None, members: tuple[bytes, ...]) -> _Segment:
    if previous is not None and previous.members == members:
        return previous
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(b"".join(members)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _Segment(members, deflated)


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
        self._process = ProcessStats()
        self._builder = _Builder()
        self._latest: dict[Format, Build] = {}
        self._requested_at = dict.fromkeys(Format, 0.0)
        self._building: asyncio.Future[dict[Format, Build]] | None = None
        self._building_formats: frozenset[Format] = frozenset()
        self._background: asyncio.Task[None] | None = None
        self.last_build_cpu_seconds = 0.0
        self.builds = 0

    # --- serving ---------------------------------------------------------------------------
    async def body(self, fmt: Format, *, gzip: bool) -> tuple[bytes, ...]:
        """The answer to a scrape, in pieces to be sent one after the other (the build's
        bytes are sent as they are, never copied into one buffer per scrape)."""
        self._requested_at[fmt] = time.monotonic()
        build = self._latest.get(fmt)
        if build is None:  # the first scrape of this format waits for its first build
            build = (await self._build(including=fmt))[fmt]
        self._ensure_background()
        fresh = render(fmt, [*self._status(), *self._process.samples()])
        if not gzip:
            return (*(b"".join(segment.members) for segment in build.segments), fresh)
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        tail = compressor.compress(fresh) + compressor.flush(zlib.Z_FINISH)
        size = (build.size + len(fresh)) & 0xFFFFFFFF
        trailer = struct.pack("<II", zlib.crc32(fresh, build.crc), size)
        return (_GZIP_HEADER, build.deflated, tail + trailer)

    # --- building --------------------------------------------------------------------------
    def _wanted(self) -> list[Format]:
        now = time.monotonic()
        return [fmt for fmt, at in self._requested_at.items() if now - at < _WANTED_SECONDS]

    async def _build(self, *, including: Format | None = None) -> dict[Format, Build]:
        """One build of the formats wanted, in a worker thread; concurrent callers share it.
        A caller needing a format that the build under way leaves out (it started before the
        format was first scraped) waits for that build to end, then starts the next."""
        while True:
            if self._building is None or self._building.done():
                formats = self._wanted()
                if including is not None and including not in formats:
                    formats.append(including)
                self.builds += 1
                self._building_formats = frozenset(formats)
                self._building = asyncio.ensure_future(
                    asyncio.to_thread(
                        self._builder.build,
                        self._store.latest(),
                        self._store.generation,
                        formats,
                    )
                )
            building = self._building
            if including is None or including in self._building_formats:
                break
            # Its outcome is its own callers' to take; a cancelled scrape leaves it running.
            await asyncio.wait((building,))
        builds = await asyncio.shield(building)
        self.last_build_cpu_seconds = max((b.cpu_seconds for b in builds.values()), default=0.0)
        for fmt, build in builds.items():
            latest = self._latest.get(fmt)
            if latest is None or build.generation >= latest.generation:
                self._latest[fmt] = build
        return builds

    async def refresh(self) -> None:
        """Build now, if a format scraped lately is behind the store."""
        generation = self._store.generation
        for fmt in self._wanted():
            latest = self._latest.get(fmt)
            if latest is None or latest.generation != generation:
                await self._build()
                return

    def _ensure_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._rebuild_forever(), name="exposition")

    async def _rebuild_forever(self) -> None:
        """Keeps the formats scraped lately up to date, one build per interval at most; the
        interval stretches so that building never takes more than a fifth of a CPU."""
        while self._wanted():
            await asyncio.sleep(max(self.min_interval, 5 * self.last_build_cpu_seconds))
            try:
                await self.refresh()
            except Exception:  # serving the previous build beats stopping the updates
                log.exception("building the exposition failed")
        # Nobody scrapes any more: the next scrape starts the builder again.

    def cached_formats(self) -> set[Format]:
        return set(self._latest)

    def latest_build(self, fmt: Format) -> Build | None:
        return self._latest.get(fmt)

    async def close(self) -> None:
        task, self._background = self._background, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
