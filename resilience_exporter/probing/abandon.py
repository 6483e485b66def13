"""Giving up on a call at its timeout without waiting for its clean-up.

Cancelling a client library's call can take long: psycopg asks the server to cancel the
query and waits for the acknowledgement, which a hung server never sends. The caller must not
wait for that, so the cancelled call is left to finish in the background, one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Abandoner:
    """Runs calls one after the other, each given up after `timeout` seconds; `busy` while
    an abandoned one has not finished yet."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._abandoned: asyncio.Task[Any] | None = None

    @property
    def busy(self) -> bool:
        return self._abandoned is not None and not self._abandoned.done()

    async def run(self, call: Coroutine[Any, Any, T], *, name: str) -> T:
        """The call's result; TimeoutError once the timeout has passed."""
        task = asyncio.create_task(call, name=name)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_consume_outcome)
            self._abandoned = task
            raise TimeoutError(f"{name} timed out")
        return task.result()

    async def cancel(self) -> None:
        task, self._abandoned = self._abandoned, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _consume_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
