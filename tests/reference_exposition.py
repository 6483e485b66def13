"""The reference for the cached /metrics exposition: the snapshots' and the status' families,
rendered from scratch at each collect through client_python. `Exposition`, written with the
exporter's own encoder, must match it byte for byte (the process families aside, which
client_python does not know under the exporter's help texts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from resilience_exporter.metrics.client_python import metric_families
from resilience_exporter.metrics.families import Sample


class FamiliesCollector(Collector):
    """Families already built."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class SnapshotCollector(Collector):
    """The samples of every snapshot, then the exporter's status families."""

    def __init__(
        self, samples: Callable[[], Iterable[Sample]], status: Callable[[], Iterable[Sample]]
    ) -> None:
        self._samples = samples
        self._status = status

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self._samples())
        yield from metric_families(self._status())


def build_registry(
    samples: Callable[[], Iterable[Sample]], status: Callable[[], Iterable[Sample]] = tuple
) -> CollectorRegistry:
    """`samples`: what the snapshots were written from."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(samples, status))
    return registry
