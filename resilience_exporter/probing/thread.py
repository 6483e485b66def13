"""The probes' event loop, in a thread of its own.

On one event loop a scrape waits for every callback that became ready before it: when a
hundred targets' replies arrive together (their servers stalled for a moment, or the machine
did), the scrape waits until all hundred were parsed and written, a hundred milliseconds and
more. With the probes on their own loop the web server's loop answers at once; the two
threads share the interpreter's lock, which changes hands every millisecond at most
(`sys.setswitchinterval` in `cli.main`).

Only `Runtime` lives on the probes' loop: its runners, their clients and pools. The web side
reads what the runners publish: `SnapshotStore` has one writer (this loop), and its readers
take whole copies (`list(dict.values())`, one step for the interpreter).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from resilience_exporter.probing.runtime import Runtime

T = TypeVar("T")

_STOP_SECONDS = 30.0


class ProbeThreadError(RuntimeError):
    """The probes' loop is not running (not started, or stopped)."""


class ProbeThread:
    """Runs `runtime` on an event loop in a daemon thread; `run` hands it coroutines."""

    def __init__(self, runtime: Runtime, *, name: str = "probes") -> None:
        self.runtime = runtime
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the loop and the runtime on it; returns once the loop runs."""
        if self._thread is not None:
            raise ProbeThreadError("the probes' loop was started already")
        loop = asyncio.new_event_loop()
        running = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(running.set)
            try:
                loop.run_forever()
            finally:
                _cancel_remaining(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        running.wait()
        loop.call_soon_threadsafe(self.runtime.start)

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """`call`'s result, awaited on the probes' loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            call.close()
            raise ProbeThreadError("the probes' loop is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, loop))

    async def stop(self) -> None:
        """Stops the runtime (its runners close their connections), then the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            await asyncio.wait_for(self.run(self.runtime.stop()), _STOP_SECONDS)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, _STOP_SECONDS)
            self._loop = self._thread = None


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """What `asyncio.run` does at its end: calls abandoned at their timeout may still run."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
