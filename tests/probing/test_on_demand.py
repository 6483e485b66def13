"""GET /probe: configured targets by name, module addresses only when allowed, 4xx otherwise."""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Iterator

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.testservers.postgres import PostgresServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """Accepts TCP connections and never answers: a hung server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def probe_exporter(
    postgres: PostgresServer, blackhole: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    config = f"""
host: {{enabled: true}}
targets:
  - name: orders-db
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{postgres.port}/postgres
    password: ${{PGPW}}
modules:
  pg:
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@{{address}}/postgres
    password: ${{PGPW}}
    timeout: 10s
    interval: 15s
    allow: [127.0.0.1/32]
    allow_ports: [{postgres.port}, {blackhole}]
  pg_trips_at_once:
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@{{address}}/postgres
    breaker: {{consecutive_failures: 1}}
    timeout: 1s
    allow: [127.0.0.1/32]
"""
    workdir = tmp_path_factory.mktemp("probe")
    with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:
        yield exp


def probe(exp: ExporterProcess, **params: str) -> tuple[int, str]:
    status, body, _ = exp.get("/probe?" + urllib.parse.urlencode(params))
    return status, body


def test_configured_target_by_name(probe_exporter: ExporterProcess) -> None:
    status, body = probe(probe_exporter, target="orders-db")
    assert status == 200, body
    m = Scrape(body)
    assert m.value("resilience_up", target="orders-db") == 1
    assert m.has("resilience_postgres_max_connections", target="orders-db")
    assert not m.has("resilience_host_memory_total_bytes"), "only that target's families"
    assert m.label_values("resilience_up", "target") == {"orders-db"}


def test_allowed_address_through_a_module(
    probe_exporter: ExporterProcess, postgres: PostgresServer
) -> None:
    address = f"127.0.0.1:{postgres.port}"
    status, body = probe(probe_exporter, target=address, module="pg")
    assert status == 200, body
    m = Scrape(body)
    assert m.value("resilience_up", target=address) == 1
    assert MONITOR_PASSWORD not in body


def test_module_with_its_own_breaker_settings_answers_a_dead_address(
    probe_exporter: ExporterProcess,
) -> None:
    """Regression: a module's breaker without `backoff_base` lacked the default (filled in
    for configured targets only), and the first failure tripping it answered 500."""
    status, body = probe(probe_exporter, target="127.0.0.1:1", module="pg_trips_at_once")
    assert status == 200, body
    m = Scrape(body)
    assert m.value("resilience_up", target="127.0.0.1:1", reason="refused") == 0


def test_scrape_timeout_header_shortens_the_probe(
    probe_exporter: ExporterProcess, blackhole: int
) -> None:
    # The module's timeout is 10s; Prometheus says it gives up after 2s. The answer must come
    # before this client's own 5s timeout, with the target reported as timed out.
    status, body, _ = probe_exporter.get(
        "/probe?" + urllib.parse.urlencode({"target": f"127.0.0.1:{blackhole}", "module": "pg"}),
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
        timeout=5,
    )
    assert status == 200
    assert Scrape(body).has("resilience_up", reason="timeout")


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 400, "missing target"),
        ({"target": "nope"}, 400, "unknown target"),
        ({"target": "127.0.0.1:5432", "module": "oracle"}, 400, "unknown module"),
        ({"target": "127.0.0.1:5432/postgres?x=1", "module": "pg"}, 400, "HOST:PORT"),
        ({"target": "monitor@127.0.0.1:5432", "module": "pg"}, 400, "HOST:PORT"),
        ({"target": "127.0.0.1:99999", "module": "pg"}, 400, "HOST:PORT"),
        ({"target": "127.0.0.2:5432", "module": "pg"}, 403, "does not allow"),
        ({"target": "localhost:5432", "module": "pg"}, 403, "does not allow"),
        ({"target": "127.0.0.1:1", "module": "pg"}, 403, "does not allow"),
    ],
)
def test_bad_requests_get_clear_4xx(
    probe_exporter: ExporterProcess, params: dict[str, str], status: int, message: str
) -> None:
    got, body = probe(probe_exporter, **params)
    assert got == status
    assert message in body


def test_repeated_parameter_and_bad_timeout_header(probe_exporter: ExporterProcess) -> None:
    assert probe_exporter.get("/probe?target=a&target=b")[0] == 400
    status, body, _ = probe_exporter.get(
        "/probe?target=orders-db", headers={"X-Prometheus-Scrape-Timeout-Seconds": "soon"}
    )
    assert status == 400
    assert "not a number" in body


def test_requests_are_counted(probe_exporter: ExporterProcess) -> None:
    before = probe_exporter.scrape()
    probe(probe_exporter, target="127.0.0.2:5432", module="pg")
    probe(probe_exporter, target="orders-db")
    after = probe_exporter.scrape()

    def delta(result: str) -> float:
        name = "resilience_exporter_probe_requests_total"
        return (after.value(name, result=result) or 0) - (before.value(name, result=result) or 0)

    assert delta("forbidden") == 1
    assert delta("success") == 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.one_of(st.none(), st.text(max_size=80)),
    module=st.one_of(st.none(), st.sampled_from(["pg", "x"]), st.text(max_size=20)),
    header=st.one_of(st.none(), st.sampled_from(["0", "-1", "nan", "inf", "1e309", "0.2"])),
)
def test_any_parameters_get_an_answer_never_a_500(
    probe_exporter: ExporterProcess, target: str | None, module: str | None, header: str | None
) -> None:
    params = {k: v for k, v in (("target", target), ("module", module)) if v is not None}
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": header} if header else {}
    status, body, _ = probe_exporter.get(
        "/probe?" + urllib.parse.urlencode(params), headers=headers, timeout=15
    )
    assert status in (200, 400, 403), body
    assert "Traceback" not in body


def test_on_demand_probes_leave_no_session_behind(
    probe_exporter: ExporterProcess, postgres: PostgresServer
) -> None:
    for _ in range(3):
        assert probe(probe_exporter, target="orders-db")[0] == 200
    # Only the background pool of `orders-db` (max 2) may still hold sessions.
    assert postgres.backends("resilience-exporter") <= 2
