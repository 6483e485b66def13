"""The running exporter: configuration, probes and web settings, and reloading them.

A reload (SIGHUP, or POST /-/reload with --web.enable-lifecycle) validates the new files first;
if anything is wrong the running configuration stays as it is, the error is logged and
`resilience_config_last_reload_successful` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from resilience_exporter import config as config_module
from resilience_exporter.families import Sample, family, sample
from resilience_exporter.runtime import Runtime, SnapshotStore
from resilience_exporter.sharding import Shard, assigned_targets
from resilience_exporter.webconfig import (
    WebConfig,
    WebConfigError,
    WebGuard,
    build_ssl_context,
    load_web_config,
)

log = logging.getLogger(__name__)

RELOAD_OK = family(
    "resilience_config_last_reload_successful",
    "1 if the last configuration reload succeeded (or none was attempted yet), else 0.",
    "gauge", (), group="exporter",
)  # fmt: skip
RELOAD_AT = family(
    "resilience_config_last_reload_success_timestamp_seconds",
    "When the configuration was last loaded successfully, as a Unix timestamp.",
    "gauge", (), group="exporter",
)  # fmt: skip

PROBE_REQUESTS = family(
    "resilience_exporter_probe_requests_total",
    "/probe requests by result: success, failure (the target is down), bad_request, forbidden.",
    "counter", ("result",), group="exporter",
)  # fmt: skip
PROBE_RESULTS = ("success", "failure", "bad_request", "forbidden")
# On-demand probes running at once; further /probe requests wait for a slot.
PROBE_CONCURRENCY = 32

UNAUTHENTICATED_PATHS = frozenset({"/-/healthy"})


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    config_file: Path | None
    web_config_file: Path | None
    enable_lifecycle: bool = False
    shard: Shard = field(default_factory=Shard)


class Service:
    def __init__(self, options: ServiceOptions, config: config_module.Config,
                 web_config: WebConfig) -> None:  # fmt: skip
        self.options = options
        self.config = config
        self.store = SnapshotStore()
        self.runtime = Runtime(assigned_targets(config, options.shard), self.store)
        self.guard = WebGuard(web_config, unauthenticated_paths=UNAUTHENTICATED_PATHS)
        tls = web_config.tls_server_config
        self.ssl_context: ssl.SSLContext | None = build_ssl_context(tls) if tls else None
        self.last_reload_ok = True
        self.last_reload_success = time.time()
        self._reload_lock = asyncio.Lock()
        self.probe_slots = asyncio.Semaphore(PROBE_CONCURRENCY)
        self.probe_requests = dict.fromkeys(PROBE_RESULTS, 0)

    def status_samples(self) -> list[Sample]:
        return [
            sample(RELOAD_OK, 1.0 if self.last_reload_ok else 0.0),
            sample(RELOAD_AT, self.last_reload_success),
            *(sample(PROBE_REQUESTS, n, result=r) for r, n in self.probe_requests.items()),
        ]

    async def reload(self) -> str | None:
        """Reload the configuration files; the error message if that failed, else None."""
        async with self._reload_lock:
            try:
                config = (
                    config_module.load(self.options.config_file)
                    if self.options.config_file is not None
                    else config_module.embedded_default()
                )
                web_config = (
                    load_web_config(self.options.web_config_file)
                    if self.options.web_config_file is not None
                    else WebConfig()
                )
                self._check_tls_switch(web_config)
            except (config_module.ConfigError, WebConfigError) as exc:
                self.last_reload_ok = False
                for line in str(exc).splitlines():
                    log.error("reload failed, keeping the running configuration",
                              extra={"err": line})  # fmt: skip
                return str(exc)
            tls = web_config.tls_server_config
            if tls is not None and self.ssl_context is not None:
                build_ssl_context(tls, self.ssl_context)
            self.guard.config = web_config
            await self.runtime.apply(assigned_targets(config, self.options.shard))
            self.config = config
            self.last_reload_ok = True
            self.last_reload_success = time.time()
            log.info("configuration reloaded", extra={"targets": len(self.runtime.runners)})
            return None

    def _check_tls_switch(self, web_config: WebConfig) -> None:
        if (web_config.tls_server_config is None) != (self.ssl_context is None):
            raise WebConfigError("TLS cannot be switched on or off by a reload: restart instead")
