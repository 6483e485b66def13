"""Small helpers shared by tests."""

from __future__ import annotations

import urllib.request


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())
