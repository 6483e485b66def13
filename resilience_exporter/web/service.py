"""The running exporter: configuration, probes, web settings and the exposition, started and
stopped with the web application, and reloaded on request.

A reload (SIGHUP, or POST /-/reload with --web.enable-lifecycle) validates the new files first;
if anything is wrong the running configuration stays as it is, the error is logged and
`resilience_config_last_reload_successful` drops to 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import platform
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from aiohttp import web

import resilience_exporter
from resilience_exporter.configuration import loader as config_module
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.metrics.exposition import Exposition
from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probing import on_demand
from resilience_exporter.probing.runtime import Runtime
from resilience_exporter.probing.sharding import Shard, assigned_targets
from resilience_exporter.probing.thread import ProbeThread
from resilience_exporter.web.guard import WebGuard
from resilience_exporter.web.tls import WebConfigError, build_ssl_context
from resilience_exporter.web.webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)

BUILD_INFO = family(
    "resilience_exporter_build_info",
    "Always 1; labels tell the exporter's version and the Python it runs on.",
    "gauge",
    ("version", "python_version"),
    group="exporter",
)
TARGETS = family(
    "resilience_exporter_targets",
    "Targets configured, by kind.",
    "gauge",
    ("kind",),
    group="exporter",
)
RELOAD_OK = family(
    "resilience_config_last_reload_successful",
    "1 if the last configuration reload succeeded (or none was attempted yet), else 0.",
    "gauge",
    (),
    group="exporter",
)
RELOAD_AT = family(
    "resilience_config_last_reload_success_timestamp_seconds",
    "When the configuration was last loaded successfully, as a Unix timestamp.",
    "gauge",
    (),
    group="exporter",
)
PROBE_REQUESTS = family(
    "resilience_exporter_probe_requests_total",
    "/probe requests by result: success, failure (the target is down), bad_request, forbidden.",
    "counter",
    ("result",),
    group="exporter",
)
ProbeRequestResult = Literal["success", "failure", "bad_request", "forbidden"]
PROBE_RESULTS: tuple[ProbeRequestResult, ...] = get_args(ProbeRequestResult)
# On-demand probes running at once; further /probe requests wait for a slot.
PROBE_CONCURRENCY = 32

# Health checks answer without basic auth or an allowed SAN, so that Kubernetes probes (which
# carry no credentials) work in every web config mode; see docs/security.md.
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    config_file: Path | None
    web_config_file: Path | None
    enable_lifecycle: bool = False
    shard: Shard = field(default_factory=Shard)


def load_config(path: Path | None) -> config_module.Config:
    return config_module.embedded_default() if path is None else config_module.load(path)


def load_web(path: Path | None) -> WebConfig:
    return WebConfig() if path is None else load_web_config(path)


class Service:
    def __init__(
        self, options: ServiceOptions, config: config_module.Config, web_config: WebConfig
    ) -> None:
        self.options = options
        self.config = config
        self.store = SnapshotStore()
        self.runtime = Runtime(assigned_targets(config, options.shard), self.store)
        self.probes = ProbeThread(self.runtime)
        self.exposition = Exposition(self.store, self.status_samples)
        self.guard = WebGuard(web_config, unauthenticated_paths=UNAUTHENTICATED_PATHS)
        tls = web_config.tls_server_config
        self.ssl_context: ssl.SSLContext | None = build_ssl_context(tls) if tls else None
        self.last_reload_ok = True
        self.last_reload_success = time.time()
        self._reload_lock = asyncio.Lock()
        self._settling: asyncio.Task[None] | None = None
        self._probe_slots = asyncio.Semaphore(PROBE_CONCURRENCY)
        self._probe_requests: dict[ProbeRequestResult, int] = dict.fromkeys(PROBE_RESULTS, 0)
        self._build_info = sample(
            BUILD_INFO,
            1.0,
            version=resilience_exporter.__version__,
            python_version=platform.python_version(),
        )

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """The probes run while the web application does (aiohttp's `cleanup_ctx`), on their
        own event loop (`probing.thread`)."""
        self.probes.start()
        self._settle()
        yield
        if self._settling is not None:
            self._settling.cancel()
        await self.exposition.close()
        await self.probes.stop()

    def _settle(self) -> None:
        """Once every target has been probed, move the objects that exist by then (clients,
        pools, runners, the configuration) out of the garbage collector's way: a full
        collection walks every object it follows, which with thousands of targets stalls
        the event loop for most of a second. Snapshots are bytes and strings it does not
        follow; what probes create and drop on the way dies young."""
        if self._settling is not None:
            self._settling.cancel()

        async def freeze_when_ready() -> None:
            await self.probes.run(self.runtime.wait_ready())
            gc.collect()
            gc.freeze()

        self._settling = asyncio.create_task(freeze_when_ready(), name="settle")

    # --- what the exporter says about itself ---------------------------------------------
    def status_samples(self) -> list[Sample]:
        kinds = Counter(snap.kind for snap in self.store.latest())
        return [
            self._build_info,
            *(sample(TARGETS, n, kind=kind) for kind, n in sorted(kinds.items())),
            sample(RELOAD_OK, 1.0 if self.last_reload_ok else 0.0),
            sample(RELOAD_AT, self.last_reload_success),
            *(sample(PROBE_REQUESTS, n, result=r) for r, n in self._probe_requests.items()),
            *self.options.shard.samples(),
        ]

    # --- on-demand probes ------------------------------------------------------------------
    def record_probe_request(self, result: ProbeRequestResult) -> None:
        self._probe_requests[result] += 1

    async def probe_once(self, target: TargetConfig) -> Snapshot:
        """One /probe request's probe, counted by its result."""
        async with self._probe_slots:
            snapshot = await on_demand.probe_once(target)
        self.record_probe_request("success" if snapshot.up else "failure")
        return snapshot

    # --- reloading -------------------------------------------------------------------------
    async def reload(self) -> str | None:
        """Reload the configuration files; the error message if that failed, else None."""
        async with self._reload_lock:
            try:
                config = load_config(self.options.config_file)
                web_config = load_web(self.options.web_config_file)
                self._check_tls_switch(web_config)
            except (ConfigError, WebConfigError) as exc:
                self.last_reload_ok = False
                for line in str(exc).splitlines():
                    log.error(
                        "reload failed, keeping the running configuration", extra={"err": line}
                    )
                return str(exc)
            tls = web_config.tls_server_config
            if tls is not None and self.ssl_context is not None:
                build_ssl_context(tls, self.ssl_context)
            self.guard.config = web_config
            # Retired targets' objects must be collectable again; settled anew below.
            gc.unfreeze()
            await self.probes.run(self.runtime.apply(assigned_targets(config, self.options.shard)))
            self._settle()
            self.config = config
            self.last_reload_ok = True
            self.last_reload_success = time.time()
            log.info("configuration reloaded", extra={"targets": len(self.runtime.runners)})
            return None

    def _check_tls_switch(self, web_config: WebConfig) -> None:
        if (web_config.tls_server_config is None) != (self.ssl_context is None):
            raise WebConfigError("TLS cannot be switched on or off by a reload: restart instead")
