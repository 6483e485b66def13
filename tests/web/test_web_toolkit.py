"""Conformance with exporter-toolkit: its own test data and test tables, run against the real
exporter.

The cases are read from web/tls_config_test.go of the exporter-toolkit that Debian installs
(`make servers`); every YAML file of its testdata is loaded from where Debian put it, with the
working directory elsewhere, so relative certificate paths must resolve against the file's
directory. Each load-time case must be accepted or refused with our clear message for it; each
runtime case starts the exporter with that file and makes the request the Go test makes
(client certificate, cipher suites, curves, TLS version, basic auth) with the expected outcome.
Where we differ on purpose (HTTP/1.1 only; a SAN outside the allowed list gets 403 rather than
a failed handshake) the case says so, and docs/security.md lists it.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import signal
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from exporter_process import ExporterProcess
from toolkit_cases import DEBIAN_PACKAGE, TESTDATA, TOOLKIT_WEB, ToolkitCase, load_cases

from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.web.tls import WebConfigError
from resilience_exporter.web.webconfig import load_web_config
from scripts.testservers.base import wait_until

if not TOOLKIT_WEB.is_dir():
    pytest.fail(f"exporter-toolkit's tests are missing: `make servers` installs {DEBIAN_PACKAGE}")

CASES = load_cases()

# What we answer where exporter-toolkit's test expects an error (its ErrorMap keys).
LOAD_ERRORS: Mapping[str, str] = {
    "No such file": "No such file",
    "YAML error": "",  # any refusal: we say which key or that the file holds no mapping
    "Invalid CertPath": "missing one of cert or cert_file",
    "Invalid Cert or CertPath": "missing one of cert or cert_file",
    "Invalid KeyPath": "missing one of key or key_file",
    "Invalid Key or KeyPath": "missing one of key or key_file",
    "ClientCA set without policy": "client_auth_type is NoClientCert",
    "Invalid ClientAuth": "invalid client_auth_type",
    "Bad password": "not a bcrypt hash",
    "Unknown cipher": "unknown cipher suites",
    "Unknown curve": "unknown curves",
    "Unknown TLS version": "unknown TLS version",
    "Invalid value": "invalid value for",
    "Invalid header": "can not be configured",
}
# Files where we name another of the file's problems first than exporter-toolkit does.
OUR_FIRST_PROBLEM: Mapping[str, str] = {
    # cert_file and key_file are empty, and client_auth_type is "x": both are refused.
    "web_config_noAuth_certPath_keyPath_empty.bad.yml": "invalid client_auth_type 'x'",
    # client_ca_file names a missing file, and no client_auth_type says what it is for.
    "web_config_auth_clientCAs_invalid.bad.yml": "client_auth_type is NoClientCert",
}
HANDSHAKE_ERRORS = frozenset(
    {"HTTP Response to HTTPS", "HTTP Request to HTTPS server", "Incompatible TLS version",
     "Handshake failure", "Bad certificate", "Certificate required", "Unknown CA",
     "TLS handshake"}
)  # fmt: skip
STATUS_ERRORS: Mapping[str, int] = {
    "Unauthorized": 401,
    "Too Many Requests": 429,
    # exporter-toolkit fails the handshake; we accept it and answer 403 on every request.
    "Invalid client cert": 403,
}
# exporter-toolkit refuses to serve HTTP/2 without its mandatory cipher; we serve HTTP/1.1.
HTTP2_ONLY = frozenset({"No HTTP2 cipher"})
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
BODY_MARK = "resilience_exporter_build_info"


def is_load_case(case: ToolkitCase) -> bool:
    return case.table == "TestYAMLFiles" or case.expected_error in LOAD_ERRORS


def case_id(case: ToolkitCase) -> str:
    return f"{case.table}/{case.name}"


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths in the files must not resolve against the working directory."""
    monkeypatch.chdir(tmp_path)


# --- load time: every file accepted or refused as exporter-toolkit does ---------------------


def load_error(path: Path) -> str | None:
    try:
        load_web_config(path)
    except (ConfigError, WebConfigError) as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("case", [c for c in CASES if is_load_case(c)], ids=case_id)
def test_load_time_case(case: ToolkitCase) -> None:
    path = TOOLKIT_WEB / case.config
    error = load_error(path)
    if case.expected_error is None:
        assert error is None, error
        return
    assert error is not None, f"{path.name} accepted; exporter-toolkit refuses it"
    expected = OUR_FIRST_PROBLEM.get(path.name, LOAD_ERRORS[case.expected_error])
    assert expected in error
    assert "Traceback" not in error


def test_every_testdata_file_has_a_verdict() -> None:
    """Files the Go tables don't load are judged by their name (.good / .bad), except the one
    exporter-toolkit itself accepts despite its name."""
    in_tables = {Path(c.config).name for c in CASES if c.config.startswith("testdata/")}
    accepted_by_toolkit = {"web_config_auth_clientCAs_missing.bad.yml"}
    others = [
        p for p in TESTDATA.iterdir() if p.suffix in (".yml", ".yaml") and p.name not in in_tables
    ]
    for path in others:
        error = load_error(path)
        if ".good" in path.name or path.name in accepted_by_toolkit:
            assert error is None, f"{path.name}: {error}"
        elif ".bad" in path.name:
            assert error is not None, f"{path.name} accepted"
    assert len(in_tables) + len(others) == len(
        [p for p in TESTDATA.iterdir() if p.suffix in (".yml", ".yaml")]
    )


@pytest.mark.slow
def test_the_exporter_exits_2_naming_the_file_for_a_refused_one(tmp_path: Path) -> None:
    path = TESTDATA / "web_config_headers_frame_options.bad.yml"
    result = subprocess.run(
        [sys.executable, "-m", "resilience_exporter", f"--web.config.file={path}",
         "--web.listen-address=127.0.0.1:0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{path}:2: http_server_config.headers: invalid value for X-Frame-Options" in (
        result.stderr
    )


# --- run time: the exporter serving each file, the Go test's requests ---------------------


def start_exporter(workdir: Path, web_config: Path | None) -> ExporterProcess:
    """The real exporter with one web config, waited for by TCP connect (a client
    certificate may be needed for anything more)."""
    args = [f"--web.config.file={web_config}"] if web_config is not None else []
    exporter = ExporterProcess(workdir, config="host: {enabled: false}\n", args=args)
    return exporter.start(wait_healthy=False).wait_listening()


@dataclass
class Answer:
    status: int
    body: str
    headers: Mapping[str, str]
    cipher: str | None


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


def run_case(port: int, case: ToolkitCase) -> None:
    context = client_context(case) if case.use_tls_client else None
    auth = (case.username, case.password) if case.username else None
    expected = case.expected_error
    if expected in HANDSHAKE_ERRORS:
        with pytest.raises((OSError, http.client.HTTPException)):
            request(port, context, auth=auth)
        return
    answers = [request(port, context, auth=auth) for _ in range(case.requests + 1)]
    statuses = [a.status for a in answers]
    if expected is not None and expected in STATUS_ERRORS:
        assert STATUS_ERRORS[expected] in statuses, statuses
        return
    assert expected is None or expected in HTTP2_ONLY, f"no rule for {expected}"
    assert statuses == [200] * len(answers), [a.body for a in answers]
    assert BODY_MARK in answers[0].body
    if case.actual_cipher:
        assert answers[0].cipher == OPENSSL_CIPHERS[case.actual_cipher]


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


RUNTIME_CASES = [c for c in CASES if not is_load_case(c)]
RUNTIME_CONFIGS = sorted({c.config for c in RUNTIME_CASES})


@pytest.mark.slow
@pytest.mark.parametrize("config", RUNTIME_CONFIGS, ids=lambda c: c or "no web config")
def test_runtime_cases(config: str, tmp_path: Path) -> None:
    """One exporter per file; every case of the Go tables that uses the file."""
    path = TOOLKIT_WEB / config if config else None
    exporter = start_exporter(tmp_path, path)
    try:
        for case in (c for c in RUNTIME_CASES if c.config == config):
            try:
                run_case(exporter.port, case)
            except AssertionError as exc:
                raise AssertionError(f"{case.table}: {case.name}: {exc}") from exc
    finally:
        exporter.stop()


@pytest.mark.slow
def test_reloading_swaps_a_blocking_config_for_a_good_one(tmp_path: Path) -> None:
    """exporter-toolkit's TestConfigReloading: the file is re-read (here on SIGHUP, there on
    every request) and a client without a certificate gets in once it no longer needs one."""
    testdata = tmp_path / "testdata"
    shutil.copytree(TESTDATA, testdata)
    web = testdata / "web_config_noAuth.good.blocking.yml"
    exporter = start_exporter(tmp_path, web)
    try:
        context = client_context(ToolkitCase("", "", "", None, use_tls_client=True))
        with pytest.raises((OSError, http.client.HTTPException)):
            request(exporter.port, context)
        web.write_text((testdata / "web_config_noAuth.good.yml").read_text())
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGHUP)

        def admitted() -> bool:
            try:
                return request(exporter.port, context).status == 200
            except (OSError, http.client.HTTPException):
                return False

        wait_until(admitted, timeout=20, what="the reloaded config to admit the client")
    finally:
        exporter.stop()


# --- handler_test.go: basic auth cache, user enumeration, CVE-2022-46146, headers ----------


@pytest.fixture
def users_exporter(tmp_path: Path) -> Iterator[ExporterProcess]:
    exporter = start_exporter(tmp_path, TESTDATA / "web_config_users_noTLS.good.yml")
    yield exporter
    exporter.stop()


@pytest.mark.slow
def test_basic_auth_cache_under_concurrent_logins(users_exporter: ExporterProcess) -> None:
    port = users_exporter.port
    assert request(port, None, auth=("alice", "alice123")).status == 200
    assert request(port, None, auth=("alice", "alice1234")).status == 401
    logins = [("alice", "alice123"), ("alice", "alice1234")] * 25
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda a: request(port, None, auth=a).status, logins))
    assert statuses == [200, 401] * 25


@pytest.mark.slow
def test_unknown_user_and_cache_poisoning_are_refused(users_exporter: ExporterProcess) -> None:
    port = users_exporter.port
    for _ in range(2):  # cold, then cached
        assert request(port, None, auth=("fakeuser", "fakepassword")).status == 401
    # CVE-2022-46146: a user name carrying alice's hash must not poison the cache.
    alice_hash = "$2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby"
    assert request(port, None, auth=("alice" + alice_hash, "fakepassword")).status == 401
    fake = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSifakepassword"
    assert request(port, None, auth=("alice", fake)).status == 401


@pytest.mark.slow
def test_configured_headers_are_sent(tmp_path: Path) -> None:
    """On every answer, as exporter-toolkit's handler wrapper does: the streamed /metrics
    (headers sent before the handler returns), plain pages, refusals and unknown paths."""
    exporter = start_exporter(tmp_path, TESTDATA / "web_config_headers.good.yml")
    try:
        answers = {
            path: request(exporter.port, None, path=path)
            for path in ("/metrics", "/", "/-/healthy", "/probe", "/no-such-page")
        }
    finally:
        exporter.stop()
    assert {path: answer.status for path, answer in answers.items()} == {
        "/metrics": 200, "/": 200, "/-/healthy": 200, "/probe": 400, "/no-such-page": 404,
    }  # fmt: skip
    for answer in answers.values():
        for name, value in {
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
            "X-Frame-Options": "deny",
            "X-Content-Type-Options": "nosniff",
            "X-XSS-Protection": "1",  # a YAML integer in the file
        }.items():
            assert answer.headers[name] == value


# --- cases newer exporter-toolkit releases test, made from the installed test data ----------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def indented(path: Path) -> str:
    return "".join(f"    {line}\n" for line in path.read_text().splitlines())


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
@pytest.mark.parametrize(("interval", "limited"), [("0", False), ('"1s"', True)])
def test_rate_limit(tmp_path: Path, interval: str, limited: bool) -> None:
    web = write(tmp_path, "web.yml", f"rate_limit:\n  interval: {interval}\n  burst: 0\n")
    exporter = start_exporter(tmp_path, web)
    try:
        statuses = [request(exporter.port, None).status for _ in range(11)]
    finally:
        exporter.stop()
    assert (429 in statuses) is limited, statuses


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
