"""A runner's schedule on a real event loop: rounds on the interval's grid, never two at once,
a hung probe given up at its timeout, a defect logged without ending the schedule, nothing
left behind by `stop()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

import pytest

from resilience_exporter.configuration import loader
from resilience_exporter.metrics.families import Sample
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probing.runner import TargetRunner, next_slot
from resilience_exporter.reasons import Failure

INTERVAL = 0.1
CONFIG = """\
host: {enabled: false}
defaults: {interval: 100ms, timeout: 100ms}
targets:
  - name: db
    kind: postgres
    dsn: postgresql://monitor@127.0.0.1:5432/postgres
    breaker: {enabled: false}
"""
DEADLINE = 10.0


class ScriptedProbe:
    """Answers at once; hangs (until given up at the timeout) or breaks the round's
    bookkeeping on the calls it is told to."""

    def __init__(self, *, hang_on: Collection[int] = (), break_on: Collection[int] = ()) -> None:
        self.calls = 0
        self.published = 0  # rounds whose results were published
        self.in_flight = 0
        self.most_in_flight = 0
        self.hang_on, self.break_on = hang_on, break_on
        self.changed = asyncio.Event()  # set whenever a call starts or ends

    async def open(self) -> None:
        pass

    async def probe(self) -> Sequence[Sample]:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.changed.set()
        try:
            if self.calls in self.hang_on:
                await asyncio.sleep(3600)
            return ()
        finally:
            self.in_flight -= 1
            self.changed.set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def local_samples(self) -> Sequence[Sample]:
        """Called as a round publishes; from there the round schedules the next without
        yielding to the event loop."""
        self.published += 1
        self.changed.set()
        if self.calls in self.break_on:
            raise RuntimeError("a defect in the bookkeeping")
        return ()

    def classify(self, exc: BaseException) -> Failure:
        return Failure("timeout", repr(exc))

    async def close(self) -> None:
        pass


def runner_with(probe: ScriptedProbe) -> TargetRunner:
    (target,) = loader.parse(CONFIG, "c.yml").targets
    runner = TargetRunner(target, SnapshotStore())
    runner.probe = probe
    return runner


async def wait_for_calls(probe: ScriptedProbe, calls: int) -> None:
    await probe.wait_until(lambda: probe.calls >= calls)


def test_next_slot_keeps_the_grid_and_skips_missed_slots() -> None:
    assert next_slot(10.0, 1.0, now=10.2) == 11.0
    assert next_slot(10.0, 1.0, now=11.0) == 11.0
    # A round that ended at 13.25 missed the slots at 11, 12 and 13.
    assert next_slot(10.0, 1.0, now=13.25) == 14.0
    assert next_slot(10.5, 1.0, now=12.75) == 13.5


async def test_rounds_never_overlap_and_go_on_after_hung_probes() -> None:
    probe = ScriptedProbe(hang_on={2, 3})
    runner = runner_with(probe)
    runner.start()
    try:
        await wait_for_calls(probe, 6)
    finally:
        await runner.stop()
    assert probe.most_in_flight == 1
    assert runner.record.errors["timeout"] == 2, "the hung calls, given up at the timeout"


async def test_a_defect_in_a_round_is_published_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = ScriptedProbe(break_on={2})
    runner = runner_with(probe)
    published: list[Snapshot] = []
    put = runner.store.put

    def keep(snapshot: Snapshot) -> None:
        published.append(snapshot)
        put(snapshot)

    runner.store.put = keep  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="resilience_exporter.probing.runtime"):
        runner.start()
        try:
            await wait_for_calls(probe, 4)
            await probe.wait_until(lambda: probe.published >= 5)
        finally:
            await runner.stop()
    assert [r.getMessage() for r in caplog.records] == ["probe failed inside the exporter"]
    rounds = [s for s in published if s.up is not None]
    assert [s.failure.reason if s.failure else "up" for s in rounds[:3]] == [
        "up", "internal", "up",
    ]  # fmt: skip


@pytest.mark.parametrize("hang", [False, True], ids=["between rounds", "during a probe"])
async def test_nothing_runs_after_stop(hang: bool) -> None:
    probe = ScriptedProbe(hang_on={3} if hang else set())
    runner = runner_with(probe)
    runner.start()
    await wait_for_calls(probe, 3)
    if not hang:  # the third round published: its task has ended, the next round's timer is set
        await probe.wait_until(lambda: probe.published >= 3)
    await runner.stop()
    stopped_at = probe.calls
    await asyncio.sleep(5 * INTERVAL)  # five slots: any timer left would have started a round
    assert probe.calls == stopped_at
    assert probe.in_flight == 0
