"""Resilience / Host: CPU, memory, filesystems, network and file descriptors of the host
the exporter runs on."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from grafana.boards._common import TARGET, rate, sel
from grafana.spec import Dashboard, Panel, Query, Row, Threshold


def dashboard(thresholds: Thresholds) -> Dashboard:
    s = sel()
    filling = thresholds.alerts["ResilienceHostDiskFillingUp"]
    return Dashboard(
        uid="resilience-host",
        title="Resilience / Host",
        file_name="host.json",
        description="The host the exporter runs on: CPU, memory, filesystems, network, file "
        "descriptors.",
        target_selector="resilience_up" + sel(),
        rows=(
            Row(
                title="CPU and load",
                panels=(
                    Panel(
                        title="Uptime",
                        kind="stat",
                        queries=(
                            Query(
                                expr=f"time() - resilience_host_boot_time_seconds{s}",
                                legend="{{instance}}",
                            ),
                        ),
                        unit="s",
                        description="Time since the host booted.",
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="CPUs",
                        kind="stat",
                        queries=(Query(expr=f"resilience_host_cpus{s}", legend="{{instance}}"),),
                        unit="short",
                        description="Logical CPUs.",
                        width=6,
                        height=5,
                    ),
                    Panel(
                        title="Probe latency p95 of the targets probed from here",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="target:resilience_probe_duration_seconds:p95_rate5m"
                                f"{sel(TARGET)}",
                                legend="{{target}}",
                            ),
                        ),
                        unit="s",
                        description="A busy host slows every probe: compare with CPU and load.",
                        threshold=Threshold(alert="ResilienceProbeLatencyHigh", key="seconds"),
                        height=5,
                    ),
                    Panel(
                        title="CPU busy",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_cpu_utilisation_ratio{s}",
                                legend="{{instance}}",
                            ),
                            Query(
                                expr=f"instance:resilience_host_cpu_utilisation:avg5m{s}",
                                legend="{{instance}} 5m average",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of all CPUs' time spent busy.",
                        threshold=Threshold(alert="ResilienceHostCpuHigh", key="ratio"),
                        width=8,
                    ),
                    Panel(
                        title="CPU time by mode",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (instance, mode) "
                                f"({rate('resilience_host_cpu_seconds_total' + s)})",
                                legend="{{instance}} {{mode}}",
                            ),
                        ),
                        unit="short",
                        stacked=True,
                        description="CPU-seconds per second by mode (1 = one CPU fully used).",
                        width=8,
                    ),
                    Panel(
                        title="Load average",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_load_average{s}",
                                legend="{{instance}} {{window}}",
                            ),
                            Query(expr=f"resilience_host_cpus{s}", legend="{{instance}} CPUs"),
                        ),
                        unit="short",
                        description="Load averages against the number of CPUs.",
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Memory and file descriptors",
                panels=(
                    Panel(
                        title="Memory available",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"instance:resilience_host_memory_available:ratio{s}",
                                legend="{{instance}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of memory available without swapping.",
                        threshold=Threshold(
                            alert="ResilienceHostMemoryLow",
                            key="available_ratio",
                            direction="below",
                        ),
                        width=8,
                    ),
                    Panel(
                        title="Memory and swap",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_memory_total_bytes{s}",
                                legend="{{instance}} memory total",
                            ),
                            Query(
                                expr=f"resilience_host_memory_available_bytes{s}",
                                legend="{{instance}} memory available",
                            ),
                            Query(
                                expr=f"resilience_host_swap_used_bytes{s}",
                                legend="{{instance}} swap used",
                            ),
                            Query(
                                expr=f"resilience_host_swap_total_bytes{s}",
                                legend="{{instance}} swap total",
                            ),
                        ),
                        unit="bytes",
                        description="Physical memory and swap.",
                        width=8,
                    ),
                    Panel(
                        title="File descriptors used",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"instance:resilience_host_file_descriptors:ratio{s}",
                                legend="{{instance}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="File descriptors allocated against fs.file-max.",
                        threshold=Threshold(
                            alert="ResilienceHostFileDescriptorsNearMax", key="ratio"
                        ),
                        width=8,
                    ),
                ),
            ),
            Row(
                title="Filesystems",
                panels=(
                    Panel(
                        title="Filesystem space available",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"instance:resilience_host_filesystem_available:ratio{s}",
                                legend="{{instance}} {{mountpoint}}",
                            ),
                        ),
                        unit="percentunit",
                        minimum=0,
                        maximum=1,
                        description="Share of each filesystem available to unprivileged users.",
                        threshold=Threshold(
                            alert="ResilienceHostDiskSpaceLow",
                            key="available_ratio",
                            direction="below",
                        ),
                    ),
                    Panel(
                        title="Filesystem space, now and predicted",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr=f"resilience_host_filesystem_available_bytes{s}",
                                legend="{{instance}} {{mountpoint}} available",
                            ),
                            Query(
                                expr="predict_linear(resilience_host_filesystem_available_bytes"
                                f"{s}[{filling['lookback']}], {filling['horizon_seconds']})",
                                legend="{{instance}} {{mountpoint}} predicted",
                            ),
                        ),
                        unit="bytes",
                        description="Space available now and where the trend of the "
                        "ResilienceHostDiskFillingUp alert's lookback puts it at its horizon.",
                        alerts=("ResilienceHostDiskFillingUp",),
                    ),
                ),
            ),
            Row(
                title="Network",
                panels=(
                    Panel(
                        title="Network traffic",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (instance, device, direction) "
                                f"({rate('resilience_host_network_bytes_total' + s)})",
                                legend="{{instance}} {{device}} {{direction}}",
                            ),
                        ),
                        unit="Bps",
                        description="Bytes per second through each interface.",
                    ),
                    Panel(
                        title="Network errors and drops",
                        kind="timeseries",
                        queries=(
                            Query(
                                expr="sum by (instance, device, direction) "
                                f"({rate('resilience_host_network_errors_total' + s)})",
                                legend="{{instance}} {{device}} {{direction}} errors",
                            ),
                            Query(
                                expr="sum by (instance, device, direction) "
                                f"({rate('resilience_host_network_drops_total' + s)})",
                                legend="{{instance}} {{device}} {{direction}} drops",
                            ),
                        ),
                        unit="pps",
                        description="Interface errors and dropped packets per second.",
                    ),
                ),
            ),
        ),
    )
