from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from testservers.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the tests that only read from it; fault tests start their own."""
    with PostgresServer() as server:
        server.create_role(MONITOR_USER, MONITOR_PASSWORD)
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
