"""The cached /metrics exposition: byte for byte what rendering from scratch gives, new after
every published snapshot, and with process and status families fresh at every scrape."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable

import pytest
from exporter_process import PROMETHEUS_ACCEPT
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from reference_exposition import build_registry

from resilience_exporter.metrics.encoding import Format, LineWriter
from resilience_exporter.metrics.exposition import (
    SEGMENT_TARGETS,
    Exposition,
    accepts_gzip,
    negotiate,
)
from resilience_exporter.metrics.families import (
    HistogramAccumulator,
    Sample,
    sample,
    with_constant_labels,
)
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probing.record import LAST_SUCCESS, PROBE_DURATION, PROBE_ERRORS, UP
from resilience_exporter.probing.sharding import SHARD
from resilience_exporter.reasons import Failure

FORMATS = [pytest.param(Format.TEXT, id="text"), pytest.param(Format.OPENMETRICS, id="om")]


# target -> the samples its latest snapshot was written from: what the reference renders.
WRITTEN: dict[str, list[Sample]] = {}


def written(store: SnapshotStore) -> list[Sample]:
    """In the exposition's order: targets by their place in the probing schedule, then name."""
    snapshots = sorted(store.latest(), key=lambda snap: (snap.phase, snap.target))
    return [s for snap in snapshots for s in WRITTEN[snap.target]]


def snapshot(
    target: str, *, up: bool, probes: int, labels: dict[str, str] | None = None
) -> Snapshot:
    duration = HistogramAccumulator()
    for i in range(probes):
        duration.observe(0.001 * (i + 1))
    reason = "" if up else "refused"
    samples = [
        sample(PROBE_DURATION, duration.value(), target=target, kind="postgres"),
        sample(UP, 1.0 if up else 0.0, target=target, kind="postgres", reason=reason),
        sample(PROBE_ERRORS, 0.0 if up else 1.0, target=target, kind="postgres", reason="refused"),
        sample(LAST_SUCCESS, 1_700_000_000.0 + probes, target=target, kind="postgres"),
    ]
    WRITTEN[target] = with_constant_labels(samples, labels or {})
    return Snapshot(
        target=target,
        kind="postgres",
        description=f"postgres {target}",
        up=up,
        failure=None if up else Failure("refused", "connection refused"),
        finished_at=1_700_000_000.0,
        lines=LineWriter().write(WRITTEN[target]),
    )


def without_process(exposition: bytes) -> list[str]:
    """The exposition minus the process families, whose values move on their own."""
    return [
        line
        for line in exposition.decode().splitlines()
        if not line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(PROCESS)
    ]


PROCESS = ("process_", "python_")
# client_python's encoders: the reference the exporter's own encoder must match.
CLIENT_PYTHON: dict[Format, Callable[[CollectorRegistry], bytes]] = {
    Format.TEXT: generate_latest,
    Format.OPENMETRICS: generate_openmetrics,
}


@pytest.fixture
def store() -> SnapshotStore:
    store = SnapshotStore()
    store.put(snapshot("orders-db", up=True, probes=3, labels={"team": "payments"}))
    store.put(snapshot("users-db", up=False, probes=1))
    return store


# A status family rendered fresh at every scrape, as the service's are.
def status() -> list[Sample]:
    return [sample(SHARD, 1.0, index="0", count="1")]


async def served(exposition: Exposition, fmt: Format) -> bytes:
    """What a scrape gets, uncompressed; the gzip answer must decompress to the same bytes
    (apart from the process families, which move on their own)."""
    plain = b"".join(await exposition.body(fmt, gzip=False))
    zipped = gzip.decompress(b"".join(await exposition.body(fmt, gzip=True)))
    assert without_process(zipped) == without_process(plain)
    return plain


async def rebuilt(exposition: Exposition, fmt: Format) -> bytes:
    """The answer once the builder has caught up with the store."""
    await exposition.refresh()
    return await served(exposition, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_cached_exposition_is_what_rendering_from_scratch_gives(
    store: SnapshotStore, fmt: Format
) -> None:
    exposition = Exposition(store, status)
    reference = CLIENT_PYTHON[fmt](build_registry(lambda: written(store), status))
    assert without_process(await served(exposition, fmt)) == without_process(reference)
    # served again from the cache: still the same
    assert without_process(await served(exposition, fmt)) == without_process(reference)
    await exposition.close()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_cached_exposition_changes_with_the_snapshots(
    store: SnapshotStore, fmt: Format
) -> None:
    exposition = Exposition(store, status)
    before = (await served(exposition, fmt)).decode()
    assert 'resilience_up{kind="postgres",reason="refused",target="users-db"} 0.0' in before

    store.put(snapshot("users-db", up=True, probes=2))
    after = await rebuilt(exposition, fmt)
    assert 'resilience_up{kind="postgres",target="users-db"} 1.0' in after.decode()
    assert 'resilience_up{kind="postgres",reason="refused",target="users-db"}' not in after.decode()
    reference = CLIENT_PYTHON[fmt](build_registry(lambda: written(store), status))
    assert without_process(after) == without_process(reference)

    store.put(snapshot("cache-db", up=True, probes=1))
    store.drop("orders-db")
    latest = await rebuilt(exposition, fmt)
    assert b'target="cache-db"' in latest
    assert b'target="orders-db"' not in latest
    reference = CLIENT_PYTHON[fmt](build_registry(lambda: written(store), status))
    assert without_process(latest) == without_process(reference)
    await exposition.close()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_process_and_status_families_stay_fresh_between_snapshots(
    store: SnapshotStore, fmt: Format
) -> None:
    shard = {"count": "1"}
    collects = [0]

    def live_status() -> list[Sample]:
        collects[0] += 1  # asked again at every scrape, like CPU seconds are
        return [sample(SHARD, float(collects[0]), index="0", count=shard["count"])]

    exposition = Exposition(store, live_status)
    first = (b"".join(await exposition.body(fmt, gzip=False))).decode()
    shard["count"] = "7"
    second = gzip.decompress(b"".join(await exposition.body(fmt, gzip=True))).decode()

    assert 'resilience_exporter_shard{count="1",index="0"} 1.0' in first
    assert 'resilience_exporter_shard{count="7",index="0"} 2.0' in second
    assert "process_cpu_seconds_total" in second
    assert "process_resident_memory_bytes" in second
    if fmt is Format.OPENMETRICS:
        assert second.endswith("# EOF\n")
        assert second.count("# EOF") == 1
    await exposition.close()


async def test_snapshots_are_joined_again_only_after_a_change(store: SnapshotStore) -> None:
    reads = {"n": 0}
    latest = store.latest

    def counting_latest() -> list[Snapshot]:
        reads["n"] += 1
        return latest()

    store.latest = counting_latest  # type: ignore[method-assign]
    exposition = Exposition(store, status)
    first = b"".join(await exposition.body(Format.TEXT, gzip=False))
    await exposition.body(Format.TEXT, gzip=False)
    await exposition.refresh()
    assert reads["n"] == 1
    store.put(snapshot("users-db", up=True, probes=9))
    await exposition.refresh()
    assert b"".join(await exposition.body(Format.TEXT, gzip=False)) != first
    assert reads["n"] == 2
    await exposition.close()


async def test_a_scrape_never_builds_once_a_build_exists(store: SnapshotStore) -> None:
    """Between builds (at most one per interval) scrapes serve the last build: the cost of
    a scrape does not depend on how many snapshots changed since the previous one."""
    exposition = Exposition(store, status, min_interval=3600)
    await exposition.body(Format.OPENMETRICS, gzip=True)
    builds = exposition.builds
    for probes in range(2, 50):
        store.put(snapshot("users-db", up=True, probes=probes))
        await exposition.body(Format.OPENMETRICS, gzip=True)
    assert exposition.builds == builds
    await exposition.close()


@pytest.mark.parametrize("first", FORMATS)
async def test_a_format_first_scraped_during_a_build_of_another_gets_its_own(
    store: SnapshotStore, first: Format
) -> None:
    """A format's first scrape may come while a build of the formats wanted before it is under
    way (Prometheus scraping OpenMetrics, then someone running `promtool check metrics`): the
    scrape waits for a build that includes its format instead of sharing one that does not."""
    other = Format.TEXT if first is Format.OPENMETRICS else Format.OPENMETRICS
    exposition = Exposition(store, status, min_interval=3600)
    first_scrape = asyncio.create_task(exposition.body(first, gzip=False))
    await asyncio.sleep(0)  # the first scrape's build is under way, not done
    assert not first_scrape.done()
    second = b"".join(await exposition.body(other, gzip=False))
    for fmt, body in ((first, b"".join(await first_scrape)), (other, second)):
        reference = CLIENT_PYTHON[fmt](build_registry(lambda: written(store), status))
        assert without_process(body) == without_process(reference)
    assert exposition.builds == 2
    await exposition.close()


async def test_the_background_builder_catches_up(store: SnapshotStore) -> None:
    exposition = Exposition(store, status, min_interval=0.05)
    await exposition.body(Format.TEXT, gzip=False)
    store.put(snapshot("users-db", up=True, probes=4))
    deadline = asyncio.get_running_loop().time() + 10
    while b'target="users-db"} 1.0' not in b"".join(await exposition.body(Format.TEXT, gzip=False)):
        assert asyncio.get_running_loop().time() < deadline, "the builder never caught up"
        await asyncio.sleep(0.05)
    await exposition.close()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS_ACCEPT, Format.OPENMETRICS),
        ("application/openmetrics-text", Format.OPENMETRICS),
        ("application/openmetrics-text; version=1.0.1", Format.OPENMETRICS),
        ("application/openmetrics-text;version=0.0.1", Format.TEXT),
        ("text/plain;version=0.0.4", Format.TEXT),
        ("text/plain;q=1,application/openmetrics-text;q=0.5", Format.TEXT),
        ("*/*", Format.TEXT),
        ("", Format.TEXT),
        (None, Format.TEXT),
        ("application/openmetrics-text;version=garbage", Format.TEXT),
        ("application/openmetrics-text;q=oops", Format.TEXT),
    ],
)
def test_negotiation(accept: str | None, expected: Format) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
        (None, False),
        ("*", True),
    ],
)
def test_gzip_negotiation(accept_encoding: str | None, expected: bool) -> None:
    assert accepts_gzip(accept_encoding) is expected


async def test_the_cache_is_bounded_by_the_formats(store: SnapshotStore) -> None:
    """Request headers vary (Prometheus versions, escaping schemes): the cache does not. (The
    exposition holds no state per target: snapshots come written.)"""
    exposition = Exposition(store, status, min_interval=0.01)
    accepts = [
        PROMETHEUS_ACCEPT,
        *(f"application/openmetrics-text;version=1.0.{n};escaping=values" for n in range(50)),
        *(f"text/plain;version=0.0.4;q=0.{n}" for n in range(1, 9)),
    ]
    for accept in accepts:
        await exposition.body(negotiate(accept), gzip=True)
        await exposition.body(negotiate(accept), gzip=False)
    assert exposition.cached_formats() == set(Format)
    await exposition.close()


async def test_a_build_compresses_only_the_segments_that_changed() -> None:
    """With the fleet in probing order, the targets probed since the last build share
    segments: the others are reused as they were compressed."""
    store = SnapshotStore()
    targets = [f"db-{i:03d}" for i in range(4 * SEGMENT_TARGETS)]
    for name in targets:
        store.put(snapshot(name, up=True, probes=1))
    exposition = Exposition(store, status, min_interval=3600)
    await exposition.body(Format.OPENMETRICS, gzip=True)
    first = exposition.latest_build(Format.OPENMETRICS)
    assert first is not None
    families = 4  # probe duration, up, errors, last success
    assert first.compressed == families * (1 + 4)  # a header and four runs of targets each

    store.put(snapshot(targets[5], up=True, probes=2))  # new duration, last success
    await exposition.refresh()
    second = exposition.latest_build(Format.OPENMETRICS)
    assert second is not None
    assert second.compressed == 2, "only the changed target's run, in the two families that moved"
    reference = CLIENT_PYTHON[Format.OPENMETRICS](build_registry(lambda: written(store), status))
    served = gzip.decompress(b"".join(await exposition.body(Format.OPENMETRICS, gzip=True)))
    assert without_process(served) == without_process(reference)
    await exposition.close()
