"""Kubernetes liveness and readiness probes in every web config mode.

For each mode the chart is rendered (real Helm engine) with the mode's values, and the
exporter runs with a matching web config; then the rendered probes are executed exactly as the
kubelet does: an HTTP(S) GET with no credentials, `User-Agent: kube-probe/<version>`, HTTPS
without verifying the certificate, success for 200-399; or a bare TCP connect.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import helm_python
import pytest
from chart_support import CHART, KUBE_VERSION, container, one, render
from conftest import Pki
from exporter_process import ExporterProcess

from scripts.testservers.base import wait_until

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

USER, PASSWORD = "prometheus", "probe-mode-pass-5c2"


@dataclass(frozen=True)
class Mode:
    name: str
    values: Mapping[str, Any]
    web_config: str  # with {dir}: the directory of the certificates
    needs_client_cert: bool = False  # a scrape without a client certificate fails


WEB = {"enabled": True, "existingSecret": "resilience-exporter-web-config"}
TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
MODES = [
    Mode("plain", {}, ""),
    Mode("basic-auth", {"webConfig": {**WEB}}, "basic_auth_users:\n  {user}: {hash}\n"),
    Mode("tls", {"webConfig": {**WEB, "tls": True}}, TLS),
    Mode(
        "tls-basic-auth-optional-client-cert-sans",
        {"webConfig": {**WEB, "tls": True}},
        TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
        "  client_allowed_sans: [scraper.example]\n"
        "basic_auth_users:\n  {user}: {hash}\n",
    ),
    Mode(
        "mtls-verified",
        {"webConfig": {**WEB, "tls": True, "requireClientCert": True}},
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        needs_client_cert=True,
    ),
    Mode(
        "mtls-any-certificate",
        {"webConfig": {**WEB, "tls": True, "requireClientCert": True}},
        TLS + "  client_auth_type: RequireAnyClientCert\n",
        needs_client_cert=True,
    ),
]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def kubelet_probe(probe: Mapping[str, Any], port: int) -> bool:
    """One probe as the kubelet runs it (pkg/probe/http and pkg/probe/tcp)."""
    assert probe["timeoutSeconds"] > 0
    if "tcpSocket" in probe:
        assert probe["tcpSocket"]["port"] == "http"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=probe["timeoutSeconds"]).close()
        except OSError:
            return False
        return True
    action = probe["httpGet"]
    assert action["port"] == "http"
    conn: http.client.HTTPConnection
    if action.get("scheme", "HTTP") == "HTTPS":
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=probe["timeoutSeconds"], context=insecure
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=probe["timeoutSeconds"])
    major, minor, _ = KUBE_VERSION.split(".")
    headers = {"User-Agent": f"kube-probe/{major}.{minor}", "Accept": "*/*"}
    try:
        conn.request("GET", action["path"], headers=headers)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return 200 <= status < 400


def scrape_without_credentials(exporter: ExporterProcess, *, tls: bool) -> int | None:
    """What an anonymous client gets from /metrics: a status, or None if the handshake fails."""
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    conn = (
        http.client.HTTPSConnection("127.0.0.1", exporter.port, timeout=5, context=context)
        if tls
        else http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=5)
    )
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_probes_pass_in_every_web_config_mode(
    chart: helm_python.Chart, pki: Pki, workdir: Path, mode: Mode
) -> None:
    exp = container(one(render(chart, mode.values), "Deployment"))
    liveness, readiness = exp["livenessProbe"], exp["readinessProbe"]
    web_enabled = bool(mode.values.get("webConfig", {}).get("enabled"))
    assert ("--web.config.file=/etc/resilience-exporter/web/web-config.yml" in exp["args"]) is (
        web_enabled
    )
    if mode.needs_client_cert:
        assert "tcpSocket" in liveness
        assert "tcpSocket" in readiness
    else:
        assert liveness["httpGet"]["path"] == "/-/healthy"
        assert readiness["httpGet"]["path"] == "/-/ready"

    args = []
    if mode.web_config:
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        web = pki.ca_file.parent / f"web-{mode.name}.yml"  # relative names resolve beside it
        web.write_text(mode.web_config.format(user=USER, hash=hashed))
        args.append(f"--web.config.file={web}")
    tls = "tls_server_config" in mode.web_config
    exporter = ExporterProcess(workdir, config="host: {enabled: false}\n", args=args)
    try:
        exporter.start(wait_healthy=False).wait_listening()
        wait_until(lambda: kubelet_probe(readiness, exporter.port), timeout=30, what="readiness")
        assert kubelet_probe(liveness, exporter.port)
        anonymous = scrape_without_credentials(exporter, tls=tls)
    finally:
        exporter.stop()
    if mode.needs_client_cert:
        assert anonymous is None, "the handshake must fail without a client certificate"
    elif mode.web_config and "basic_auth_users" in mode.web_config:
        assert anonymous in (401, 403), "the metrics stay protected"
    else:
        assert anonymous == 200


def test_an_http_probe_could_not_pass_when_a_client_certificate_is_required(
    pki: Pki, workdir: Path
) -> None:
    """Why the chart switches to tcpSocket: the kubelet has no certificate to present."""
    web = pki.ca_file.parent / "web-required.yml"
    web.write_text(TLS + "  client_auth_type: RequireAnyClientCert\n")
    exporter = ExporterProcess(
        workdir, config="host: {enabled: false}\n", args=[f"--web.config.file={web}"]
    )
    try:
        exporter.start(wait_healthy=False).wait_listening()
        for path in ("/-/healthy", "/-/ready"):
            probe = {"httpGet": {"path": path, "port": "http", "scheme": "HTTPS"},
                     "timeoutSeconds": 5}  # fmt: skip
            assert not kubelet_probe(probe, exporter.port)
    finally:
        exporter.stop()
