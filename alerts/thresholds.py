"""alerts/thresholds.yml: the tunables of the alert rules, which the dashboards draw too.

An overrides file of the same shape can be laid over it; it may only change keys that exist,
so that a typo cannot silently leave the default in place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ALERTS_DIR = Path(__file__).resolve().parent
THRESHOLDS_FILE = ALERTS_DIR / "thresholds.yml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class AlertRulesError(ValueError):
    """A template, the thresholds or an override file is inconsistent."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    settings: Mapping[str, Any]
    alerts: Mapping[str, Mapping[str, Any]]
    # Numbers of recording rules (no `for:`), e.g. where a pool turns degraded.
    records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def runbook_url(self, alert: str) -> str:
        """The alert's entry in the published docs/runbooks.md: the rules' runbook_url
        annotation and the dashboards' runbook links must agree on it."""
        return f"{self.settings['runbook_base_url']}#{runbook_anchor(alert)}"


def expect_mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AlertRulesError(f"{where}: expected a mapping")
    return value


def load_thresholds(
    path: Path = THRESHOLDS_FILE, overrides: Mapping[str, Any] | None = None
) -> Thresholds:
    """The thresholds file, with `overrides` (same shape, only known keys) laid over it."""
    data = expect_mapping(yaml.safe_load(path.read_text()), str(path))
    _only_keys(data, str(path))
    settings = dict(expect_mapping(data.get("settings", {}), f"{path}: settings"))
    tables = {
        section: {
            name: dict(expect_mapping(values, f"{path}: {section}.{name}"))
            for name, values in expect_mapping(data.get(section, {}), f"{path}: {section}").items()
        }
        for section in _TABLES
    }
    if overrides:
        _apply_overrides(settings, tables, expect_mapping(dict(overrides), "overrides"))
    for section, table in tables.items():
        for name, values in table.items():
            for key, value in values.items():
                _check_value(f"{section}.{name}.{key}", value, duration=key == "for")
    return Thresholds(settings=settings, alerts=tables["alerts"], records=tables["records"])


# The sections of named entries: each alert's numbers and `for:`, each recording rule's numbers.
_TABLES = ("alerts", "records")
_KIND = {"alerts": "alert", "records": "recording rule"}


def _only_keys(data: Mapping[str, Any], where: str) -> None:
    extra = set(data) - {"settings", *_TABLES}
    if extra:
        raise AlertRulesError(f"{where}: unknown keys {sorted(extra)}")


def _apply_overrides(
    settings: dict[str, Any],
    tables: dict[str, dict[str, dict[str, Any]]],
    over: Mapping[str, Any],
) -> None:
    _only_keys(over, "overrides")
    for key, value in expect_mapping(over.get("settings", {}), "overrides: settings").items():
        if key not in settings:
            raise AlertRulesError(f"overrides: settings.{key} is not a known setting")
        settings[key] = value
    for section, table in tables.items():
        where = f"overrides: {section}"
        for name, values in expect_mapping(over.get(section, {}), where).items():
            if name not in table:
                raise AlertRulesError(f"{where}.{name} is not a known {_KIND[section]}")
            for key, value in expect_mapping(values, f"{where}.{name}").items():
                if key not in table[name]:
                    raise AlertRulesError(f"{where}.{name}.{key} is not a known key")
                table[name][key] = value


def _check_value(where: str, value: object, *, duration: bool) -> None:
    """Thresholds land inside PromQL: only numbers and durations are accepted."""
    if duration or isinstance(value, str):
        if not DURATION.match(str(value)):
            raise AlertRulesError(f"{where}: {value!r} is not a Prometheus duration")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise AlertRulesError(f"{where}: {value!r} is not a number")


def runbook_anchor(alert: str) -> str:
    """The anchor GitHub gives the heading `## <alert>` in docs/runbooks.md."""
    return alert.lower()
