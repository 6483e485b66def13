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

import http.client
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from exporter_process import ExporterProcess
from toolkit_cases import DEBIAN_PACKAGE, TESTDATA, TOOLKIT_WEB, ToolkitCase, load_cases
from web_support import (
    OPENSSL_CIPHERS,
    client_context,
    load_error,
    request,
    start_exporter,
    write,
)

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
