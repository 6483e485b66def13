"""One target probed forever: on its interval (a task while its probe runs, a timer in
between), under its timeout, behind its circuit breaker; each round publishes an immutable
`Snapshot` (`record.ProbeRecord` writes it) into the store scrapes read."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Iterable, Sequence

from resilience_exporter.classify import internal
from resilience_exporter.configuration.secrets import redact
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.breaker_schema import breaker_samples
from resilience_exporter.metrics.families import Sample
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probing.abandon import Abandoner
from resilience_exporter.probing.circuit_breaker import CircuitBreaker
from resilience_exporter.probing.record import ProbeRecord
from resilience_exporter.probing.registry import Probe, kind_spec
from resilience_exporter.reasons import Failure

log = logging.getLogger(__name__)


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
        self.record = ProbeRecord(config)
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
        self.record.duration.observe(time.perf_counter() - start)
        if self.breaker_enabled:
            await self._record_in_breaker(failure)
        self.record.count(failure)
        if failure is not None and failure.reason != "internal":
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
                self.record.count(defect)
            return self._publish(up, failure, ())
        if up:  # a whole round went through: a defect that comes back is logged again
            self._internal_error = None
        return snapshot

    def _publish(
        self, up: bool | None, failure: Failure | None, samples: Sequence[Sample]
    ) -> Snapshot:
        breaker: list[Sample] = []
        if self.breaker_enabled:
            breaker += breaker_samples(self.name, "exporter", self.breaker.view())
            breaker += self.breaker.last_error_samples(self.name, "exporter")
        snapshot = self.record.snapshot(
            up,
            failure,
            samples,
            breaker=breaker,
            breaker_state=self.breaker.state,
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
