"""Runs the real exporter as a child process and reads its /metrics, as Prometheus would."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from scripts.testservers.base import ServerError, free_port, wait_until

LabelSet = frozenset[tuple[str, str]]

# What Prometheus (2.x and 3.x) sends with every scrape.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_HEADERS = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}


class Scrape:
    """Parsed samples of one scrape: `value(name, **labels)` finds one sample. OpenMetrics
    is read with client_python's strict OpenMetrics parser, which rejects what is invalid."""

    def __init__(self, text: str, *, openmetrics: bool = False) -> None:
        self.text = text
        self.samples: dict[str, dict[LabelSet, float]] = {}
        self.types: dict[str, str] = {}
        parse = openmetrics_families if openmetrics else text_string_to_metric_families
        for fam in parse(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value

    def series(self, name: str, **labels: str) -> dict[LabelSet, float]:
        wanted = set(labels.items())
        return {k: v for k, v in self.samples.get(name, {}).items() if wanted <= k}

    def value(self, name: str, **labels: str) -> float | None:
        found = self.series(name, **labels)
        if len(found) > 1:
            raise AssertionError(f"{name}{labels} matches {len(found)} series: {list(found)}")
        return next(iter(found.values()), None)

    def has(self, name: str, **labels: str) -> bool:
        return bool(self.series(name, **labels))

    def failed_because(self, target: str, reason: str) -> bool:
        """The target is down for `reason`: said directly by `resilience_up`, or kept as the
        last real error while the exporter's breaker holds it at `breaker_open`."""
        if self.has("resilience_up", target=target, reason=reason):
            return True
        return self.has("resilience_up", target=target, reason="breaker_open") and self.has(
            "resilience_breaker_last_error_info", breaker=target, source="exporter", reason=reason
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(k).get(label, "") for k in self.samples.get(name, {})}


def probes_done(target: str, count: int = 2) -> Callable[[Scrape], bool]:
    """At least `count` probes of `target` finished."""

    def check(exp: Scrape) -> bool:
        done = exp.value("resilience_probe_duration_seconds_count", target=target) or 0
        return done >= count

    return check


def up_is(value: float, target: str, reason: str | None = None) -> Callable[[Scrape], bool]:
    """A check for `wait_for`: `resilience_up` of `target` is `value` (and down for `reason`)."""

    def check(exp: Scrape) -> bool:
        if exp.value("resilience_up", target=target) != value:
            return False
        return reason is None or exp.failed_because(target, reason)

    return check


class ExporterProcess:
    def __init__(
        self,
        workdir: Path,
        *,
        config: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.workdir = workdir
        self.ssl_context = ssl_context
        self.port = free_port()
        self.log_path = workdir / f"exporter-{self.port}.log"
        argv = [
            sys.executable,
            "-m",
            "resilience_exporter",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = workdir / f"config-{self.port}.yml"
            self.config_path.write_text(config)
            argv.append(f"--config.file={self.config_path}")
        self.argv = [*argv, *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, *, wait_healthy: bool = True) -> Self:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                stdin=subprocess.DEVNULL,
            )
        if wait_healthy:
            wait_until(self._healthy, timeout=30, what="the exporter to answer /-/healthy")
        return self

    def wait_listening(self, timeout: float = 30) -> Self:
        """Wait for a TCP connect to succeed: when a client certificate is required, that is
        all a client without one can check."""

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"exporter exited {self.proc.returncode}:\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(listening, timeout=timeout, what="the exporter to listen")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"exporter exited {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.get("/-/healthy")[0] == 200
        except (OSError, ssl.SSLError):
            return False

    def get(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        method: str = "GET",
    ) -> tuple[int, str, Mapping[str, str]]:
        request = urllib.request.Request(
            self.url + path, headers=dict(headers or {}), method=method
        )
        try:
            with urllib.request.urlopen(
                request, timeout=timeout, context=self.ssl_context
            ) as response:
                body = response.read().decode()
                return response.status, body, dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def scrape(self, timeout: float = 5.0) -> Scrape:
        """/metrics as Prometheus asks for it: OpenMetrics, gzip."""
        request = urllib.request.Request(self.url + "/metrics", headers=PROMETHEUS_HEADERS)
        with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Encoding"] == "gzip"
            assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
            text = gzip.decompress(answer.read()).decode()
        return Scrape(text, openmetrics=True)

    def text_format(self) -> str:
        """/metrics in the text format 0.0.4: what `promtool check metrics` reads."""
        status, body, headers = self.get("/metrics")
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return body

    def wait_for(self, what: str, check: Callable[[Scrape], bool], timeout: float) -> Scrape:
        """Scrape until `check(exposition)` is true; return that exposition."""
        latest: list[Scrape] = []

        def ok() -> bool:
            latest[:] = [self.scrape()]
            return check(latest[0])

        wait_until(ok, timeout=timeout, interval=0.2, what=what)
        return latest[0]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_exporter(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the exporter to completion (config checks, --version)."""
    return subprocess.run(
        [sys.executable, "-m", "resilience_exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def http_target_config(name: str, url: str) -> str:
    """A configuration with one `kind: http` target (`preset: generic`) probed every second."""
    return f"""
defaults: {{interval: 1s, timeout: 1s}}
host: {{enabled: false}}
targets:
  - name: {name}
    kind: http
    url: {url}
    preset: generic
"""


def read_by_http_target(workdir: Path, *, name: str, url: str) -> Scrape:
    """What an exporter shows once its `kind: http` target `name` has read `url`."""
    with ExporterProcess(workdir, config=http_target_config(name, url)) as exporter:
        return exporter.wait_for(
            "the application's document read",
            lambda e: e.value("resilience_up", target=name) == 1,
            timeout=30,
        )


def application_series(exp: Scrape, source: str) -> dict[str, dict[LabelSet, float]]:
    """The breaker and pool series of one application."""
    return {
        name: {k: v for k, v in series.items() if ("source", source) in k}
        for name, series in exp.samples.items()
        if name.startswith(("resilience_breaker_", "resilience_pool_"))
    }


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on a text-format exposition: exit 0 and no output is clean."""
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
