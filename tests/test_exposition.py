"""The cached /metrics exposition: byte for byte what rendering from scratch gives, new after
every published snapshot, and with process and status families fresh at every scrape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from reference_exposition import build_registry

from resilience_exporter.exposition import Encoder, Exposition
from resilience_exporter.families import HistogramAccumulator, Sample, sample, with_constant_labels
from resilience_exporter.reasons import Failure
from resilience_exporter.runtime import (
    LAST_SUCCESS,
    PROBE_DURATION,
    PROBE_ERRORS,
    UP,
    Snapshot,
    SnapshotStore,
)
from resilience_exporter.sharding import SHARD

ENCODERS = [pytest.param(generate_latest, id="text"), pytest.param(generate_openmetrics, id="om")]


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
    return Snapshot(
        target=target,
        kind="postgres",
        description=f"postgres {target}",
        up=up,
        failure=None if up else Failure("refused", "connection refused"),
        finished_at=1_700_000_000.0,
        samples=tuple(with_constant_labels(samples, labels or {})),
    )


def without_process(exposition: bytes) -> list[str]:
    """The exposition minus client_python's process families, whose values move on their own."""
    return [
        line
        for line in exposition.decode().splitlines()
        if not line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith("process_")
    ]


class CountingCollector(Collector):
    """A family whose value changes at every collect, like CPU seconds do."""

    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        metric = Metric("bench_collects", "Collects so far.", "gauge")
        metric.add_sample("bench_collects", {}, float(self.calls))
        yield metric


@pytest.fixture
def store() -> SnapshotStore:
    store = SnapshotStore()
    store.put(snapshot("orders-db", up=True, probes=3, labels={"team": "payments"}))
    store.put(snapshot("users-db", up=False, probes=1))
    return store


# A status family rendered fresh at every scrape, as the service's are.
def status() -> list[Sample]:
    return [sample(SHARD, 1.0, index="0", count="1")]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_cached_exposition_is_what_rendering_from_scratch_gives(
    store: SnapshotStore, encoder: Encoder
) -> None:
    exposition = Exposition(store, status)
    reference = encoder(build_registry(store.latest, status))
    assert without_process(exposition.render(encoder)) == without_process(reference)
    # served again from the cache: still the same
    assert without_process(exposition.render(encoder)) == without_process(reference)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_cached_exposition_changes_with_the_snapshots(
    store: SnapshotStore, encoder: Encoder
) -> None:
    exposition = Exposition(store, status)
    before = exposition.render(encoder).decode()
    assert 'resilience_up{kind="postgres",reason="refused",target="users-db"} 0.0' in before

    store.put(snapshot("users-db", up=True, probes=2))
    after = exposition.render(encoder)
    assert 'resilience_up{kind="postgres",target="users-db"} 1.0' in after.decode()
    assert 'resilience_up{kind="postgres",reason="refused",target="users-db"}' not in after.decode()
    reference = encoder(build_registry(store.latest, status))
    assert without_process(after) == without_process(reference)

    store.put(snapshot("cache-db", up=True, probes=1))
    store.drop("orders-db")
    latest = exposition.render(encoder)
    assert b'target="cache-db"' in latest
    assert b'target="orders-db"' not in latest
    reference = encoder(build_registry(store.latest, status))
    assert without_process(latest) == without_process(reference)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_process_and_status_families_stay_fresh_between_snapshots(
    store: SnapshotStore, encoder: Encoder
) -> None:
    shard = {"count": "1"}

    def live_status() -> list[Sample]:
        return [sample(SHARD, 1.0, index="0", count=shard["count"])]

    exposition = Exposition(store, live_status)
    counting = CountingCollector()
    exposition.fresh.register(counting)
    first = exposition.render(encoder).decode()
    shard["count"] = "7"
    second = exposition.render(encoder).decode()  # no snapshot published in between

    assert "bench_collects 1.0" in first
    assert "bench_collects 2.0" in second
    assert 'resilience_exporter_shard{count="1",index="0"} 1.0' in first
    assert 'resilience_exporter_shard{count="7",index="0"} 1.0' in second
    assert "process_cpu_seconds_total" in second
    assert "process_resident_memory_bytes" in second
    if encoder is generate_openmetrics:
        assert second.endswith("# EOF\n")
        assert second.count("# EOF") == 1


def test_snapshots_are_joined_again_only_after_a_change(store: SnapshotStore) -> None:
    reads = {"n": 0}
    latest = store.latest

    def counting_latest() -> list[Snapshot]:
        reads["n"] += 1
        return latest()

    store.latest = counting_latest  # type: ignore[method-assign]
    exposition = Exposition(store, status)
    first = exposition.render(generate_latest)
    exposition.render(generate_latest)
    assert reads["n"] == 1
    store.put(snapshot("users-db", up=True, probes=9))
    assert exposition.render(generate_latest) != first
    assert reads["n"] == 2
