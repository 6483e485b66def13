"""A throwaway Alertmanager on a free loopback port (no clustering), and a webhook receiver
that records the notifications it is sent."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from scripts.testservers.base import (
    ManagedServer,
    ServerProcess,
    free_port,
    require_binary,
)


class AlertmanagerServer(ManagedServer):
    """`with AlertmanagerServer(config_text) as am:` (the config is Alertmanager's YAML)."""

    remove_signal = signal.SIGTERM  # lets it flush; its files go anyway
    start_timeout = 60.0

    def __init__(self, config_text: str, *, port: int | None = None) -> None:
        self._binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="resilience-alertmanager-"))
        self.config_path = self.base / "alertmanager.yml"
        self.config_path.write_text(config_text)
        self.process = ServerProcess(
            "alertmanager",
            [
                self._binary,
                f"--config.file={self.config_path}",
                f"--storage.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip: a single, private instance
                "--log.level=warn",
            ],
            log_path=self.base / "alertmanager.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as Prometheus' alerting config wants it."""
        return f"127.0.0.1:{self.port}"

    def answering(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            return list(json.loads(response.read()))


def local_config(
    config_text: str,
    webhook_url: str,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    resolve_timeout: str = "10s",
) -> str:
    """An Alertmanager config (e.g. alerts/alertmanager.example.yml) with every webhook sent
    to `webhook_url` + its original path and short timings: its routing and inhibitions are
    kept, so a test exercises them as shipped."""
    config = yaml.safe_load(config_text)
    config.setdefault("global", {})["resolve_timeout"] = resolve_timeout
    route = config["route"]
    route["group_wait"], route["group_interval"] = group_wait, group_interval
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlsplit(webhook["url"]).path
            webhook["url"] = webhook_url.rstrip("/") + path
    return str(yaml.safe_dump(config, sort_keys=False))


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook call: the path it was posted to (the receiver) and Alertmanager's payload."""

    path: str
    payload: dict[str, Any]


class WebhookReceiver:
    """An HTTP server on a free loopback port, in a thread, recording every POSTed JSON body.

    `on_notification` (optional) is called for each one, e.g. to print it.
    """

    def __init__(self, on_notification: Callable[[Notification], None] | None = None) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver._record(Notification(self.path, payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test and demo output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._on_notification = on_notification
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, notification: Notification) -> None:
        with self._lock:
            self.notifications.append(notification)
        if self._on_notification is not None:
            self._on_notification(notification)

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
