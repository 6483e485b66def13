"""alerts/thresholds.yml: the tunables of the alert rules, which the dashboards draw too.

An overrides file of the same shape can be laid over it; it may only change keys that exist,
so that a typo cannot silently leave the default in place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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
    alerts = {
        name: dict(expect_mapping(values, f"{path}: alerts.{name}"))
        for name, values in expect_mapping(data.get("alerts", {}), f"{path}: alerts").items()
    }
    if overrides:
        _apply_overrides(settings, alerts, expect_mapping(dict(overrides), "overrides"))
    for name, values in alerts.items():
        for key, value in values.items():
            _check_value(f"alerts.{name}.{key}", value, duration=key == "for")
    return Thresholds(settings=settings, alerts=alerts)


def _only_keys(data: Mapping[str, Any], where: str) -> None:
    extra = set(data) - {"settings", "alerts"}
    if extra:
        raise AlertRulesError(f"{where}: unknown keys {sorted(extra)}")


def _apply_overrides(
    settings: dict[str, Any], alerts: dict[str, dict[str, Any]], over: Mapping[str, Any]
) -> None:
    _only_keys(over, "overrides")
    for key, value in expect_mapping(over.get("settings", {}), "overrides: settings").items():
        if key not in settings:
            raise AlertRulesError(f"overrides: settings.{key} is not a known setting")
        settings[key] = value
    for name, values in expect_mapping(over.get("alerts", {}), "overrides: alerts").items():
        if name not in alerts:
            raise AlertRulesError(f"overrides: alerts.{name} is not a known alert")
        for key, value in expect_mapping(values, f"overrides: alerts.{name}").items():
            if key not in alerts[name]:
                raise AlertRulesError(f"overrides: alerts.{name}.{key} is not a known key")
            alerts[name][key] = value


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
