"""Render alerts/*.rules.yml from alerts/templates/ and alerts/thresholds.yml (`make alerts`).

A template is one Prometheus rule group with `${Alert.key}` / `${settings.key}` placeholders;
the generator fills them from the thresholds, gives every alert its `for:` and its
`runbook_url`, checks that each alert is complete (severity, summary, description), and
refuses placeholders or thresholds that don't match.

    python3 scripts/gen_alerts.py                      # rewrite alerts/*.rules.yml
    python3 scripts/gen_alerts.py --check              # exit 1 if they are out of date
    python3 scripts/gen_alerts.py --overrides mine.yml --out /etc/prometheus/rules/
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS_DIR = ROOT / "alerts"
TEMPLATES_DIR = ALERTS_DIR / "templates"
THRESHOLDS_FILE = ALERTS_DIR / "thresholds.yml"
SEVERITIES = ("critical", "warning", "info")
RULES_SUFFIX = ".rules.yml"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\}")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class AlertRulesError(ValueError):
    """A template, the thresholds or an override file is inconsistent."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    settings: Mapping[str, Any]
    alerts: Mapping[str, Mapping[str, Any]]


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AlertRulesError(f"{where}: expected a mapping")
    return value


def load_thresholds(
    path: Path = THRESHOLDS_FILE, overrides: Mapping[str, Any] | None = None
) -> Thresholds:
    """The thresholds file, with `overrides` (same shape, only known keys) laid over it."""
    data = _mapping(yaml.safe_load(path.read_text()), str(path))
    _only_keys(data, str(path))
    settings = dict(_mapping(data.get("settings", {}), f"{path}: settings"))
    alerts = {
        name: dict(_mapping(values, f"{path}: alerts.{name}"))
        for name, values in _mapping(data.get("alerts", {}), f"{path}: alerts").items()
    }
    if overrides:
        _apply_overrides(settings, alerts, _mapping(dict(overrides), "overrides"))
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
    for key, value in _mapping(over.get("settings", {}), "overrides: settings").items():
        if key not in settings:
            raise AlertRulesError(f"overrides: settings.{key} is not a known setting")
        settings[key] = value
    for name, values in _mapping(over.get("alerts", {}), "overrides: alerts").items():
        if name not in alerts:
            raise AlertRulesError(f"overrides: alerts.{name} is not a known alert")
        for key, value in _mapping(values, f"overrides: alerts.{name}").items():
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


class _Substituter:
    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.used: set[tuple[str, str]] = set()

    def __call__(self, text: str, where: str) -> str:
        def replace(match: re.Match[str]) -> str:
            scope, key = match.group(1), match.group(2)
            table = (
                self.thresholds.settings
                if scope == "settings"
                else self.thresholds.alerts.get(scope)
            )
            if table is None or key not in table:
                raise AlertRulesError(f"{where}: no threshold {scope}.{key}")
            self.used.add((scope, key))
            return str(table[key])

        return PLACEHOLDER.sub(replace, text)


def _render_alert(rule: dict[str, Any], thresholds: Thresholds, where: str) -> dict[str, Any]:
    name = rule["alert"]
    if "for" in rule:
        raise AlertRulesError(f"{where}: {name}: `for` comes from the thresholds, not the template")
    if name not in thresholds.alerts:
        raise AlertRulesError(f"{where}: {name} has no entry in the thresholds")
    labels = dict(rule.get("labels") or {})
    if labels.get("severity") not in SEVERITIES:
        raise AlertRulesError(f"{where}: {name}: severity must be one of {SEVERITIES}")
    annotations = dict(rule.get("annotations") or {})
    for key in ("summary", "description"):
        if not str(annotations.get(key, "")).strip():
            raise AlertRulesError(f"{where}: {name}: the {key} annotation is missing")
    base = str(thresholds.settings["runbook_base_url"])
    annotations["runbook_url"] = f"{base}#{runbook_anchor(name)}"
    unknown = set(rule) - {"alert", "expr", "labels", "annotations"}
    if unknown:
        raise AlertRulesError(f"{where}: {name}: unexpected keys {sorted(unknown)}")
    return {
        "alert": name,
        "expr": rule["expr"],
        "for": str(thresholds.alerts[name]["for"]),
        "labels": labels,
        "annotations": annotations,
    }


def _clean(value: Any) -> Any:
    """Strip trailing whitespace of multi-line strings, so that they dump as `|` blocks."""
    if isinstance(value, str) and "\n" in value:
        return "\n".join(line.rstrip() for line in value.strip("\n").split("\n")) + "\n"
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render(
    thresholds: Thresholds | None = None, templates_dir: Path = TEMPLATES_DIR
) -> dict[str, str]:
    """File name (`<component>.rules.yml`) -> rendered rule file text."""
    thresholds = thresholds or load_thresholds()
    substitute = _Substituter(thresholds)
    rendered: dict[str, str] = {}
    seen_alerts: set[str] = set()
    for template in sorted(templates_dir.glob("*.yml")):
        where = str(template.relative_to(templates_dir.parent.parent))
        doc = _mapping(yaml.safe_load(substitute(template.read_text(), where)), where)
        rules: list[dict[str, Any]] = []
        for rule in doc.get("rules") or []:
            if "alert" in rule:
                rules.append(_render_alert(rule, thresholds, where))
                seen_alerts.add(rule["alert"])
            else:
                rules.append(rule)
        group = {"name": doc["group"], "rules": rules}
        body = yaml.dump(_clean({"groups": [group]}), Dumper=_Dumper, sort_keys=False, width=10_000)
        header = (
            f"# Generated by scripts/gen_alerts.py (`make alerts`) from {where} and\n"
            "# alerts/thresholds.yml: edit those, not this file.\n"
        )
        rendered[template.stem + RULES_SUFFIX] = header + body
    missing = set(thresholds.alerts) - seen_alerts
    if missing:
        raise AlertRulesError(f"thresholds for alerts no template defines: {sorted(missing)}")
    unused = {
        (name, key)
        for name, values in thresholds.alerts.items()
        for key in values
        if key != "for" and (name, key) not in substitute.used
    }
    if unused:
        raise AlertRulesError(f"thresholds no template uses: {sorted(unused)}")
    return rendered


def stale_files(out_dir: Path, rendered: Mapping[str, str]) -> list[str]:
    """Rule files in `out_dir` that differ from `rendered`, are missing, or are left over."""
    present = {p.name for p in out_dir.glob(f"*{RULES_SUFFIX}")}
    differing = [
        name
        for name, text in rendered.items()
        if not (out_dir / name).exists() or (out_dir / name).read_text() != text
    ]
    return sorted(set(differing) | (present - set(rendered)))


def write_rules(out_dir: Path, rendered: Mapping[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in rendered.items():
        (out_dir / name).write_text(text)
        paths.append(out_dir / name)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--thresholds", type=Path, default=THRESHOLDS_FILE)
    parser.add_argument("--overrides", type=Path, help="YAML laid over the thresholds")
    parser.add_argument("--out", type=Path, default=ALERTS_DIR, help="where the rule files go")
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args(argv)
    try:
        overrides = yaml.safe_load(args.overrides.read_text()) if args.overrides else None
        rendered = render(load_thresholds(args.thresholds, overrides))
    except (AlertRulesError, OSError, yaml.YAMLError) as err:
        print(f"gen_alerts: {err}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(args.out, rendered)
        for name in stale:
            print(
                f"gen_alerts: {args.out / name} is out of date: run `make alerts`", file=sys.stderr
            )
        return 1 if stale else 0
    write_rules(args.out, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
