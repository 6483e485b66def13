"""Command line, in the style of the prometheus-community exporters.

Every flag can also be set through `RESILIENCE_EXPORTER_<FLAG>`, with the flag's dots and dashes
turned into underscores (`--web.listen-address` → `RESILIENCE_EXPORTER_WEB_LISTEN_ADDRESS`).
The command line wins over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiohttp import web

import resilience_exporter
from resilience_exporter import logs
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.probing import sharding
from resilience_exporter.web.app import WebState, make_app
from resilience_exporter.web.service import Service, ServiceOptions, load_config, load_web
from resilience_exporter.web.tls import WebConfigError

log = logging.getLogger("resilience_exporter")
ENV_PREFIX = "RESILIENCE_EXPORTER_"
EXIT_CONFIG = 2


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilience-exporter",
        description="Probes connection pools, circuit breakers and hosts for Prometheus.",
        epilog=f"Each flag can also be set as {ENV_PREFIX}<FLAG>, "
        "e.g. RESILIENCE_EXPORTER_WEB_LISTEN_ADDRESS.",
    )

    def flag(name: str, default: str | None, help: str, **kwargs: object) -> None:
        value = env.get(env_name(name), default)
        parser.add_argument(name, default=value, help=f"{help} (env {env_name(name)})", **kwargs)  # type: ignore[arg-type]

    flag(
        "--config.file",
        None,
        "YAML configuration; without it, host metrics plus the "
        "targets named by DATABASE_URL / REDIS_URL",
        metavar="PATH",
    )
    flag("--web.listen-address", ":9864", "address to listen on", metavar="[HOST]:PORT")
    flag("--web.telemetry-path", "/metrics", "path under which to expose metrics", metavar="PATH")
    flag(
        "--log.level",
        "info",
        "only log messages with this severity or above",
        choices=logs.LOG_LEVELS,
    )
    flag("--log.format", "logfmt", "log format", choices=("logfmt", "json"))
    flag(
        "--web.config.file",
        None,
        "exporter-toolkit web config: TLS, basic auth, headers, rate limit",
        metavar="PATH",
    )
    lifecycle = env.get(env_name("--web.enable-lifecycle"), "").lower() in ("1", "true", "yes")
    parser.add_argument(
        "--web.enable-lifecycle",
        action="store_true",
        default=lifecycle,
        help="enable POST /-/reload (env RESILIENCE_EXPORTER_WEB_ENABLE_LIFECYCLE=true)",
    )
    flag("--shard.index", "0", "probe only the targets of this shard (0-based)", metavar="I")
    flag("--shard.count", "1", "number of shards the targets are spread over", metavar="N")
    parser.add_argument(
        "--config.check",
        action="store_true",
        help="validate the configuration, print the targets and exit",
    )
    parser.add_argument("--version", action="version", version=version_text())
    return parser


def version_text() -> str:
    return (
        f"resilience-exporter {resilience_exporter.__version__} (python {sys.version.split()[0]})"
    )


def parse_listen_address(address: str) -> tuple[str | None, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r}: expected [HOST]:PORT, e.g. :9864 or 127.0.0.1:9864")
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), int(port)


async def serve(service: Service, host: str | None, port: int, path: str) -> int:
    app = make_app(WebState(service=service, telemetry_path=path))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, host=host, port=port, shutdown_timeout=2.0, ssl_context=service.ssl_context
    )
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen", extra={"address": f"{host or ''}:{port}", "err": exc.strerror})
        await runner.cleanup()
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[str | None]] = set()

    def reload_on_sighup() -> None:
        task = loop.create_task(service.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_sighup)
    log.info(
        "listening",
        extra={
            "address": f"{host or ''}:{port}",
            "tls": service.ssl_context is not None,
            "config": service.config.source,
            "targets": len(service.runtime.runners),
            "version": resilience_exporter.__version__,
        },
    )
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    return 0


def _return_large_buffers_to_the_system() -> None:
    """glibc serves big allocations from its heap once a big one was freed (its mmap
    threshold moves up): the exposition's buffers, some MB each and made again at every
    build, would then stay in the process' memory. A fixed threshold keeps them mmapped and
    returned when freed. Elsewhere than glibc this does nothing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 256 * 1024)
    # One heap for every thread: the probes' loop writes the snapshots that the web loop and
    # the builder free; with a heap per thread (glibc's default) a 2,000-target fleet held
    # ~20 MiB more (bench/fleet.py). The GIL serialises the allocations anyway.
    m_arena_max = -8
    libc.mallopt(m_arena_max, 1)


def main(argv: Sequence[str] | None = None) -> int:
    _return_large_buffers_to_the_system()
    # The probes run on a loop of their own and the exposition is built in a worker thread; a
    # shorter GIL switch interval than the 5 ms default bounds how long a scrape waits for them.
    sys.setswitchinterval(0.001)
    args = build_parser(os.environ).parse_args(argv)
    options = vars(args)
    logs.setup(options["log.level"], options["log.format"])
    try:
        host, port = parse_listen_address(options["web.listen_address"])
    except ValueError as exc:
        log.error("invalid --web.listen-address", extra={"err": str(exc)})
        return EXIT_CONFIG
    path = options["web.telemetry_path"]
    try:
        shard = sharding.Shard.parse(index=options["shard.index"], count=options["shard.count"])
    except sharding.ShardError as exc:
        log.error("invalid shard flags", extra={"err": str(exc)})
        return EXIT_CONFIG
    if not path.startswith("/"):
        log.error("invalid --web.telemetry-path", extra={"err": "must start with /"})
        return EXIT_CONFIG
    service_options = ServiceOptions(
        config_file=_path(options["config.file"]),
        web_config_file=_path(options["web.config.file"]),
        enable_lifecycle=options["web.enable_lifecycle"],
        shard=shard,
    )
    try:
        config = load_config(service_options.config_file)
        web_config = load_web(service_options.web_config_file)
    except WebConfigError as exc:
        log.error("invalid web configuration", extra={"err": str(exc)})
        return EXIT_CONFIG
    except ConfigError as exc:
        for issue in exc.issues:
            log.error(
                "invalid configuration",
                extra={
                    "file": issue.file,
                    "line": issue.line,
                    "key": issue.key,
                    "err": issue.message,
                    "where": str(issue),
                },
            )
        return EXIT_CONFIG
    if options["config.check"]:
        for target in sharding.assigned_targets(config, shard):
            print(f"{target.name}\t{target.describe()}")
        return 0

    async def run() -> int:
        return await serve(Service(service_options, config, web_config), host, port, path)

    return asyncio.run(run())


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


if __name__ == "__main__":
    sys.exit(main())
