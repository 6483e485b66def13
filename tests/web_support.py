"""What the web config tests share: the exporter started with one web config, and requests
made as exporter-toolkit's Go tests make them (its TLS client, cipher suites, curves, TLS
versions, basic auth)."""

from __future__ import annotations

import base64
import http.client
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter_process import ExporterProcess
from toolkit_cases import TESTDATA, ToolkitCase

from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.web.tls import WebConfigError
from resilience_exporter.web.webconfig import load_web_config

# Go's names of cipher suites and curves, as OpenSSL calls them.
OPENSSL_CIPHERS: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}


OPENSSL_CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
}  # fmt: skip


TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "VersionTLS10": ssl.TLSVersion.TLSv1,
    "VersionTLS11": ssl.TLSVersion.TLSv1_1,
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
}


@dataclass
class Answer:
    status: int
    body: str
    headers: Mapping[str, str]
    cipher: str | None


def load_error(path: Path) -> str | None:
    try:
        load_web_config(path)
    except (ConfigError, WebConfigError) as exc:
        return str(exc)
    return None


def start_exporter(workdir: Path, web_config: Path | None) -> ExporterProcess:
    """The real exporter with one web config, waited for by TCP connect (a client
    certificate may be needed for anything more)."""
    args = [f"--web.config.file={web_config}"] if web_config is not None else []
    exporter = ExporterProcess(workdir, config="host: {enabled: false}\n", args=args)
    return exporter.start(wait_healthy=False).wait_listening()


def client_context(case: ToolkitCase, testdata: Path = TESTDATA) -> ssl.SSLContext:
    """The Go test's getTLSClient. It verifies the server against tls-ca-chain.pem; OpenSSL
    3.0 refuses that chain for any client (its CAs carry only anyExtendedKeyUsage, which Go
    accepts and OpenSSL 3.0 does not), so the chain is checked once by
    test_the_served_certificate_verifies_against_the_ca_chain and not per request."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Go's client offers RSA key exchange suites by default (until Go 1.22; exporter-toolkit
    # 0.8.2's files name one); Python's default list leaves them out.
    ctx.set_ciphers("DEFAULT")
    if case.client_certificate:
        ctx.load_cert_chain(
            str(testdata / f"{case.client_certificate}.pem"),
            str(testdata / f"{case.client_certificate}.key"),
        )
    if case.cipher_suites:
        ctx.set_ciphers(":".join(OPENSSL_CIPHERS[s] for s in case.cipher_suites))
    if case.curve_preferences:
        ctx.set_ecdh_curve(OPENSSL_CURVES[case.curve_preferences[0]])
    if case.client_max_tls_version:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.maximum_version = TLS_VERSIONS[case.client_max_tls_version]
    return ctx


def request(
    port: int,
    context: ssl.SSLContext | None,
    *,
    path: str = "/metrics",
    auth: tuple[str, str] | None = None,
) -> Answer:
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode()
        negotiated = conn.sock.cipher() if isinstance(conn.sock, ssl.SSLSocket) else None
        cipher = negotiated[0] if negotiated else None
        return Answer(response.status, body, dict(response.headers), cipher)
    finally:
        conn.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def indented(path: Path) -> str:
    return "".join(f"    {line}\n" for line in path.read_text().splitlines())
