"""`GET /probe?target=...&module=...`: on-demand probes, the blackbox_exporter pattern.

Never an open proxy: a request probes either a target configured by name, or an address that
a module's explicit `allow:` list admits. Anything else is refused with a clear 4xx.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError

from resilience_exporter.configuration.loader import Config
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probing.runner import TargetRunner

# host:port, host a DNS name, an IPv4 address or a bracketed IPv6 address. Nothing else can
# reach a DSN or URL template: no '/', '@', '?', spaces or quotes.
_ADDRESS = re.compile(
    r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r":(?P<port>[0-9]{1,5})$"
)
# Prometheus asks for the scrape to end before its own timeout: leave it this much margin.
SCRAPE_TIMEOUT_MARGIN = 0.5


class ProbeRequestError(Exception):
    """A /probe request that cannot be served; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_address(value: str) -> tuple[str, int]:
    match = _ADDRESS.match(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ProbeRequestError(400, "target must be a configured target name or HOST:PORT")
    return match["host"], int(match["port"])


def scrape_timeout(header: str | None, configured: float) -> float:
    """The probe's timeout: the module's, or less when Prometheus' scrape timeout is shorter."""
    if not header:
        return configured
    try:
        offered = float(header)
    except ValueError:
        raise ProbeRequestError(
            400, "X-Prometheus-Scrape-Timeout-Seconds is not a number"
        ) from None
    if not offered > 0 or offered != offered:  # rejects NaN and non-positive values
        raise ProbeRequestError(400, "X-Prometheus-Scrape-Timeout-Seconds must be positive")
    return max(min(configured, offered - SCRAPE_TIMEOUT_MARGIN), 0.1)


def single(values: Sequence[str], name: str) -> str | None:
    """The one value of a query parameter: given twice is ambiguous, so refused."""
    if len(values) > 1:
        raise ProbeRequestError(400, f"{name} given more than once")
    value = values[0] if values else None
    if value is not None and (not value or len(value) > 256):
        raise ProbeRequestError(400, f"{name} must be 1 to 256 characters")
    return value


def resolve(
    config: Config, target: str | None, module: str | None, scrape_timeout_header: str | None
) -> TargetConfig:
    """The target a /probe request asks for, or ProbeRequestError saying why not."""
    if target is None:
        raise ProbeRequestError(400, "missing target parameter")
    if module is None:
        configured = config.target_named(target)
        if configured is None:
            raise ProbeRequestError(
                400, "unknown target: give a configured target name, or an address and a module"
            )
        resolved = configured
    else:
        chosen = config.modules.get(module)
        if chosen is None:
            raise ProbeRequestError(400, f"unknown module {module!r}")
        host, port = parse_address(target)
        if not chosen.access.admits(host, port):
            raise ProbeRequestError(403, f"module {module!r} does not allow probing {target}")
        try:
            resolved = chosen.target(target)
        except ValidationError:
            raise ProbeRequestError(400, f"module {module!r} cannot probe {target}") from None
    timeout = scrape_timeout(scrape_timeout_header, resolved.timeout_seconds)
    return resolved.model_copy(update={"timeout": timeout})


async def probe_once(target: TargetConfig) -> Snapshot:
    """One probe with its own clients, closed afterwards: nothing lingers between requests."""
    runner = TargetRunner(target, SnapshotStore())
    await runner.probe.open()
    try:
        return await runner.run_once()
    finally:
        await runner.stop()
