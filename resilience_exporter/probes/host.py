"""Host resources: CPU, memory, swap, filesystems, load, network, file descriptors.

Configured by the top-level `host:` block rather than the target list. Families carry no
`target` label: the host is the one the exporter runs on, and Prometheus' `instance` names it.

CPU, memory, swap, load, boot time and file descriptors are kernel-wide, so a container sees
its node's. Network devices and filesystems belong to a namespace: they are read from
`<procfs>/self/` (the exporter's own namespaces), or, when `procfs` is a node's /proc mounted
into a pod (e.g. /host/proc), from `<procfs>/1/` (the node's init process: the node's network
namespace and mounts), the filesystems' space measured under `rootfs` (the node's / mounted
into the pod, e.g. /host/root), as node_exporter does with --path.procfs / --path.rootfs.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
from pydantic import Field, field_validator

from resilience_exporter.classify import classify_builtin, unexplained
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.probing.registry import KindSpec, register_kind
from resilience_exporter.reasons import Failure

CPU_SECONDS = family(
    "resilience_host_cpu_seconds_total",
    "CPU time spent by all CPUs together, by mode.",
    "counter",
    ("mode",),
    group="host",
)
CPU_UTILISATION = family(
    "resilience_host_cpu_utilisation_ratio",
    "Share of all CPUs' time spent busy since the previous probe (0-1).",
    "gauge",
    (),
    group="host",
)
CPU_COUNT = family(
    "resilience_host_cpus",
    "Logical CPUs.",
    "gauge",
    (),
    group="host",
)
MEMORY_TOTAL = family(
    "resilience_host_memory_total_bytes",
    "Physical memory.",
    "gauge",
    (),
    group="host",
)
MEMORY_AVAILABLE = family(
    "resilience_host_memory_available_bytes",
    "Memory available to new processes without swapping.",
    "gauge",
    (),
    group="host",
)
SWAP_TOTAL = family(
    "resilience_host_swap_total_bytes",
    "Swap space.",
    "gauge",
    (),
    group="host",
)
SWAP_USED = family(
    "resilience_host_swap_used_bytes",
    "Swap space in use.",
    "gauge",
    (),
    group="host",
)
FS_SIZE = family(
    "resilience_host_filesystem_size_bytes",
    "Size of a mounted filesystem.",
    "gauge",
    ("device", "mountpoint", "fstype"),
    group="host",
)
FS_AVAILABLE = family(
    "resilience_host_filesystem_available_bytes",
    "Space available to unprivileged users on a mounted filesystem.",
    "gauge",
    ("device", "mountpoint", "fstype"),
    group="host",
)
LOAD = family(
    "resilience_host_load_average",
    "System load average over the window (1m, 5m, 15m).",
    "gauge",
    ("window",),
    group="host",
)
NET_BYTES = family(
    "resilience_host_network_bytes_total",
    "Bytes through a network interface, by direction (receive, transmit).",
    "counter",
    ("device", "direction"),
    group="host",
)
NET_ERRORS = family(
    "resilience_host_network_errors_total",
    "Errors on a network interface, by direction.",
    "counter",
    ("device", "direction"),
    group="host",
)
NET_DROPS = family(
    "resilience_host_network_drops_total",
    "Packets dropped on a network interface, by direction.",
    "counter",
    ("device", "direction"),
    group="host",
)
FDS_OPEN = family(
    "resilience_host_file_descriptors_open",
    "File descriptors allocated system-wide (Linux /proc/sys/fs/file-nr).",
    "gauge",
    (),
    group="host",
)
FDS_MAX = family(
    "resilience_host_file_descriptors_max",
    "System-wide file descriptor limit (Linux fs.file-max).",
    "gauge",
    (),
    group="host",
)
BOOT_TIME = family(
    "resilience_host_boot_time_seconds",
    "When the host booted, as a Unix timestamp.",
    "gauge",
    (),
    group="host",
)

# Filesystems with no storage of their own; psutil already drops most `nodev` ones.
PSEUDO_FSTYPES = frozenset(
    {
        "tmpfs",
        "devtmpfs",
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "squashfs",
        "nsfs",
        "autofs",
        "devpts",
        "mqueue",
        "tracefs",
        "debugfs",
        "securityfs",
        "fusectl",
        "configfs",
        "ramfs",
        "binfmt_misc",
        "pstore",
        "bpf",
        "hugetlbfs",
        "rpc_pipefs",
        "overlay-ro",
        "iso9660",
    }
)
DEFAULT_PROCFS = Path("/proc")


class HostConfig(TargetConfig):
    name: str = "host"
    kind: Literal["host"] = "host"
    enabled: bool = True
    # Bind mounts of single files (Docker's /etc/hosts) and system trees are not capacity.
    mountpoints_exclude: str = Field(default=r"^/(dev|proc|run|sys|etc)($|/)")
    network_devices_exclude: str = Field(default=r"^(veth|docker|br-|cali|flannel|cni)")
    # A node's /proc and / mounted into a pod (the Helm chart's hostMetrics.mode: node).
    procfs: Path = DEFAULT_PROCFS
    rootfs: Path = Path("/")

    @field_validator("procfs")
    @classmethod
    def _readable_procfs(cls, value: Path) -> Path:
        if not (value / "stat").is_file():
            raise ValueError(f"{value} is not a procfs: {value / 'stat'} cannot be read")
        return value

    @field_validator("rootfs")
    @classmethod
    def _a_directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @property
    def namespace_dir(self) -> Path:
        """Where the network devices and mounts to report are: the exporter's own, or the
        node's init process's when procfs is a node's /proc mounted elsewhere."""
        return self.procfs / ("self" if self.procfs == DEFAULT_PROCFS else "1")

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


def _read_file_nr(procfs: Path) -> tuple[int, int] | None:
    try:
        allocated, _free, maximum = (procfs / "sys/fs/file-nr").read_text().split()
    except (OSError, ValueError):
        return None
    return int(allocated), int(maximum)


@dataclass(frozen=True, slots=True)
class NetDevice:
    name: str
    bytes_received: int
    errors_received: int
    drops_received: int
    bytes_sent: int
    errors_sent: int
    drops_sent: int


def read_net_dev(path: Path) -> list[NetDevice]:
    """/proc/<pid>/net/dev: the counters of the devices of that process's network namespace."""
    devices = []
    for line in path.read_text().splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = [int(v) for v in counters.split()]
        # receive: bytes packets errs drop fifo frame compressed multicast; transmit: the same
        devices.append(
            NetDevice(
                name.strip(), fields[0], fields[2], fields[3], fields[8], fields[10], fields[11]
            )
        )
    return devices


@dataclass(frozen=True, slots=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str


def _unescape(field: str) -> str:
    """Mount tables escape spaces, tabs, newlines and backslashes as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(procfs: Path, namespace_dir: Path) -> list[Mount]:
    """The mounts of `namespace_dir`'s process that are backed by a device (what psutil's
    disk_partitions(all=False) keeps: file systems not marked nodev in /proc/filesystems)."""
    nodev = {
        line.split()[-1]
        for line in (procfs / "filesystems").read_text().splitlines()
        if line.startswith("nodev")
    }
    mounts = []
    for line in (namespace_dir / "mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] not in nodev:
            mounts.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    return mounts


class HostProbe:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self._mount_exclude = re.compile(config.mountpoints_exclude)
        self._net_exclude = re.compile(config.network_devices_exclude)
        # psutil reads every kernel-wide number below from here (one host probe per process).
        psutil.PROCFS_PATH = str(config.procfs)
        psutil.cpu_percent(interval=None)  # primes the "since last call" measurement

    async def open(self) -> None:
        return None

    async def probe(self) -> Sequence[Sample]:
        # psutil reads /proc synchronously; a hung NFS mount must not block the event loop.
        return await asyncio.to_thread(self._collect)

    def _collect(self) -> list[Sample]:
        cpu = psutil.cpu_times()
        out = [
            sample(CPU_SECONDS, value, mode=mode)
            for mode, value in cpu._asdict().items()
            if mode not in ("guest", "guest_nice")  # already counted in user and nice
        ]
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
        for dev in sorted(read_net_dev(self.config.namespace_dir / "net/dev"), key=_name):
            if self._net_exclude.search(dev.name):
                continue
            for direction, nbytes, errors, drops in (
                ("receive", dev.bytes_received, dev.errors_received, dev.drops_received),
                ("transmit", dev.bytes_sent, dev.errors_sent, dev.drops_sent),
            ):
                out.append(sample(NET_BYTES, nbytes, device=dev.name, direction=direction))
                out.append(sample(NET_ERRORS, errors, device=dev.name, direction=direction))
                out.append(sample(NET_DROPS, drops, device=dev.name, direction=direction))
        file_nr = _read_file_nr(self.config.procfs) if sys.platform == "linux" else None
        if file_nr is not None:
            out.append(sample(FDS_OPEN, file_nr[0]))
            out.append(sample(FDS_MAX, file_nr[1]))
        return out

    def _filesystems(self) -> list[Sample]:
        out: list[Sample] = []
        seen: set[str] = set()
        for mount in read_mounts(self.config.procfs, self.config.namespace_dir):
            if mount.fstype in PSEUDO_FSTYPES or self._mount_exclude.search(mount.mountpoint):
                continue
            if mount.mountpoint in seen:
                continue
            seen.add(mount.mountpoint)
            try:
                stat = os.statvfs(self.config.rootfs / mount.mountpoint.lstrip("/"))
            except OSError:
                continue
            labels = {
                "device": mount.device,
                "mountpoint": mount.mountpoint,
                "fstype": mount.fstype,
            }
            out.append(sample(FS_SIZE, stat.f_blocks * stat.f_frsize, **labels))
            out.append(sample(FS_AVAILABLE, stat.f_bavail * stat.f_frsize, **labels))
        return out

    def local_samples(self) -> Sequence[Sample]:
        return ()

    def classify(self, exc: BaseException) -> Failure:
        return classify_builtin(exc) or unexplained(exc)

    async def close(self) -> None:
        return None


def _name(device: NetDevice) -> str:
    return device.name


def _create(config: HostConfig) -> HostProbe:
    return HostProbe(config)


register_kind(KindSpec(kind="host", config_model=HostConfig, create=_create, listed=False))
