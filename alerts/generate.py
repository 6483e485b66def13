"""Render alerts/*.rules.yml from alerts/templates/ and alerts/thresholds.yml (`make alerts`).

A template is one Prometheus rule group with `${Alert.key}` / `${settings.key}` placeholders;
the generator fills them from the thresholds, gives every alert its `for:` and its
`runbook_url`, checks that each alert is complete (severity, summary, description), and
refuses placeholders or thresholds that don't match.

    python3 -m alerts.generate                      # rewrite alerts/*.rules.yml
    python3 -m alerts.generate --check              # exit 1 if they are out of date
    python3 -m alerts.generate --overrides mine.yml --out /etc/prometheus/rules/
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alerts.thresholds import (
    ALERTS_DIR,
    THRESHOLDS_FILE,
    AlertRulesError,
    Thresholds,
    expect_mapping,
    load_thresholds,
    runbook_anchor,
)

TEMPLATES_DIR = ALERTS_DIR / "templates"
SEVERITIES = ("critical", "warning", "info")
RULES_SUFFIX = ".rules.yml"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\}")


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
        doc = expect_mapping(yaml.safe_load(substitute(template.read_text(), where)), where)
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
            f"# Generated by `python3 -m alerts.generate` (`make alerts`) from {where} and\n"
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
        print(f"alerts.generate: {err}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(args.out, rendered)
        for name in stale:
            print(
                f"alerts.generate: {args.out / name} is out of date: run `make alerts`",
                file=sys.stderr,
            )
        return 1 if stale else 0
    write_rules(args.out, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
