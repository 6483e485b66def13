"""Host metrics from a node's /proc mounted elsewhere (the chart's hostMetrics.mode: node).

A pod has its own network namespace and mounts. The probe runs here in a network namespace of
its own (`unshare --net`, real kernel namespaces): by default it sees that namespace's devices
only, as a pod does; pointed at a procfs that is not /proc it reads PID 1's, the node's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resilience_exporter.configuration import loader as exporter_config
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.probes.host import HostConfig, read_net_dev

PROBE_ONCE = """
import asyncio, json, sys
from resilience_exporter.probes.host import HostConfig, HostProbe
config = HostConfig(**json.loads(sys.argv[1]))
samples = asyncio.run(HostProbe(config).probe())
print(json.dumps([[s.family.name, dict(s.labels), s.value] for s in samples]))
"""


def probe_in_own_netns(settings: dict[str, str]) -> list[tuple[str, dict[str, str], float]]:
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", PROBE_ONCE, json.dumps(settings)],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [(name, labels, value) for name, labels, value in json.loads(result.stdout)]


def devices(samples: list[tuple[str, dict[str, str], float]]) -> set[str]:
    return {labels["device"] for name, labels, _ in samples
            if name == "resilience_host_network_bytes_total"}  # fmt: skip


@pytest.fixture
def node_procfs(tmp_path: Path) -> Path:
    """/proc seen at another path, as a hostPath mount of the node's /proc is."""
    mounted = tmp_path / "host-proc"
    mounted.symlink_to("/proc")
    return mounted


@pytest.mark.slow
def test_a_pod_sees_its_own_network_and_the_node_mode_the_nodes(
    node_procfs: Path, tmp_path: Path
) -> None:
    exclude = HostConfig().network_devices_exclude
    node_devices = {d.name for d in read_net_dev(Path("/proc/1/net/dev"))}
    assert node_devices - {"lo"}, "the test needs a device besides lo"
    assert devices(probe_in_own_netns({})) == {"lo"}
    root = tmp_path / "host-root"
    root.symlink_to("/")
    in_node_mode = probe_in_own_netns({"procfs": str(node_procfs), "rootfs": str(root)})
    assert devices(in_node_mode) == {d for d in node_devices if not re.search(exclude, d)}
    filesystems = {labels["mountpoint"] for name, labels, _ in in_node_mode
                   if name == "resilience_host_filesystem_size_bytes"}  # fmt: skip
    assert "/" in filesystems, "mountpoints as the node names them, not under rootfs"
    cpus = [v for name, _, v in in_node_mode if name == "resilience_host_cpus"]
    assert cpus == [os.cpu_count()]


def test_a_path_that_is_not_a_procfs_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(f"host:\n  procfs: {tmp_path}\n  rootfs: {tmp_path}/missing\n")
    with pytest.raises(ConfigError) as raised:
        exporter_config.load(path)
    text = str(raised.value)
    assert f"{path}:2: host.procfs: {tmp_path} is not a procfs" in text
    assert f"{path}:3: host.rootfs: {tmp_path}/missing is not a directory" in text
