"""What a target's rounds add up to (probe durations, errors by reason, the last success)
and the snapshot each round publishes: the target's own families, the breaker's, the kind's
samples, written once into lines (`LineWriter`: a series whose value did not change is not
written again)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.breaker_schema import BreakerState
from resilience_exporter.metrics.encoding import LineWriter
from resilience_exporter.metrics.families import (
    HistogramAccumulator,
    Sample,
    family,
    sample,
    with_constant_labels,
)
from resilience_exporter.metrics.snapshots import Snapshot
from resilience_exporter.reasons import PROBE_REASONS, Failure

UP = family(
    "resilience_up",
    "1 if the last probe of the target succeeded, else 0 with the reason of the failure "
    "(breaker_open: no probe was made, the target's circuit breaker is open).",
    "gauge",
    ("target", "kind", "reason"),
    group="probe",
)
PROBE_DURATION = family(
    "resilience_probe_duration_seconds",
    "Duration of whole probes, successful or not.",
    "histogram",
    ("target", "kind"),
    group="probe",
)
PROBE_ERRORS = family(
    "resilience_probe_errors_total",
    "Failed probes by reason (calls rejected by an open breaker are not probes: see "
    "resilience_breaker_calls_total).",
    "counter",
    ("target", "kind", "reason"),
    group="probe",
)
LAST_SUCCESS = family(
    "resilience_last_success_timestamp_seconds",
    "When the target last answered a probe successfully, as a Unix timestamp.",
    "gauge",
    ("target", "kind"),
    group="probe",
)


class ProbeRecord:
    """One target's counts across rounds, and the snapshot of each round."""

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.duration = HistogramAccumulator()
        self.errors = dict.fromkeys(PROBE_REASONS, 0)
        self.last_success: float | None = None
        self._writer = LineWriter()

    def count(self, failure: Failure | None) -> None:
        """A round's outcome: a success, or an error by its reason."""
        if failure is None:
            self.last_success = time.time()
        else:
            self.errors[failure.reason] += 1

    def snapshot(
        self,
        up: bool | None,
        failure: Failure | None,
        samples: Sequence[Sample],
        *,
        breaker: Sequence[Sample],
        breaker_state: BreakerState,
        phase: float,
    ) -> Snapshot:
        """The round's snapshot: `up` None until the first probe has finished."""
        name, kind = self.config.name, self.config.kind
        common = [sample(PROBE_DURATION, self.duration.value(), target=name, kind=kind)]
        common += [
            sample(PROBE_ERRORS, n, target=name, kind=kind, reason=r)
            for r, n in self.errors.items()
        ]
        if up is not None:
            reason = failure.reason if failure else ""
            common.append(sample(UP, 1.0 if up else 0.0, target=name, kind=kind, reason=reason))
        if self.last_success is not None:
            common.append(sample(LAST_SUCCESS, self.last_success, target=name, kind=kind))
        common += breaker
        return Snapshot(
            target=name,
            kind=kind,
            description=self.config.describe(),
            up=up,
            failure=failure,
            finished_at=time.time() if up is not None else None,
            lines=self._writer.write(with_constant_labels([*common, *samples], self.config.labels)),
            breaker=breaker_state,
            phase=phase,
        )
