"""Every target of a configuration probed in the background, one `TargetRunner` each, their
first rounds spread over a window that grows with the fleet; a reload keeps the runners of
unchanged targets with their history."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence

from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.snapshots import SnapshotStore
from resilience_exporter.probing.runner import TargetRunner

# The first probes of all targets are spread over this many seconds, plus this many for each
# target, up to the targets' interval.
SPREAD_SECONDS = 2.5
SPREAD_SECONDS_PER_TARGET = 0.02


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
