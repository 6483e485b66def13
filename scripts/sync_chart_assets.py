"""Copy the dashboards into the Helm chart: `make chart-assets`.

`grafana/dashboards/*.json` are the single source of truth. Helm can only read files inside the
chart directory, so the chart carries byte-for-byte copies under
`helm/resilience-exporter/files/`; this script makes them (and removes copies whose source is
gone). `--check` changes nothing and exits 1 listing the drift; tests/tooling/test_helm.py runs the
same check, so a dashboard edited without `make chart-assets` fails the tests. `make
dashboards` runs it after rendering. (The alert rules reach the chart from their generator,
`python -m alerts.generate`, in the template form the chart fills from its values.)

    python3 -m scripts.sync_chart_assets [--check]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART_FILES = Path("helm/resilience-exporter/files")


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetKind:
    source_dir: Path
    pattern: str
    chart_dir: Path


ASSETS = (
    AssetKind(
        source_dir=Path("grafana/dashboards"),
        pattern="*.json",
        chart_dir=CHART_FILES / "dashboards",
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    path: Path
    problem: str  # "missing", "differs" or "stale"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def drift(root: Path = ROOT) -> list[Drift]:
    """How the chart's copies differ from the sources; empty when they are in sync."""
    found: list[Drift] = []
    for asset in ASSETS:
        sources = {p.name: p for p in sorted((root / asset.source_dir).glob(asset.pattern))}
        copies = {p.name: p for p in sorted((root / asset.chart_dir).glob(asset.pattern))}
        for name, source in sources.items():
            copy = copies.get(name)
            relative = asset.chart_dir / name
            if copy is None:
                found.append(Drift(path=relative, problem="missing"))
            elif copy.read_bytes() != source.read_bytes():
                found.append(Drift(path=relative, problem="differs"))
        found += [
            Drift(path=asset.chart_dir / name, problem="stale")
            for name in sorted(set(copies) - set(sources))
        ]
    return found


def sync(root: Path = ROOT) -> list[Drift]:
    """Make the copies equal to the sources; return what was changed."""
    changes = drift(root)
    for change in changes:
        target = root / change.path
        if change.problem == "stale":
            target.unlink()
            continue
        asset = next(a for a in ASSETS if change.path.parent == a.chart_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / asset.source_dir / change.path.name, target)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.check:
        found = drift(args.root)
        for item in found:
            print(item, file=sys.stderr)
        if found:
            print("the chart's copies are out of date: run `make chart-assets`", file=sys.stderr)
        return 1 if found else 0
    for item in sync(args.root):
        print(f"{item.path}: {'removed' if item.problem == 'stale' else 'updated'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
