"""A throwaway Prometheus on a free loopback port: scrapes given targets, loads rule files,
sends alerts to an Alertmanager. Short intervals by default, for tests and the demo."""

from __future__ import annotations

import json
import signal
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scripts.testservers.base import (
    ManagedServer,
    ServerError,
    ServerProcess,
    free_port,
    require_binary,
)


class PrometheusServer(ManagedServer):
    """`with PrometheusServer(scrape={"resilience-exporter": ["127.0.0.1:9864"]}, ...) as prom:`;
    `scrape_configs` adds whole scrape configs (relabelings, params)."""

    remove_signal = signal.SIGTERM  # lets it flush; its files go anyway
    start_timeout = 60.0

    def __init__(
        self,
        *,
        scrape: dict[str, Sequence[str]],
        scrape_configs: Sequence[dict[str, Any]] = (),
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
        scrape_interval: str = "1s",
        scrape_timeout: str | None = None,
        evaluation_interval: str = "1s",
        resend_delay: str = "1s",
        port: int | None = None,
    ) -> None:
        self._binary = require_binary("prometheus", "prometheus")
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="resilience-prometheus-"))
        config = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_timeout or scrape_interval,
                "evaluation_interval": evaluation_interval,
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                *(
                    {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                    for job, targets in scrape.items()
                ),
                *scrape_configs,
            ],
        }
        if alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
            }
        self.config_path = self.base / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = ServerProcess(
            "prometheus",
            [
                self._binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--rules.alert.resend-delay={resend_delay}",
                "--log.level=warn",
            ],
            log_path=self.base / "prometheus.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answering(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; return its `data`."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ServerError(f"prometheus API {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the result vector's samples."""
        return list(self.api("query", query=expr)["result"])

    def query_range(self, expr: str, *, start: float, end: float, step: float) -> list[Any]:
        """Range query: one matrix entry per series, with its [time, value] pairs."""
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])
