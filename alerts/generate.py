"""Render alerts/*.rules.yml from alerts/templates/ and alerts/thresholds.yml (`make alerts`).

A template is one Prometheus rule group with `${Alert.key}` / `${settings.key}` placeholders;
the generator fills them from the thresholds, gives every alert its `for:` and its
`runbook_url`, checks that each alert is complete (severity, summary, description), and
refuses placeholders or thresholds that don't match.

    python3 -m alerts.generate                      # rewrite alerts/*.rules.yml and the chart's
    python3 -m alerts.generate --check              # exit 1 if they are out of date
    python3 -m alerts.generate --overrides mine.yml --out /etc/prometheus/rules/

The Helm chart gets the same rules in template form (`render(chart=True)`): every threshold,
`for:`, the runbook base URL and the exporter's job stay `${...}` placeholders, which the
chart's templates/prometheusrule.yaml fills from files/alerts/thresholds.yml (a copy of the
defaults) and the `prometheusRule` values. With default values the chart renders exactly
alerts/*.rules.yml (tests/tooling/test_chart_rules.py), so the chart and the files never disagree.
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
CHART_ALERTS_DIR = ALERTS_DIR.parent / "helm" / "resilience-exporter" / "files" / "alerts"
CHART_THRESHOLDS = "thresholds.yml"
SEVERITIES = ("critical", "warning", "info")
RULES_SUFFIX = ".rules.yml"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\}")


class _Substituter:
    """Fills `${scope.key}` from the thresholds; with `keep`, checks them and leaves them for
    the chart to fill."""

    def __init__(self, thresholds: Thresholds, *, keep: bool = False) -> None:
        self.thresholds = thresholds
        self.keep = keep
        self.used: set[tuple[str, str]] = set()

    def __call__(self, text: str, where: str) -> str:
        def replace(match: re.Match[str]) -> str:
            scope, key = match.group(1), match.group(2)
            table = (
                self.thresholds.settings
                if scope == "settings"
                else self.thresholds.alerts.get(scope, self.thresholds.records.get(scope))
            )
            if table is None or key not in table:
                raise AlertRulesError(f"{where}: no threshold {scope}.{key}")
            self.used.add((scope, key))
            return match.group(0) if self.keep else str(table[key])

        return PLACEHOLDER.sub(replace, text)

    def value(self, scope: str, key: str, where: str) -> str:
        return self("${" + f"{scope}.{key}" + "}", where)


def _render_alert(rule: dict[str, Any], substitute: _Substituter, where: str) -> dict[str, Any]:
    thresholds = substitute.thresholds
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
    base = substitute.value("settings", "runbook_base_url", where)
    annotations["runbook_url"] = f"{base}#{runbook_anchor(name)}"
    unknown = set(rule) - {"alert", "expr", "labels", "annotations"}
    if unknown:
        raise AlertRulesError(f"{where}: {name}: unexpected keys {sorted(unknown)}")
    return {
        "alert": name,
        "expr": rule["expr"],
        "for": substitute.value(name, "for", where),
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
    thresholds: Thresholds | None = None,
    templates_dir: Path = TEMPLATES_DIR,
    *,
    chart: bool = False,
) -> dict[str, str]:
    """File name (`<component>.rules.yml`) -> rendered rule file text; with `chart`, the
    template form the Helm chart fills from its values."""
    thresholds = thresholds or load_thresholds()
    substitute = _Substituter(thresholds, keep=chart)
    rendered: dict[str, str] = {}
    seen_alerts: set[str] = set()
    for template in sorted(templates_dir.glob("*.yml")):
        where = str(template.relative_to(templates_dir.parent.parent))
        doc = expect_mapping(yaml.safe_load(substitute(template.read_text(), where)), where)
        rules: list[dict[str, Any]] = []
        for rule in doc.get("rules") or []:
            if "alert" in rule:
                rules.append(_render_alert(rule, substitute, where))
                seen_alerts.add(rule["alert"])
            else:
                rules.append(rule)
        group = {"name": doc["group"], "rules": rules}
        body = yaml.dump(_clean({"groups": [group]}), Dumper=_Dumper, sort_keys=False, width=10_000)
        header = (
            f"# Generated by `python3 -m alerts.generate` (`make alerts`) from {where} and\n"
            "# alerts/thresholds.yml: edit those, not this file.\n"
        )
        if chart:
            header += (
                "# The ${...} are filled by templates/prometheusrule.yaml from thresholds.yml\n"
                "# beside this file and the prometheusRule values.\n"
            )
        rendered[template.stem + RULES_SUFFIX] = header + body
    missing = set(thresholds.alerts) - seen_alerts
    if missing:
        raise AlertRulesError(f"thresholds for alerts no template defines: {sorted(missing)}")
    unused = {
        (name, key)
        for name, values in [*thresholds.alerts.items(), *thresholds.records.items()]
        for key in values
        if key != "for" and (name, key) not in substitute.used
    }
    if unused:
        raise AlertRulesError(f"thresholds no template uses: {sorted(unused)}")
    if chart:
        defaults = {
            "settings": dict(thresholds.settings),
            "alerts": {name: dict(v) for name, v in thresholds.alerts.items()},
            "records": {name: dict(v) for name, v in thresholds.records.items()},
        }
        rendered[CHART_THRESHOLDS] = (
            "# Generated by `python3 -m alerts.generate` (`make alerts`) from\n"
            "# alerts/thresholds.yml: the defaults the chart's prometheusRule values override.\n"
            + yaml.safe_dump(defaults, sort_keys=False, width=10_000)
        )
    return rendered


def stale_files(out_dir: Path, rendered: Mapping[str, str]) -> list[str]:
    """Rule files in `out_dir` that differ from `rendered`, are missing, or are left over."""
    present = {p.name for p in out_dir.glob(f"*{RULES_SUFFIX}")}
    present |= {name for name in rendered if not name.endswith(RULES_SUFFIX)} & {
        p.name for p in out_dir.glob("*")
    }
    differing = [
        name
        for name, text in rendered.items()
        if not (out_dir / name).exists() or (out_dir / name).read_text() != text
    ]
    return sorted(set(differing) | (present - set(rendered)))


def write_rules(out_dir: Path, rendered: Mapping[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in set(stale_files(out_dir, rendered)) - set(rendered):
        (out_dir / name).unlink()
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
    parser.add_argument(
        "--chart-out", type=Path, default=CHART_ALERTS_DIR,
        help="where the chart's template form goes (not written with --overrides)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        overrides = yaml.safe_load(args.overrides.read_text()) if args.overrides else None
        thresholds = load_thresholds(args.thresholds, overrides)
        outputs = {args.out: render(thresholds)}
        if overrides is None:
            outputs[args.chart_out] = render(thresholds, chart=True)
    except (AlertRulesError, OSError, yaml.YAMLError) as err:
        print(f"alerts.generate: {err}", file=sys.stderr)
        return 2
    if args.check:
        stale = [out / name for out, rendered in outputs.items()
                 for name in stale_files(out, rendered)]  # fmt: skip
        for path in stale:
            print(f"alerts.generate: {path} is out of date: run `make alerts`", file=sys.stderr)
        return 1 if stale else 0
    for out, rendered in outputs.items():
        write_rules(out, rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
