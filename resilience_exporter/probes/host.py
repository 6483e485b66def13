"""Host resources from psutil: CPU, memory, swap, filesystems, load, network, file descriptors.

Configured by the top-level `host:` block rather than the target list. Families carry no
`target` label: the host is the one the exporter runs on, and Prometheus' `instance` names it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import psutil
from pydantic import Field, field_validator

from resilience_exporter.classify import classify_builtin, unexplained
from resilience_exporter.config import TargetConfig
from resilience_exporter.families import Sample, family, sample
from resilience_exporter.reasons import Failure
from resilience_exporter.registry import KindSpec, register_kind

CPU_SECONDS = family(
    "resilience_host_cpu_seconds_total",
    "CPU time spent by all CPUs together, by mode.",
    "counter", ("mode",), group="host",
)  # fmt: skip
CPU_UTILISATION = family(
    "resilience_host_cpu_utilisation_ratio",
    "Share of all CPUs' time spent busy since the previous probe (0-1).",
    "gauge", (), group="host",
)  # fmt: skip
CPU_COUNT = family(
    "resilience_host_cpus", "Logical CPUs.", "gauge", (), group="host",
)  # fmt: skip
MEMORY_TOTAL = family(
    "resilience_host_memory_total_bytes", "Physical memory.", "gauge", (), group="host",
)  # fmt: skip
MEMORY_AVAILABLE = family(
    "resilience_host_memory_available_bytes",
    "Memory available to new processes without swapping.",
    "gauge", (), group="host",
)  # fmt: skip
SWAP_TOTAL = family(
    "resilience_host_swap_total_bytes", "Swap space.", "gauge", (), group="host",
)  # fmt: skip
SWAP_USED = family(
    "resilience_host_swap_used_bytes", "Swap space in use.", "gauge", (), group="host",
)  # fmt: skip
FS_SIZE = family(
    "resilience_host_filesystem_size_bytes",
    "Size of a mounted filesystem.",
    "gauge", ("device", "mountpoint", "fstype"), group="host",
)  # fmt: skip
FS_AVAILABLE = family(
    "resilience_host_filesystem_available_bytes",
    "Space available to unprivileged users on a mounted filesystem.",
    "gauge", ("device", "mountpoint", "fstype"), group="host",
)  # fmt: skip
LOAD = family(
    "resilience_host_load_average",
    "System load average over the window (1m, 5m, 15m).",
    "gauge", ("window",), group="host",
)  # fmt: skip
NET_BYTES = family(
    "resilience_host_network_bytes_total",
    "Bytes through a network interface, by direction (receive, transmit).",
    "counter", ("device", "direction"), group="host",
)  # fmt: skip
NET_ERRORS = family(
    "resilience_host_network_errors_total",
    "Errors on a network interface, by direction.",
    "counter", ("device", "direction"), group="host",
)  # fmt: skip
NET_DROPS = family(
    "resilience_host_network_drops_total",
    "Packets dropped on a network interface, by direction.",
    "counter", ("device", "direction"), group="host",
)  # fmt: skip
FDS_OPEN = family(
    "resilience_host_file_descriptors_open",
    "File descriptors allocated system-wide (Linux /proc/sys/fs/file-nr).",
    "gauge", (), group="host",
)  # fmt: skip
FDS_MAX = family(
    "resilience_host_file_descriptors_max",
    "System-wide file descriptor limit (Linux fs.file-max).",
    "gauge", (), group="host",
)  # fmt: skip
BOOT_TIME = family(
    "resilience_host_boot_time_seconds",
    "When the host booted, as a Unix timestamp.",
    "gauge", (), group="host",
)  # fmt: skip

# Filesystems with no storage of their own; psutil already drops most `nodev` ones.
PSEUDO_FSTYPES = frozenset(
    {"tmpfs", "devtmpfs", "proc", "sysfs", "cgroup", "cgroup2", "squashfs", "nsfs", "autofs",
     "devpts", "mqueue", "tracefs", "debugfs", "securityfs", "fusectl", "configfs", "ramfs",
     "binfmt_misc", "pstore", "bpf", "hugetlbfs", "rpc_pipefs", "overlay-ro", "iso9660"}
)  # fmt: skip
FILE_NR = Path("/proc/sys/fs/file-nr")


class HostConfig(TargetConfig):
    name: str = "host"
    kind: Literal["host"] = "host"
    enabled: bool = True
    # Bind mounts of single files (Docker's /etc/hosts) and system trees are not capacity.
    mountpoints_exclude: str = Field(default=r"^/(dev|proc|run|sys|etc)($|/)")
    network_devices_exclude: str = Field(default=r"^(veth|docker|br-|cali|flannel|cni)")

    @field_validator("mountpoints_exclude", "network_devices_exclude")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def describe(self) -> str:
        return f"host {os.uname().nodename}"


def _read_file_nr() -> tuple[int, int] | None:
    try:
        allocated, _free, maximum = FILE_NR.read_text().split()
    except (OSError, ValueError):
        return None
    return int(allocated), int(maximum)


class HostProbe:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self._mount_exclude = re.compile(config.mountpoints_exclude)
        self._net_exclude = re.compile(config.network_devices_exclude)
        psutil.cpu_percent(interval=None)  # primes the "since last call" measurement

    async def open(self) -> None:
        return None

    async def probe(self) -> Sequence[Sample]:
        # psutil reads /proc synchronously; a hung NFS mount must not block the event loop.
        return await asyncio.to_thread(self._collect)

    def _collect(self) -> list[Sample]:
        cpu = psutil.cpu_times()
        out = [
            sample(CPU_SECONDS, value, mode=mode) for mode, value in cpu._asdict().items()
            if mode not in ("guest", "guest_nice")  # already counted in user and nice
        ]  # fmt: skip
        out.append(sample(CPU_UTILISATION, psutil.cpu_percent(interval=None) / 100.0))
        out.append(sample(CPU_COUNT, psutil.cpu_count() or 0))
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        out += [
            sample(MEMORY_TOTAL, memory.total),
            sample(MEMORY_AVAILABLE, memory.available),
            sample(SWAP_TOTAL, swap.total),
            sample(SWAP_USED, swap.used),
            sample(BOOT_TIME, psutil.boot_time()),
        ]
        out += self._filesystems()
        for window, value in zip(("1m", "5m", "15m"), os.getloadavg(), strict=True):
            out.append(sample(LOAD, value, window=window))
        for device, counters in sorted(psutil.net_io_counters(pernic=True).items()):
            if self._net_exclude.search(device):
                continue
            for direction, nbytes, errors, drops in (
                ("receive", counters.bytes_recv, counters.errin, counters.dropin),
                ("transmit", counters.bytes_sent, counters.errout, counters.dropout),
            ):
                out.append(sample(NET_BYTES, nbytes, device=device, direction=direction))
                out.append(sample(NET_ERRORS, errors, device=device, direction=direction))
                out.append(sample(NET_DROPS, drops, device=device, direction=direction))
        file_nr = _read_file_nr() if sys.platform == "linux" else None
        if file_nr is not None:
            out.append(sample(FDS_OPEN, file_nr[0]))
            out.append(sample(FDS_MAX, file_nr[1]))
        return out

    def _filesystems(self) -> list[Sample]:
        out: list[Sample] = []
        seen: set[str] = set()
        for part in psutil.disk_partitions(all=False):
            if part.fstype in PSEUDO_FSTYPES or self._mount_exclude.search(part.mountpoint):
                continue
            if part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            labels = {"device": part.device, "mountpoint": part.mountpoint, "fstype": part.fstype}
            out.append(sample(FS_SIZE, usage.total, **labels))
            out.append(sample(FS_AVAILABLE, usage.free, **labels))
        return out

    def local_samples(self) -> Sequence[Sample]:
        return ()

    def classify(self, exc: BaseException) -> Failure:
        return classify_builtin(exc) or unexplained(exc)

    async def close(self) -> None:
        return None


def _create(config: HostConfig) -> HostProbe:
    return HostProbe(config)


register_kind(KindSpec(kind="host", config_model=HostConfig, create=_create, listed=False))
