"""The exporter's own process, under the names every Prometheus client library uses
(`process_*`, `python_info`), so that the usual dashboards and alerts work on it."""

from __future__ import annotations

import platform
import resource

import psutil

from resilience_exporter.metrics.families import Sample, family, sample

CPU_SECONDS = family(
    "process_cpu_seconds_total",
    "CPU time the exporter's process spent, user and system, in seconds.",
    "counter",
    (),
    group="exporter",
)
OPEN_FDS = family(
    "process_open_fds",
    "File descriptors the exporter's process holds open.",
    "gauge",
    (),
    group="exporter",
)
MAX_FDS = family(
    "process_max_fds",
    "The exporter's process' limit of open file descriptors (soft RLIMIT_NOFILE).",
    "gauge",
    (),
    group="exporter",
)
VIRTUAL_MEMORY = family(
    "process_virtual_memory_bytes",
    "The exporter's process' virtual memory size.",
    "gauge",
    (),
    group="exporter",
)
RESIDENT_MEMORY = family(
    "process_resident_memory_bytes",
    "The exporter's process' resident memory size.",
    "gauge",
    (),
    group="exporter",
)
START_TIME = family(
    "process_start_time_seconds",
    "When the exporter's process started, as a Unix timestamp.",
    "gauge",
    (),
    group="exporter",
)
PYTHON_INFO = family(
    "python_info",
    "Always 1; labels tell the Python the exporter runs on.",
    "gauge",
    ("implementation", "major", "minor", "patchlevel", "version"),
    group="exporter",
)


class ProcessStats:
    """Reads the process' own figures at each call (a scrape's worth of system calls)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        major, minor, patchlevel = platform.python_version_tuple()
        self._python = sample(
            PYTHON_INFO,
            1.0,
            implementation=platform.python_implementation(),
            major=major,
            minor=minor,
            patchlevel=patchlevel,
            version=platform.python_version(),
        )
        self._start = sample(START_TIME, self._process.create_time())

    def samples(self) -> list[Sample]:
        process = self._process
        with process.oneshot():
            cpu = process.cpu_times()
            memory = process.memory_info()
            fds = process.num_fds()
        return [
            sample(CPU_SECONDS, cpu.user + cpu.system),
            sample(OPEN_FDS, fds),
            sample(MAX_FDS, resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
            sample(VIRTUAL_MEMORY, memory.vms),
            sample(RESIDENT_MEMORY, memory.rss),
            self._start,
            self._python,
        ]
