"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Self

import pytest

from scripts.testservers.base import wait_until
from scripts.testservers.prometheus import PrometheusServer


async def eventually(predicate: Callable[[], bool], what: str, within: float = 30) -> None:
    """Poll `predicate` without blocking the event loop; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


class Repeating:
    """`with Repeating(action, interval=0.2, name=...):` calls `action` every `interval`
    seconds in a thread of its own until the block ends (traffic an application would make)."""

    def __init__(self, action: Callable[[], object], *, interval: float, name: str) -> None:
        self._action = action
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._action()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self._stop.set()
        self._thread.join(10)


def alert_states(prometheus: PrometheusServer, name: str, **labels: str) -> list[str]:
    """The states (pending, firing) of Prometheus' alerts `name` whose labels include `labels`."""
    return [
        alert["state"]
        for alert in prometheus.alerts()
        if alert["labels"].get("alertname") == name and labels.items() <= alert["labels"].items()
    ]


def wait_firing(prometheus: PrometheusServer, *names: str, timeout: float, **labels: str) -> None:
    """Until every alert of `names` with `labels` fires in Prometheus."""
    wait_until(
        lambda: all("firing" in alert_states(prometheus, name, **labels) for name in names),
        timeout=timeout,
        interval=0.5,
        what=f"{', '.join(names)} {labels} firing in Prometheus",
    )


def wait_resolved(prometheus: PrometheusServer, *names: str, timeout: float, **labels: str) -> None:
    """Until no alert of `names` with `labels` fires in Prometheus."""
    wait_until(
        lambda: not any("firing" in alert_states(prometheus, n, **labels) for n in names),
        timeout=timeout,
        interval=0.5,
        what=f"{', '.join(names)} {labels} no longer firing in Prometheus",
    )


def wait_cleared(prometheus: PrometheusServer, *names: str, timeout: float) -> None:
    """Until no alert of `names` is pending or firing in Prometheus."""
    wait_until(
        lambda: not any(alert_states(prometheus, name) for name in names),
        timeout=timeout,
        interval=0.5,
        what=f"{', '.join(names)} to clear in Prometheus",
    )
