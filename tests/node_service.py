"""The Node.js service of tests/node_app, run with Debian's `node` as a child we hold the PID
of; its packages come from `npm ci` and the lock file kept next to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.testservers.base import ManagedServer, ServerError, ServerProcess, free_port

NODE_APP = Path(__file__).resolve().parent / "node_app"
MISSING = "scripts/install-servers.sh installs Debian's nodejs and npm"


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        raise ServerError(f"node not found: {MISSING}")
    return found


def npm_ci() -> None:
    """Install the lock file's packages unless node_modules already holds them (npm writes
    node_modules/.package-lock.json last)."""
    npm = shutil.which("npm")
    if npm is None:
        raise ServerError(f"npm not found: {MISSING}")
    installed = NODE_APP / "node_modules" / ".package-lock.json"
    lock = NODE_APP / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_APP,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ServerError(f"npm ci failed in {NODE_APP}:\n{done.stdout}\n{done.stderr}")


class NodeService(ManagedServer):
    """`with NodeService(env={...}) as service:` runs tests/node_app/server.js on a free port."""

    def __init__(self, *, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="resilience-node-"))
        self.process = ServerProcess(
            "node service",
            [node_binary(), str(NODE_APP / "server.js")],
            log_path=self.base / "node.log",
            cwd=NODE_APP,
            env={"PATH": "/usr/bin:/bin", **env, "PORT": str(self.port)},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answering(self) -> bool:
        try:
            self.health()
        except OSError:
            return False
        return True

    def request(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def health(self) -> dict[str, Any]:
        """The document the exporter reads, as the service serves it."""
        document: dict[str, Any] = self.request("GET", "/health/resilience")
        return document
