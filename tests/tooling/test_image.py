"""The image: built from the Dockerfile with podman (scripts/image.py, no registry), then run as
the chart runs it: non-root, read-only root filesystem, no capabilities, a config and a web
config (TLS with relative certificate names, basic auth) mounted read-only; scraped as
Prometheus scrapes and probed as the kubelet probes. `make image-test` runs this file.
"""

from __future__ import annotations

import base64
import gzip
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import bcrypt
import pytest
import trustme
import yaml
from exporter_process import Scrape

import resilience_exporter
from scripts import image
from scripts.lock import pins
from scripts.testservers.base import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
USER, PASSWORD = "prometheus", "image-smoke-pass-7f1"


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[image.Podman, str]]:
    with image.podman_home() as podman:
        yield podman, image.build(podman)


@pytest.mark.slow
def test_oci_labels_are_complete(built: tuple[image.Podman, str]) -> None:
    podman, ref = built
    config = podman.inspect(ref)["Config"]
    assert isinstance(config, dict)
    labels = config["Labels"]
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "source", "revision", "created", "version",
                "licenses", "documentation", "url"):  # fmt: skip
        assert labels.get(prefix + key, "unknown") != "unknown", key
    assert labels[prefix + "version"] == resilience_exporter.__version__
    chart = yaml.safe_load((ROOT / "helm" / "resilience-exporter" / "Chart.yaml").read_text())
    assert chart["appVersion"] == labels[prefix + "version"], "one version for all three"
    assert labels[prefix + "revision"] == image.revision()
    datetime.strptime(labels[prefix + "created"], "%Y-%m-%dT%H:%M:%SZ")
    assert labels[prefix + "licenses"] == "Apache-2.0"
    assert labels[prefix + "source"].startswith("https://")
    assert config["User"] == "65532:65532"
    assert ref == f"{image.REPOSITORY}:{resilience_exporter.__version__}"


LOCKED_WITH_MARKERS = """\
# Exported from uv.lock; a comment; with a semicolon
async-timeout==5.0.1 ; python_full_version < '3.11.3' \\
    --hash=sha256:00
    # via redis
redis==8.2.0 \\
    --hash=sha256:01
tzdata==2026.6 ; sys_platform == 'win32' \\
    --hash=sha256:02
"""


def test_markers_are_decided_for_the_base_python_not_the_hosts() -> None:
    assert image.for_python(LOCKED_WITH_MARKERS, "3.11.2") == (
        "# Exported from uv.lock; a comment; with a semicolon\n"
        "async-timeout==5.0.1 \\\n    --hash=sha256:00\n    # via redis\n"
        "redis==8.2.0 \\\n    --hash=sha256:01\n"
    )
    assert "async-timeout" not in image.for_python(LOCKED_WITH_MARKERS, "3.11.7")


# Every distribution in the image's venv and its version, as `name==version` lines.
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m\n"
    "for d in m.distributions(): print(f\"{d.metadata['Name']}=={d.version}\")"
)


@pytest.mark.slow
def test_installs_the_locked_set(built: tuple[image.Podman, str]) -> None:
    podman, ref = built
    listed = podman.run(
        "run", "--rm", "--network=none", "--entrypoint=python3", ref, "-c", LIST_DISTRIBUTIONS
    )
    installed = pins(listed)
    assert installed.pop("resilience-exporter") == resilience_exporter.__version__
    locked = pins((ROOT / "requirements" / "runtime.txt").read_text())
    assert {name: locked.get(name) for name in installed} == installed, "only the lock's versions"
    for name in ("aiohttp", "redis", "psycopg", "psycopg-binary", "pydantic", "psutil"):
        assert name in installed, f"{name} is a runtime dependency"
    assert "hatchling" not in installed, "the build backend stays out of the image"


def fetch(url: str, *, auth: bool) -> tuple[int, bytes, dict[str, str]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Accept": SCRAPE_ACCEPT, "Accept-Encoding": "gzip"}
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@pytest.mark.slow
def test_runs_non_root_read_only_and_serves(
    built: tuple[image.Podman, str], tmp_path: Path
) -> None:
    podman, ref = built
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o755)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(etc / "tls.crt"))
    server.private_key_pem.write_to_path(str(etc / "tls.key"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (etc / "web.yml").write_text(
        "tls_server_config: {cert_file: tls.crt, key_file: tls.key}\n"
        f"basic_auth_users: {{{USER}: '{hashed}'}}\n"
    )
    (etc / "config.yml").write_text("host: {enabled: true}\n")
    for path in etc.iterdir():
        path.chmod(0o644)  # readable by the image's user 65532, like a Secret's defaultMode
    port = free_port()
    name = f"resilience-smoke-{port}"
    podman.run(
        "run", "--detach", "--name", name, "--network=host", "--read-only",
        "--cap-drop=ALL", "--security-opt=no-new-privileges",
        "-v", f"{etc}:/etc/resilience-exporter:ro", ref,
        "--config.file=/etc/resilience-exporter/config.yml",
        "--web.config.file=/etc/resilience-exporter/web.yml",
        f"--web.listen-address=127.0.0.1:{port}",
    )  # fmt: skip
    try:
        base = f"https://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return fetch(base + "/-/ready", auth=False)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=60, what="the container's /-/ready")
        assert fetch(base + "/metrics", auth=False)[0] == 401
        status, body, headers = fetch(base + "/metrics", auth=True)
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert headers.get("Content-Encoding") == "gzip"
        exposition = Scrape(gzip.decompress(body).decode().replace("# EOF\n", ""))
        assert exposition.has(
            "resilience_exporter_build_info", version=resilience_exporter.__version__
        )
        assert exposition.has("resilience_host_memory_total_bytes")

        assert podman.run("exec", name, "id", "-u").strip() == "65532"
        write = podman.call("exec", name, "sh", "-c", "echo x > /opt/probe-write")
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr
        state = podman.run("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name)
        assert state.strip() == "true"
        logs = podman.run("logs", name) + podman.call("logs", name).stderr
        assert PASSWORD not in logs
        assert hashed not in logs
    finally:
        podman.remove_container(name)
