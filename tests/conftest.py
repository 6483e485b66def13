from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from credentials import MONITOR_PASSWORD, MONITOR_USER

from resilience_exporter.probes.redis.commands import ACL_RIGHTS
from scripts.testservers.pgbouncer import PgBouncerServer
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.redis import RedisServer

# The tests mirror the package: a folder per room (configuration/, probing/, metrics/, web/,
# probes/, classify/, instrument/), scenarios/ for the suites that run real servers end to
# end, and tooling/ for the tools around the package (the chart, the alert rules, the
# dashboards, the bench, the lock, the image, the layout check), which need the whole dev
# group: `make test-floor` runs the package's own tests alone (--package-only), on the lowest
# releases its ranges allow.
TESTS = Path(__file__).resolve().parent
TOOLING = TESTS / "tooling"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--package-only", action="store_true", help="leave out the tests of the tools around "
        "the package (tests/tooling/)",
    )  # fmt: skip
    parser.addoption(
        "--fast", action="store_true", help="only the tests marked neither slow nor by a "
        "tooling module's need for processes: `make test-fast`; a test that starts a process "
        "(a server, a tool, the exporter) fails, saying to mark it slow",
    )  # fmt: skip


# Processes a fast test may start: git answers in milliseconds (scripts/check_layout.py).
FAST_PROCESSES = frozenset({"git"})


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("fast"):
        return
    config.option.markexpr = "not slow"
    started = subprocess.Popen.__init__

    def refuse_processes(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
        program = args if isinstance(args, str | bytes | os.PathLike) else args[0]
        if os.path.basename(os.fsdecode(program)) not in FAST_PROCESSES:
            raise RuntimeError(
                f"{os.fsdecode(program)} started by a test not marked slow: a test that starts "
                "a server, a tool or the exporter's process is `@pytest.mark.slow`"
            )
        started(self, args, *rest, **kw)

    subprocess.Popen.__init__ = refuse_processes  # type: ignore[method-assign]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if config.getoption("package_only") and collection_path.is_relative_to(TOOLING):
        return True
    return None  # pytest's own rules decide


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the tests that only read from it; fault tests start their own."""
    with PostgresServer() as server:
        server.create_role(MONITOR_USER, MONITOR_PASSWORD)
        yield server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to stop, freeze or restart; removed afterwards."""
    with PostgresServer() as server:
        server.create_role(MONITOR_USER, MONITOR_PASSWORD)
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# --- TLS: a CA, a server certificate for 127.0.0.1, a client certificate ----------------------
@dataclass
class Pki:
    ca: trustme.CA
    server_cert: Path
    server_key: Path
    ca_file: Path
    client: trustme.LeafCert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    server.private_key_pem.write_to_path(str(root / "server.key"))
    ca.cert_pem.write_to_path(str(root / "ca.crt"))
    client = ca.issue_cert("scraper.example")
    return Pki(ca, root / "server.crt", root / "server.key", root / "ca.crt", client)


# --- Redis and PgBouncer ----------------------------------------------------------------------
REDIS_DEFAULT_PASSWORD = "Redis-Default-Pw-51c0"
REDIS_ACL_USER = "monitor"
REDIS_ACL_PASSWORD = "Redis-Acl-Pw-9e2d7"


def redis_acl_rights() -> list[str]:
    """The rights docs/redis-pgbouncer.md asks for (test_redis checks the document says so)."""
    return [f"+{right}" for right in ACL_RIGHTS]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the tests that only read from it: `requirepass` on the default user and
    an ACL user with only the rights docs/redis-pgbouncer.md asks for; fault tests start their
    own."""
    with RedisServer(password=REDIS_DEFAULT_PASSWORD) as server:
        with server.client() as client:
            client.execute_command(
                "ACL", "SETUSER", REDIS_ACL_USER, "reset", "on", f">{REDIS_ACL_PASSWORD}",
                *redis_acl_rights(),
            )  # fmt: skip
        yield server


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncerServer]:
    """One PgBouncer in front of a PostgreSQL of its own (its server connections would
    otherwise show in the session PostgreSQL's counts); the monitor role is its admin."""
    with PostgresServer() as postgres:
        postgres.create_role(MONITOR_USER, MONITOR_PASSWORD)
        with PgBouncerServer(postgres, users=[(MONITOR_USER, MONITOR_PASSWORD)]) as server:
            yield server
