"""exporter-toolkit's own test tables (web/tls_config_test.go), read from the copy Debian's
golang-github-prometheus-exporter-toolkit-dev installs (scripts/install-servers.sh), so that
the conformance test runs exactly the cases of the exporter-toolkit release on the machine.
EXPORTER_TOOLKIT_WEB points it at another checkout's web/ directory (a newer release).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

TOOLKIT_WEB = Path(
    os.environ.get(
        "EXPORTER_TOOLKIT_WEB", "/usr/share/gocode/src/github.com/prometheus/exporter-toolkit/web"
    )
)
TESTDATA = TOOLKIT_WEB / "testdata"
DEBIAN_PACKAGE = "golang-github-prometheus-exporter-toolkit-dev"


@dataclass(frozen=True)
class ToolkitCase:
    table: str  # the Go test function the case belongs to
    name: str
    config: str  # YAMLConfigPath: "testdata/<file>", "" or a path that does not exist
    expected_error: str | None  # the ErrorMap key, None for success
    use_tls_client: bool = False
    client_certificate: str = ""
    cipher_suites: tuple[str, ...] = ()
    actual_cipher: str = ""
    curve_preferences: tuple[str, ...] = ()
    client_max_tls_version: str = ""
    username: str = ""
    password: str = ""
    requests: int = 0

    @property
    def config_path(self) -> Path | None:
        return TOOLKIT_WEB / self.config if self.config else None


def _string(entry: str, field: str) -> str:
    match = re.search(rf"\b{field}:\s*(?:`([^`]*)`|\"([^\"]*)\")", entry)
    return (match.group(1) if match.group(1) is not None else match.group(2)) if match else ""


def _go_names(entry: str, field: str) -> tuple[str, ...]:
    match = re.search(rf"\b{field}:\s*\[\][\w.]+\{{([^}}]*)\}}", entry, re.DOTALL)
    return tuple(re.findall(r"tls\.(\w+)", match.group(1))) if match else ()


def _entries(source: str, function: str) -> list[str]:
    start = source.index(f"func {function}(")
    body = source[start : source.index("\n}\n", start)]
    table = body[body.index("testTables := []*TestInputs{") : body.index("for _, testInputs")]
    return [e for e in re.split(r"\n\t\t\{\n", table)[1:] if "YAMLConfigPath" in e]


def parse(entry: str, table: str) -> ToolkitCase:
    error = re.search(r'ExpectedError:\s*ErrorMap\["([^"]+)"\]', entry)
    cipher = re.search(r"ActualCipher:\s*tls\.(\w+)", entry)
    version = re.search(r"ClientMaxTLSVersion:\s*tls\.(\w+)", entry)
    requests = re.search(r"Requests:\s*(\d+)", entry)
    return ToolkitCase(
        table=table,
        name=_string(entry, "Name"),
        config=_string(entry, "YAMLConfigPath"),
        expected_error=error.group(1) if error else None,
        use_tls_client=bool(re.search(r"UseTLSClient:\s*true", entry)),
        client_certificate=_string(entry, "ClientCertificate"),
        cipher_suites=_go_names(entry, "CipherSuites"),
        actual_cipher=cipher.group(1) if cipher else "",
        curve_preferences=_go_names(entry, "CurvePreferences"),
        client_max_tls_version=version.group(1) if version else "",
        username=_string(entry, "Username"),
        password=_string(entry, "Password"),
        requests=int(requests.group(1)) if requests else 0,
    )


def load_cases(go_test: Path | None = None) -> list[ToolkitCase]:
    source = (go_test or TOOLKIT_WEB / "tls_config_test.go").read_text()
    return [
        parse(entry, table)
        for table in ("TestYAMLFiles", "TestServerBehaviour", "TestUsers")
        for entry in _entries(source, table)
    ]
