"""What the dashboards' queries share: selectors, rates, quantiles and the panels every
target kind's dashboard starts with.

Every query carries the `job`/`instance` variables and, where the series has a target, the
`target` variable. The exporter's own pools and breakers are named after their target
(`pool`/`breaker` = target, `source="exporter"`); applications' are named by the application
(`source` = the application's target): the helpers below select both by `$target`.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana.spec import RATE, SCRAPE, Panel, Query, Threshold

TARGET = 'target=~"$target"'
EXPORTER_POOL = 'source="exporter", pool=~"$target"'
DOWN_INCIDENT = "while a target is down (its probes fail)"


def sel(*matchers: str) -> str:
    return "{" + ", ".join([SCRAPE, *matchers]) + "}"


def breakers(metric: str, *matchers: str, wrap: Callable[[str], str] = lambda s: s) -> str:
    """`metric` of the exporter's breakers of $target and of the breakers of applications
    that are $target; `wrap` turns each selector into an expression (e.g. a rate)."""
    own = wrap(metric + sel('source="exporter"', 'breaker=~"$target"', *matchers))
    apps = wrap(metric + sel('source!="exporter"', 'source=~"$target"', *matchers))
    return f"({own} or {apps})"


def rate(selector: str) -> str:
    return f"rate({selector}[{RATE}])"


def increase(selector: str) -> str:
    return f"increase({selector}[{RATE}])"


def quantiles(
    bucket_selector: str, by: str, legend: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> tuple[Query, ...]:
    return tuple(
        Query(
            expr=f"histogram_quantile({q}, sum by ({by}, le) ({rate(bucket_selector)}))",
            legend=f"{legend} p{round(q * 100)}",
        )
        for q in qs
    )


def up_stat(kind: str) -> Panel:
    return Panel(
        title="Up",
        kind="stat",
        queries=(
            Query(
                expr=f"max by (target) (resilience_up{sel(kind, TARGET)})",
                legend="{{target}}",
            ),
        ),
        unit="none",
        mapping="up_down",
        description="Whether the last probe of each target succeeded.",
        alerts=("ResilienceTargetDown",),
        width=8,
        height=6,
    )


def probe_errors(kind: str) -> Panel:
    return Panel(
        title="Probe errors by reason",
        kind="timeseries",
        queries=(
            Query(
                expr="sum by (target, reason) "
                f"({rate('resilience_probe_errors_total' + sel(kind, TARGET))})",
                legend="{{target}} {{reason}}",
            ),
        ),
        unit="ops",
        description="Failed probes per second, by the reason the exporter gives.",
        alerts=("ResilienceTargetDown",),
        width=16,
        height=6,
    )


def probe_latency(kind: str) -> tuple[Panel, Panel]:
    buckets = "resilience_probe_duration_seconds_bucket" + sel(kind, TARGET)
    return (
        Panel(
            title="Probe latency heatmap",
            kind="heatmap",
            queries=(
                Query(expr=f"sum by (le) ({rate(buckets)})", legend="{{le}}", format="heatmap"),
            ),
            unit="s",
            description="How long whole probes take: the distribution over time.",
        ),
        Panel(
            title="Probe latency quantiles",
            kind="timeseries",
            queries=quantiles(buckets, "target", "{{target}}"),
            unit="s",
            description="Median, 95th and 99th percentile of the probes' duration.",
            threshold=Threshold(alert="ResilienceProbeLatencyHigh", key="seconds"),
        ),
    )
