"""Probing in the background: every target on its interval, under its timeout (a task while
its probe runs, a timer in between).

Each round publishes an immutable `Snapshot`; scrapes only ever read the latest ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Iterable, Sequence

from resilience_exporter.classify import internal
from resilience_exporter.configuration.secrets import redact
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.breaker_schema import breaker_samples
from resilience_exporter.metrics.encoding import LineWriter
from resilience_exporter.metrics.families import (
    HistogramAccumulator,
    Sample,
    family,
    sample,
    with_constant_labels,
)
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probing.abandon import Abandoner
from resilience_exporter.probing.circuit_breaker import CircuitBreaker
from resilience_exporter.probing.registry import Probe, kind_spec
from resilience_exporter.reasons import PROBE_REASONS, Failure

log = logging.getLogger(__name__)

# The first probes of all targets are spread over this many seconds, plus this many for each
# target, up to the targets' interval.
SPREAD_SECONDS = 2.5
SPREAD_SECONDS_PER_TARGET = 0.02

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


def next_slot(previous: float, interval: float, *, now: float) -> float:
    """When the round after the one due at `previous` is due: an interval later, or, after a
    round slower than that, the first slot of the same grid still ahead (a slow probe skips
    the slots it missed rather than bursting to catch up)."""
    due = previous + interval
    if due < now:
        due = now + interval - ((now - due) % interval)
    return due


class TargetRunner:
    """Probes one target forever, behind its circuit breaker, and publishes a snapshot after
    each interval: a probe's result, or a call rejected by the open breaker (no I/O at all:
    the probe's clients are closed while the breaker is open)."""

    def __init__(
        self,
        config: TargetConfig,
        store: SnapshotStore,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.probe: Probe = kind_spec(config.kind).create(config)
        self.breaker = breaker if breaker is not None else CircuitBreaker(config.breaker)
        self.probe_open = False
        self.duration = HistogramAccumulator()
        self.errors = dict.fromkeys(PROBE_REASONS, 0)
        self.last_success: float | None = None
        self.first_round = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_at = 0.0
        self._stopped = False
        # Created once: a timer per round would otherwise carry a new bound method and a
        # copy of the context each, objects that live an interval.
        self._start_round = self._round_due
        self._timer_context = contextvars.Context()
        self._calls = Abandoner(timeout=config.timeout_seconds)
        self._writer = LineWriter()
        self.phase = 0.0
        self._internal_error: str | None = None
        self.publish(None, None, ())

    @property
    def name(self) -> str:
        return self.config.name

    def start(self, *, delay: float = 0.0) -> None:
        """Probe forever, the first time after `delay` seconds."""
        self._task = asyncio.create_task(self._first_round(delay), name=f"probe:{self.name}")

    async def _first_round(self, delay: float) -> None:
        # Opened early so that its pool is exported before the first probe; should opening
        # fail, the first round opens it again and reports why.
        with contextlib.suppress(Exception):
            await self._open_probe()
        await asyncio.sleep(delay)
        self._next_at = asyncio.get_running_loop().time()
        self.phase = self._next_at % self.config.interval_seconds
        await self._round()

    async def _round(self) -> None:
        """One probe, then a timer for the next. Between rounds a target holds a timer, not a
        sleeping task: with thousands of targets, sleeping tasks (each with its coroutine,
        future and timer) outlive an interval and make every full garbage collection longer."""
        try:
            await self.run_once()
        except asyncio.CancelledError:
            raise
        except Exception:  # a defect, not a target's failure: keep probing on schedule
            log.exception("probe round failed", extra={"target": self.name})
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        self._next_at = next_slot(self._next_at, self.config.interval_seconds, now=loop.time())
        self._timer = loop.call_at(self._next_at, self._start_round, context=self._timer_context)
        self._task = None

    def _round_due(self) -> None:
        self._timer = None
        if not self._stopped:
            self._task = asyncio.create_task(self._round(), name=f"probe:{self.name}")

    @property
    def breaker_enabled(self) -> bool:
        return self.config.breaker.enabled

    async def run_once(self) -> Snapshot:
        if self.breaker_enabled and not self.breaker.allow():
            return self._publish_rejected()
        start = time.perf_counter()
        failure: Failure | None = None
        samples: Sequence[Sample] = ()
        try:
            await self._open_probe()
            samples = await self._probe_within_timeout()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure of a target is data, never a crash
            failure = self._classify(exc)
        self.duration.observe(time.perf_counter() - start)
        if self.breaker_enabled:
            await self._record_in_breaker(failure)
        if failure is None:
            self.last_success = time.time()
        else:
            self.errors[failure.reason] += 1
            if failure.reason != "internal":
                log.warning(
                    "probe failed",
                    extra={
                        "target": self.name,
                        "kind": self.config.kind,
                        "reason": failure.reason,
                        "err": redact(failure.message),
                    },
                )
        snapshot = self.publish(failure is None, failure, samples)
        self.first_round.set()
        return snapshot

    def _classify(self, exc: Exception) -> Failure:
        """The kind's reason for a failure; `internal` for what its table cannot explain, and
        for a table that fails itself."""
        try:
            failure = self.probe.classify(exc)
        except Exception as defect:
            failure, exc = internal(defect), defect
        if failure.reason == "internal":
            self._log_internal(failure, exc)
        return failure

    def _log_internal(self, failure: Failure, exc: BaseException) -> None:
        """Once per change: the same defect every interval would flood the log."""
        if failure.message == self._internal_error:
            return
        self._internal_error = failure.message
        log.error(
            "probe failed inside the exporter",
            exc_info=exc,
            extra={"target": self.name, "kind": self.config.kind, "reason": "internal"},
        )

    async def _record_in_breaker(self, failure: Failure | None) -> None:
        if failure is None:
            self.breaker.record_success()
            return
        if failure.reason == "internal":  # the exporter's failure, not the target's
            return
        self.breaker.record_failure(failure)
        if self.breaker.state != "open":
            return
        # Closed right away: pools would otherwise go on reconnecting in the background.
        await self._close_probe()
        log.warning(
            "breaker open",
            extra={
                "target": self.name,
                "kind": self.config.kind,
                "reason": failure.reason,
                "persistent": failure.persistent,
                "next_attempt_at": self.breaker.next_attempt_at,
            },
        )

    def _publish_rejected(self) -> Snapshot:
        last = self.breaker.last_failure
        what = f"{last.reason}: {last.message}" if last else "none recorded"
        message = f"breaker open, no probe made (last failure {what})"
        failure = Failure("breaker_open", message, cause=last)
        snapshot = self.publish(False, failure, ())
        self.first_round.set()
        return snapshot

    async def _open_probe(self) -> None:
        if not self.probe_open:
            await self.probe.open()
            self.probe_open = True

    async def _close_probe(self, *, grace: float | None = None) -> None:
        if not self.probe_open:
            return
        self.probe_open = False
        try:
            async with asyncio.timeout(grace or max(self.config.timeout_seconds, 2.0)):
                await self.probe.close()
        except Exception as exc:  # the next trial opens fresh clients anyway
            log.warning("closing probe failed", extra={"target": self.name, "err": repr(exc)})

    async def _probe_within_timeout(self) -> Sequence[Sample]:
        """Run the probe, giving up after the timeout even if the client library, once
        cancelled, takes its time to clean up."""
        if self._calls.busy:
            raise TimeoutError("the previous probe is still being cancelled")
        return await self._calls.run(self.probe.probe(), name=f"probe-once:{self.name}")

    def publish(
        self, up: bool | None, failure: Failure | None, samples: Iterable[Sample]
    ) -> Snapshot:
        """Write and store the round's snapshot. Should the kind's own samples fail to be
        made or written, the target is still published, down with reason `internal`: a
        target never vanishes from the exposition."""
        try:
            local = self.probe.local_samples()
            snapshot = self._publish(up, failure, [*local, *samples])
        except Exception as exc:
            defect = internal(exc)
            if up is not None:
                self._log_internal(defect, exc)
            if up:  # a round that failed already keeps the target's own reason
                up, failure = False, defect
                self.errors[defect.reason] += 1
            return self._publish(up, failure, ())
        if up:  # a whole round went through: a defect that comes back is logged again
            self._internal_error = None
        return snapshot

    def _publish(
        self, up: bool | None, failure: Failure | None, samples: Sequence[Sample]
    ) -> Snapshot:
        name, kind = self.name, self.config.kind
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
        if self.breaker_enabled:
            common += breaker_samples(name, "exporter", self.breaker.view())
            common += self.breaker.last_error_samples(name, "exporter")
        snapshot = Snapshot(
            target=name,
            kind=kind,
            description=self.config.describe(),
            up=up,
            failure=failure,
            finished_at=time.time() if up is not None else None,
            lines=self._writer.write(with_constant_labels([*common, *samples], self.config.labels)),
            breaker=self.breaker.state,
            phase=self.phase,
        )
        self.store.put(snapshot)
        return snapshot

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._calls.cancel()
        await self._close_probe(grace=5.0)


class Runtime:
    """All target runners of one configuration."""

    def __init__(self, targets: Iterable[TargetConfig], store: SnapshotStore) -> None:
        self.store = store
        self.runners = [TargetRunner(t, store) for t in targets]
        self._jitter = True

    def start(self, *, jitter: bool = True) -> None:
        self._jitter = jitter
        self._start(self.runners)

    def _start(self, runners: Sequence[TargetRunner]) -> None:
        """Spread first probes over a window that grows with the fleet, up to a whole
        interval: a thousand targets probed in the same few seconds would queue behind each
        other at every interval from then on."""
        window = SPREAD_SECONDS + SPREAD_SECONDS_PER_TARGET * len(self.runners)
        for runner in runners:
            spread = min(window, runner.config.interval_seconds) if self._jitter else 0.0
            runner.start(delay=random.uniform(0, spread))

    async def apply(self, targets: Iterable[TargetConfig]) -> None:
        """Switch to a new set of targets: unchanged ones keep running with their history,
        removed or changed ones stop (their series go), new ones start."""
        wanted = {t.name: t for t in targets}
        keep = [r for r in self.runners if wanted.get(r.name) == r.config]
        kept = {r.name for r in keep}
        retired = [r for r in self.runners if r.name not in kept]
        await asyncio.gather(*(r.stop() for r in retired))
        for runner in retired:
            self.store.drop(runner.name)
        fresh = [TargetRunner(t, self.store) for name, t in wanted.items() if name not in kept]
        self.runners = keep + fresh
        self._start(fresh)

    @property
    def ready(self) -> bool:
        return all(r.first_round.is_set() for r in self.runners)

    async def wait_ready(self) -> None:
        await asyncio.gather(*(r.first_round.wait() for r in self.runners))

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners))
        for runner in self.runners:
            self.store.drop(runner.name)
