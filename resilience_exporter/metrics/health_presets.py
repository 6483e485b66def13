"""The built-in mappings: `generic`, the document `resilience_exporter.instrument` serves
(docs/application-health.md), `resilience4j`, Spring Boot's `/actuator/health` with
Resilience4j's circuit-breaker health indicator, and `node`, opossum breakers and node-postgres /
generic-pool pools as those libraries show them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from resilience_exporter.metrics.generic_document import GENERIC_FORMAT_VERSION
from resilience_exporter.metrics.health_mapping import (
    BreakersMapping,
    CallsMapping,
    HealthMapping,
    PoolsMapping,
)

PRESETS: Mapping[str, HealthMapping] = {
    "generic": HealthMapping(
        check=f"version == `{GENERIC_FORMAT_VERSION}`",
        breakers=BreakersMapping(
            items="breakers || `[]`",
            state="state",
            failure_ratio="failure_ratio",
            calls=CallsMapping(
                success="calls.success",
                failure="calls.failure",
                timeout="calls.timeout",
                rejected="calls.rejected",
            ),
            transitions="transitions",
            next_attempt_at="next_attempt_at",
            fallbacks="fallbacks",
            slow_calls="slow_calls",
            slow_call_ratio="slow_call_ratio",
            call_duration_quantiles="call_duration_seconds",
        ),
        pools=PoolsMapping(
            items="pools || `[]`",
            max="max",
            min="min",
            size="size",
            in_use="in_use",
            idle="idle",
            waiting="waiting",
            connect_errors="connect_errors",
            acquire_errors="acquire_errors",
            lost="lost",
            overflow="overflow",
            long_held="long_held",
            leak_threshold_seconds="leak_threshold_seconds",
            oldest_checkout_age_seconds="oldest_checkout_age_seconds",
            acquire_seconds="acquire_seconds",
            connect_seconds="connect_seconds",
            hold_seconds="hold_seconds",
        ),
    ),
    # Spring Boot 2.2+ nests indicators under `components` (older releases: `details`).
    # bufferedCalls and failedCalls describe the sliding window, not totals, so only the
    # cumulative notPermittedCalls becomes a counter.
    "resilience4j": HealthMapping(
        check="status",
        breakers=BreakersMapping(
            items="(components || details).circuitBreakers.details || `{}`",
            state="details.state",
            failure_rate_percent="details.failureRate",
            slow_call_rate_percent="details.slowCallRate",
            calls=CallsMapping(rejected="details.notPermittedCalls"),
        ),
    ),
    # opossum's `toJSON()` counts its rolling window only (`status`), so the calls go to the
    # window gauges. Its `failures` include timeouts and semaphore rejections (calls refused
    # because `capacity` calls were running): those are taken out of the failure outcome, and
    # semaphore rejections join the rejected one. `max` keeps a failure count a filtered
    # timeout (reported by opossum as a timeout and a success) would take below zero.
    # The failure ratio is opossum's own trip ratio, failures / fires, over the window; a call
    # that outlives the window leaves its fire behind before it fails, so the ratio can pass 1.
    "node": HealthMapping(
        check="type(@) == 'object'",
        breakers=BreakersMapping(
            items="breakers || `[]`",
            name="state.name",
            state=(
                "(state.shutdown && 'shutdown') || (state.enabled == `false` && 'disabled')"
                " || (state.open && 'open') || (state.halfOpen && 'half_open')"
                " || (state.closed && 'closed') || `null`"
            ),
            failure_ratio=(
                "ratio(status.failures, status.fires)"
                " && min([`1`, ratio(status.failures, status.fires)])"
            ),
            window_calls=CallsMapping(
                success="status.successes",
                failure=(
                    "max([`0`, subtract(status.failures,"
                    " sum([status.timeouts, status.semaphoreRejections]))])"
                ),
                timeout="status.timeouts",
                rejected="sum([status.rejects, status.semaphoreRejections])",
            ),
            window_fallbacks="status.fallbacks",
            # opossum reports 0 for every percentile of an empty window: no calls, no series.
            call_duration_quantiles=(
                "sum([status.successes, status.failures, status.timeouts]) > `0`"
                " && status.percentiles || `null`"
            ),
            call_duration_unit="milliseconds",
        ),
        # node-postgres: totalCount, idleCount, waitingCount; generic-pool: borrowed,
        # available, pending (its `size` also counts resources being created or validated).
        pools=PoolsMapping(
            items="pools || `[]`",
            max="max",
            min="min",
            size="totalCount",
            in_use="borrowed",
            idle="idleCount || available",
            waiting="waitingCount || pending",
        ),
    ),
}
Preset = Literal["generic", "resilience4j", "node"]
