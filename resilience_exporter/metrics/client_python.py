"""Samples as client_python families, for applications that export through client_python
(the `instrument` helper's `collect()`). The exporter itself writes its exposition with
`encoding`, without client_python."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

from resilience_exporter.metrics.encoding import go_float
from resilience_exporter.metrics.families import (
    Family,
    HistogramValue,
    Sample,
    SampleValue,
    SummaryValue,
)


def _add(metric: Metric, fam: Family, labels: dict[str, str], value: SampleValue) -> None:
    if isinstance(value, SummaryValue):
        metric.add_sample(f"{fam.name}_count", labels, value.count)
        metric.add_sample(f"{fam.name}_sum", labels, value.sum)
    elif isinstance(value, HistogramValue):
        base = fam.name
        for bound, count in zip(value.bounds, value.cumulative_counts, strict=False):
            metric.add_sample(f"{base}_bucket", {**labels, "le": go_float(bound)}, count)
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
