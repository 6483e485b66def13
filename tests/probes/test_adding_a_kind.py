"""docs/architecture.md's "Adding a kind", walked through: one new module under `probes/`,
written as the doc says, and nothing else. The configuration accepts the kind by its name,
the runner probes it behind its breaker, its family is exported and documented."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from exporter_process import Scrape

import resilience_exporter.probes
from resilience_exporter import metricsdoc
from resilience_exporter.configuration import loader
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.metrics.encoding import Format, render_lines
from resilience_exporter.metrics.families import CATALOG
from resilience_exporter.probing import on_demand, registry

# The kind's whole module: its config model, its family beside the code that fills it, its
# probe, and one register_kind() call.
ECHO_KIND = '''\
"""The `echo` kind: the length of a configured message, and refused when it is empty."""

from collections.abc import Sequence
from typing import Literal

from resilience_exporter.classify import classify_builtin, unexplained
from resilience_exporter.configuration.targets import TargetConfig
from resilience_exporter.metrics.families import Sample, family, sample
from resilience_exporter.probing.registry import KindSpec, register_kind
from resilience_exporter.reasons import Failure, ProbeError

MESSAGE_LENGTH = family(
    "resilience_echo_message_length",
    "Length of the echoed message, in characters.",
    "gauge", ("target",), group="echo",
)


class EchoTarget(TargetConfig):
    kind: Literal["echo"]
    message: str


class EchoProbe:
    def __init__(self, target: EchoTarget) -> None:
        self.target = target

    async def open(self) -> None:
        pass

    async def probe(self) -> Sequence[Sample]:
        if not self.target.message:
            raise ProbeError("refused", "nothing to echo")
        return [sample(MESSAGE_LENGTH, len(self.target.message), target=self.target.name)]

    def local_samples(self) -> Sequence[Sample]:
        return []

    def classify(self, exc: BaseException) -> Failure:
        return classify_builtin(exc) or unexplained(exc)

    async def close(self) -> None:
        pass


register_kind(KindSpec(kind="echo", config_model=EchoTarget, create=EchoProbe))
'''


@pytest.fixture
def echo_kind(tmp_path: Path) -> Iterator[Path]:
    """`probes/echo.py`, as a module of the probes package for this test only."""
    kinds = tmp_path / "kinds"
    kinds.mkdir()
    (kinds / "echo.py").write_text(ECHO_KIND)
    path = resilience_exporter.probes.__path__
    catalog = dict(CATALOG)
    path.append(str(kinds))
    registry.kind_names.cache_clear()
    try:
        yield kinds
    finally:
        path.remove(str(kinds))
        registry.kind_names.cache_clear()
        registry._KINDS.pop("echo", None)
        sys.modules.pop(f"{registry.PROBES_PACKAGE}.echo", None)
        CATALOG.clear()
        CATALOG.update(catalog)


def config(message: str) -> str:
    return textwrap.dedent(f"""\
        host: {{enabled: false}}
        targets:
          - name: greeting
            kind: echo
            message: "{message}"
    """)


def probed(message: str) -> Scrape:
    (target,) = loader.parse(config(message), "echo.yml").targets
    snapshot = asyncio.run(on_demand.probe_once(target))
    return Scrape(render_lines(Format.TEXT, snapshot.lines).decode())


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="echo"):
        loader.parse(config("hello"), "echo.yml")


def test_a_kind_is_its_module(echo_kind: Path) -> None:
    exposition = probed("hello")
    assert exposition.value("resilience_up", target="greeting", kind="echo") == 1
    assert exposition.value("resilience_echo_message_length", target="greeting") == 5
    # The probe's own families come with it, as for every kind.
    assert exposition.has("resilience_probe_duration_seconds_count")


def test_its_failures_are_reasons(echo_kind: Path) -> None:
    exposition = probed("")
    assert exposition.value("resilience_up", target="greeting", kind="echo", reason="refused") == 0


def test_its_family_is_documented(echo_kind: Path) -> None:
    """`make docs` writes the family into docs/metrics.md with the others."""
    assert "resilience_echo_message_length" in metricsdoc.render()
    assert "echo" in registry.listed_kinds()
