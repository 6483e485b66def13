"""The alert rules as the rule and dashboard tests read them: the generated rule files, the
series names a PromQL expression uses, the names the exporter exports, the runbook's
sections."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from alerts.generate import RULES_SUFFIX
from alerts.thresholds import ALERTS_DIR
from resilience_exporter import metricsdoc

ROOT = Path(__file__).resolve().parent.parent


RULE_FILES = sorted(ALERTS_DIR.glob(f"*{RULES_SUFFIX}"))


RUNBOOKS = ROOT / "docs" / "runbooks.md"


SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def exported_names() -> set[str]:
    process = CollectorRegistry()
    ProcessCollector(registry=process)
    PlatformCollector(registry=process)
    GCCollector(registry=process)
    client_python = {sample.name for fam in process.collect() for sample in fam.samples}
    names = set(client_python) | {"up"}
    for fam in metricsdoc.load_catalog().values():
        names.add(fam.name)
        names.update(fam.name + suffix for suffix in SUFFIXES.get(fam.type, ()))
    return names


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.add(m.value)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names


def runbook_sections() -> dict[str, str]:
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## (\S+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))
