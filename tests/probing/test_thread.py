"""The probes' own event loop: runners run there, the caller's loop stays free."""

from __future__ import annotations

import asyncio
import threading

import pytest
from exporter_process import http_target_config

from resilience_exporter.configuration import loader
from resilience_exporter.metrics.snapshots import SnapshotStore
from resilience_exporter.probing.runtime import Runtime
from resilience_exporter.probing.thread import ProbeThread, ProbeThreadError
from scripts.testservers.base import free_port


def dead_http_target_runtime(store: SnapshotStore) -> Runtime:
    text = http_target_config("orders-api", f"http://127.0.0.1:{free_port()}/health")
    return Runtime(loader.parse(text, "c.yml").targets, store)


async def test_runners_probe_on_their_own_loop_and_stop_with_it() -> None:
    store = SnapshotStore()
    runtime = dead_http_target_runtime(store)
    probes = ProbeThread(runtime)
    probes.start()
    try:
        await probes.run(runtime.wait_ready())
        (snapshot,) = store.latest()
        assert (snapshot.target, snapshot.up) == ("orders-api", False)
        assert snapshot.failure is not None
        assert snapshot.failure.reason == "refused"
        assert await probes.run(current_thread_name()) == "probes"
    finally:
        await probes.stop()
    assert store.latest() == []  # the runtime stopped: its series are gone
    with pytest.raises(ProbeThreadError):
        await probes.run(current_thread_name())


async def test_the_callers_loop_runs_while_the_probes_loop_is_blocked() -> None:
    """What a scrape gets from it: the web server's loop answers while the probes' loop is
    busy. The probes' loop is held until the caller's loop releases it; on one loop this
    would wait for the whole timeout and return False."""
    probes = ProbeThread(Runtime([], SnapshotStore()))
    probes.start()
    try:
        gate = threading.Event()

        async def hold_the_loop() -> bool:
            return gate.wait(timeout=10.0)

        held = asyncio.ensure_future(probes.run(hold_the_loop()))
        await asyncio.sleep(0.05)
        assert not held.done()
        gate.set()  # runs on the caller's loop while the probes' loop is blocked
        assert await held is True
    finally:
        await probes.stop()


async def test_a_call_after_a_failed_call_still_runs() -> None:
    probes = ProbeThread(Runtime([], SnapshotStore()))
    probes.start()
    try:

        async def fail() -> None:
            raise ValueError("broken")

        with pytest.raises(ValueError, match="broken"):
            await probes.run(fail())
        assert await probes.run(current_thread_name()) == "probes"
    finally:
        await probes.stop()


async def current_thread_name() -> str:
    return threading.current_thread().name
