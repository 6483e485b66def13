"""--web.config.file (TLS, mTLS, basic auth, headers) and reloads, on the real process."""

from __future__ import annotations

import base64
import signal
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from conftest import Pki
from exporter_process import ExporterProcess, Scrape, run_exporter

from scripts.testservers.base import wait_until

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

USER = "prometheus"
PASSWORD = "Scrape-Pass-93jd"


def fetch(
    url: str, *, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def client_context(pki: Pki, *, with_cert: bool = False,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    if with_cert:
        pki.client.configure_cert(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def https_exporter(
    workdir: Path, web_config: str, ssl_context: ssl.SSLContext, *args: str
) -> ExporterProcess:
    path = workdir / "web.yml"
    path.write_text(web_config)
    return ExporterProcess(
        workdir,
        config="host: {enabled: true}\n",
        ssl_context=ssl_context,
        args=[f"--web.config.file={path}", *args],
    )


@pytest.fixture
def hashed() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture
def tls_exporter(pki: Pki, workdir: Path, hashed: str) -> Iterator[ExporterProcess]:
    web = f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  min_version: TLS13
http_server_config:
  headers: {{X-Content-Type-Options: nosniff}}
basic_auth_users:
  {USER}: {hashed}
"""
    with https_exporter(workdir, web, client_context(pki)) as exp:
        yield exp


def test_tls_and_basic_auth(tls_exporter: ExporterProcess, pki: Pki, hashed: str) -> None:
    base = tls_exporter.url
    ctx = client_context(pki)
    assert fetch(base + "/metrics", context=ctx)[0] == 401
    assert fetch(base + "/metrics", context=ctx, auth=(USER, "wrong"))[0] == 401
    assert fetch(base + "/metrics", context=ctx, auth=("nobody", PASSWORD))[0] == 401
    status, body, headers = fetch(base + "/metrics", context=ctx, auth=(USER, PASSWORD))
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert Scrape(body).has("resilience_exporter_build_info")
    assert fetch(base + "/", context=ctx)[0] == 401
    assert fetch(base + "/-/healthy", context=ctx)[0] == 200, "health stays open for probes"
    # Plain HTTP to a TLS port gets no answer that a scraper could mistake for metrics.
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        fetch(f"http://127.0.0.1:{tls_exporter.port}/metrics")
    # min_version TLS13 turns a TLS 1.2 client away.
    with pytest.raises((urllib.error.URLError, ssl.SSLError)):
        fetch(base + "/-/healthy", context=client_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
    landing = fetch(base + "/", context=ctx, auth=(USER, PASSWORD))[1]
    tls_exporter.stop()
    for text in (body, landing, tls_exporter.logs()):
        assert hashed not in text
        assert PASSWORD not in text


def test_mutual_tls_with_allowed_sans(pki: Pki, workdir: Path) -> None:
    web = f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca_file}
  client_allowed_sans: [scraper.example]
"""
    with https_exporter(workdir, web, client_context(pki, with_cert=True)) as exp:
        base = exp.url
        assert fetch(base + "/metrics", context=client_context(pki, with_cert=True))[0] == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            fetch(base + "/metrics", context=client_context(pki))


def test_disallowed_san_is_forbidden(pki: Pki, workdir: Path) -> None:
    web = f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca_file}
  client_allowed_sans: [someone-else.example]
"""
    exp = https_exporter(workdir, web, client_context(pki, with_cert=True))
    exp.start(wait_healthy=False)
    try:

        def forbidden() -> bool:
            try:
                return exp.get("/metrics")[0] == 403
            except OSError:
                return False

        wait_until(forbidden, timeout=30, what="a 403 for a client whose SAN is not allowed")
    finally:
        exp.stop()


@pytest.mark.parametrize(
    ("web", "line", "key"),
    [
        ("tls_server_config:\n  cert_file: /x\n  key_file: /y\n  min_version: TLS99\n", 4,
         "tls_server_config.min_version"),
        ("basic_auth_users:\n  alice: plaintext-password\n", 2, "basic_auth_users.alice"),
        ("http_server_config:\n  headers: {X-Evil: 1}\n", 2, "http_server_config.headers"),
        ("tls_server_config:\n  cert_file: /x\n", 1, "tls_server_config"),
        ("unknown_section: {}\n", 1, "unknown_section"),
    ],
)  # fmt: skip
def test_bad_web_config_exits_2(tmp_path: Path, web: str, line: int, key: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(web)
    result = run_exporter([f"--web.config.file={path}", "--web.listen-address=127.0.0.1:0"])
    assert result.returncode == 2
    assert f"{path}:{line}: {key}" in result.stderr
    assert "plaintext-password" not in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_certificate_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {tmp_path}/no.crt\n  key_file: /no.key\n")
    result = run_exporter([f"--web.config.file={path}"])
    assert result.returncode == 2
    assert "TLS certificate or key" in result.stderr


def _target_block(name: str) -> str:
    return f"""
  - name: {name}
    kind: postgres
    dsn: postgresql://u@127.0.0.1:1/db
    interval: 1s
    timeout: 1s
"""


def test_reload_adds_targets_and_keeps_running_config_on_error(workdir: Path) -> None:
    config = "host: {enabled: false}\ntargets:" + _target_block("first")
    with ExporterProcess(workdir, config=config, args=["--web.enable-lifecycle"]) as exp:
        exp.wait_for("first target", lambda e: e.has("resilience_up", target="first"), 20)
        assert exp.config_path is not None
        exp.config_path.write_text(config + _target_block("second"))
        status, _, _ = exp.get("/-/reload", method="POST")
        assert status == 200
        exp.wait_for("second target", lambda e: e.has("resilience_up", target="second"), 20)

        exp.config_path.write_text(config + "  - name: broken\n    kind: nope\n")
        status, body, _ = exp.get("/-/reload", method="POST")
        assert status == 500
        assert "unknown kind" in body
        m = exp.scrape()
        assert m.value("resilience_config_last_reload_successful") == 0
        assert m.has("resilience_up", target="second"), "the running config stays"

        exp.config_path.write_text(config)  # SIGHUP reloads too
        assert exp.proc is not None
        exp.proc.send_signal(signal.SIGHUP)
        exp.wait_for(
            "second target gone and reload ok",
            lambda e: (
                not e.has("resilience_up", target="second")
                and e.value("resilience_config_last_reload_successful") == 1
            ),
            20,
        )
        assert "reload failed" in exp.logs()


def test_reload_needs_lifecycle_flag(workdir: Path) -> None:
    with ExporterProcess(workdir, config="host: {enabled: true}\n") as exp:
        status, body, _ = exp.get("/-/reload", method="POST")
        assert status == 403
        assert "not enabled" in body
