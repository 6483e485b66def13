"""The Helm chart as the chart tests see it: rendered by the real Helm engine
(helm-python-sdk), objects picked by kind and name, and each validated against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict) or the prometheus-operator CRDs and models."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "resilience-exporter"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chart-assets"
CRDS = Path("/work/shared/crds")
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "resilience", "monitoring"
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))

VALUES_FILES: list[Path | None] = [None, *CI_FILES]
Manifest = dict[str, Any]
Values = Mapping[str, Any]


def render(chart: helm_python.Chart, values: Values | None = None) -> list[Manifest]:
    rendered = chart.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def render_dir(path: Path, values: Values) -> list[Manifest]:
    with helm_python.Chart.load(path) as loaded:
        return render(loaded, values)


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def ci_values(path: Path) -> Values:
    return yaml.safe_load(path.read_text()) or {}


def values_id(path: Path | None) -> str:
    return path.name if path else "defaults"


# --- validation of rendered objects ---------------------------------------------------------

OPERATOR_MODELS: dict[
    str, type[operator.ServiceMonitor] | type[operator.PrometheusRule] | type[operator.Probe]
] = {
    "ServiceMonitor": operator.ServiceMonitor,
    "PrometheusRule": operator.PrometheusRule,
    "Probe": operator.Probe,  # no CRD file in shared/crds: the model's check only
}
CRD_FILES = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / CRD_FILES[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` lacks or changes what `expected` has: the model dropped an unknown field."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{path}.{key}: unknown field")
            else:
                out += differences(value, actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: {expected!r} became {actual!r}"]


def validate(obj: Manifest) -> None:
    kind = obj["kind"]
    if kind in OPERATOR_MODELS:
        if CRDS.is_dir() and kind in CRD_FILES:
            # Draft 7 without a check of the schema itself: the CRD's patterns are Go regexps
            # (`^(?i)...`) that Python's re would refuse as a schema, never hit by our objects.
            jsonschema.Draft7Validator(crd_schema(kind)).validate(obj)
        model = OPERATOR_MODELS[kind].model_validate(obj)
        dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        problems = differences(obj, dumped)
        assert not problems, f"{kind} {obj['metadata']['name']}: {problems}"
    else:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def container(workload: Manifest) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result
