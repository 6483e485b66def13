"""The listener's TLS (web/tls.py) as exporter-toolkit's newer releases test it, from the
installed test data: the served chain, inline certificates and keys, client certificates and
their allowed SANs."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme
from toolkit_cases import TESTDATA, ToolkitCase
from web_support import (
    client_context,
    indented,
    load_error,
    request,
    start_exporter,
    write,
)


@pytest.mark.slow
def test_the_served_certificate_verifies_against_the_ca_chain(tmp_path: Path) -> None:
    exporter = start_exporter(tmp_path, TESTDATA / "web_config_noAuth.good.yml")
    try:
        pem = ssl.get_server_certificate(("127.0.0.1", exporter.port), timeout=10)
    finally:
        exporter.stop()
    assert pem == ssl.DER_cert_to_PEM_cert(
        ssl.PEM_cert_to_DER_cert((TESTDATA / "server.crt").read_text())
    )
    served = tmp_path / "served.pem"
    served.write_text(pem)
    verify = subprocess.run(
        # `-purpose any`: OpenSSL 3.0 refuses CAs whose only extended key usage is
        # anyExtendedKeyUsage for TLS servers (Go accepts them); signatures, dates and the
        # host name are checked all the same.
        ["openssl", "verify", "-purpose", "any", "-verify_hostname", "localhost",
         "-CAfile", str(TESTDATA / "tls-ca-chain.pem"), str(served)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('tls_server_config:\n  cert: ""\n  key_file: "{d}/server.key"\n',
         "missing one of cert or cert_file"),
        ('tls_server_config:\n  cert_file: "{d}/server.crt"\n  key: ""\n',
         "missing one of key or key_file"),
    ],
)  # fmt: skip
def test_empty_inline_cert_or_key_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    error = load_error(write(tmp_path, "web.yml", text.format(d=TESTDATA)))
    assert error is not None
    assert expected in error


@pytest.mark.slow
def test_inline_certificate_and_key(tmp_path: Path) -> None:
    web = write(
        tmp_path,
        "web.yml",
        "tls_server_config:\n  cert: |\n" + indented(TESTDATA / "server.crt")
        + "  key: |\n" + indented(TESTDATA / "server.key"),
    )  # fmt: skip
    exporter = start_exporter(tmp_path, web)
    try:
        case = ToolkitCase("", "", "", None, use_tls_client=True)
        assert request(exporter.port, client_context(case)).status == 200
    finally:
        exporter.stop()
    assert "PRIVATE KEY" not in exporter.logs()


@pytest.mark.slow
def test_require_any_client_cert_with_an_inline_key(tmp_path: Path) -> None:
    web = write(
        tmp_path,
        "web.yml",
        f'tls_server_config:\n  cert_file: "{TESTDATA}/server.crt"\n  key: |\n'
        + indented(TESTDATA / "server.key")
        + '  client_auth_type: "RequireAnyClientCert"\n',
    )
    exporter = start_exporter(tmp_path, web)
    try:
        with_cert = ToolkitCase("", "", "", None, use_tls_client=True,
                                client_certificate="client2_selfsigned")  # fmt: skip
        assert request(exporter.port, client_context(with_cert)).status == 200
        with pytest.raises((OSError, http.client.HTTPException)):
            request(exporter.port, client_context(ToolkitCase("", "", "", None)))
    finally:
        exporter.stop()


@pytest.mark.slow
def test_client_allowed_sans(tmp_path: Path) -> None:
    """The newer web_config_auth_client_san.{good,bad}.yaml: a client certificate with the
    DNS SANs one/test3/two is admitted by an allow-list naming test3, refused by one naming
    only `bad` (403 here, a failed handshake in exporter-toolkit)."""
    ca = trustme.CA()
    client = ca.issue_cert("one", "test3", "two")
    ca.cert_pem.write_to_path(str(tmp_path / "client-ca.pem"))
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    for allowed, status in (('["one", "test3", "two"]', 200), ('["bad"]', 403)):
        web = write(
            tmp_path,
            "web.yml",
            f'tls_server_config:\n  cert_file: "{TESTDATA}/server.crt"\n'
            f'  key_file: "{TESTDATA}/server.key"\n'
            '  client_auth_type: "RequireAndVerifyClientCert"\n'
            f'  client_ca_file: "client-ca.pem"\n  client_allowed_sans: {allowed}\n',
        )
        exporter = start_exporter(tmp_path, web)
        try:
            context = client_context(ToolkitCase("", "", "", None, use_tls_client=True))
            context.load_cert_chain(str(tmp_path / "client.pem"))
            assert request(exporter.port, context).status == status
        finally:
            exporter.stop()
