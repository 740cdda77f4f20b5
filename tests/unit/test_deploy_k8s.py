"""deploy/k8s/base, built as kustomize would (namespace, labels, image tag) and checked:
every core resource against the Kubernetes API schema (kubernetes-validate, strict: unknown
fields fail), the KEDA ScaledObject against KEDA's CRD models (cloudcoil-models-keda: types,
required fields; a round trip catches unknown fields), and the wiring between them.

What this cannot check without a cluster: that KEDA's operator accepts the trigger's metadata
(its keys are free-form strings in the CRD), that the Prometheus address resolves, and that
the storage class offers ReadWriteMany.
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from tests.deploy_checks import DEPLOY, LAG_EXPORTER_METRICS, REPO, metric_names, settings_from_env

BASE = DEPLOY / "k8s" / "base"
K8S_VERSION = kubernetes_validate.latest_version()
#: Kinds that live in a namespace (everything here but the Namespace itself).
CLUSTER_SCOPED = {"Namespace"}


def build() -> list[dict[str, Any]]:
    """``kustomize build deploy/k8s/base`` for the features the kustomization uses (it fails on
    any other, so a new one is not silently ignored)."""
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(kust) <= {"apiVersion", "kind", "namespace", "labels", "images", "resources"}
    docs: list[dict[str, Any]] = []
    for name in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    images = {i["name"]: f"{i['name']}:{i['newTag']}" for i in kust.get("images", [])}
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = kust["namespace"]
        for label in kust.get("labels", []):
            assert not label.get("includeSelectors"), "selectors must not change on upgrade"
            meta.setdefault("labels", {}).update(label["pairs"])
        for pod in _pod_specs(doc):
            for c in pod["containers"]:
                c["image"] = images.get(c["image"], c["image"])
    return docs


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template", {})
    return [template["spec"]] if "spec" in template else []


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return build()


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_file_is_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_core_resources_are_valid_kubernetes(docs: list[dict[str, Any]]) -> None:
    core = [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in core} >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises if invalid
    # The validator is strict: an unknown field fails.
    broken = copy.deepcopy(_by_kind(docs, "Deployment")["stream-infer-worker"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_scaled_object_is_valid_keda_and_capped_at_the_partitions(
    docs: list[dict[str, Any]],
) -> None:
    [doc] = [d for d in docs if d["kind"] == "ScaledObject"]
    model = ScaledObject.model_validate(doc)
    # The models ignore unknown keys: a lossless round trip means there were none.
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc
    broken = copy.deepcopy(doc)
    broken["spec"]["maxReplicas"] = 6  # a typo of maxReplicaCount
    dumped = ScaledObject.model_validate(broken).model_dump(by_alias=True, exclude_unset=True)
    assert dumped != broken
    partitions = tomllib.loads((REPO / "topics" / "transactions.toml").read_text())["partitions"]
    spec = doc["spec"]
    assert spec["maxReplicaCount"] == partitions == 6
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["scaleTargetRef"]["name"] in _by_kind(docs, "Deployment")
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert metric_names(trigger["metadata"]["query"]) <= LAG_EXPORTER_METRICS
    assert 'group="stream-infer-scoring"' in trigger["metadata"]["query"]
    assert float(trigger["metadata"]["threshold"]) > 0
    # KEDA owns the replica count.
    assert "replicas" not in _by_kind(docs, "Deployment")["stream-infer-worker"]["spec"]


def test_settings_are_real_settings(docs: list[dict[str, Any]]) -> None:
    config = _by_kind(docs, "ConfigMap")["stream-infer-settings"]["data"]
    secret = _by_kind(docs, "Secret")["stream-infer-secrets"]["stringData"]
    assert all(k.startswith("STREAM_INFER_") for k in [*config, *secret])
    settings = settings_from_env({**config, **secret})
    assert settings.metrics.host == "0.0.0.0" and settings.serve.host == "0.0.0.0"
    assert settings.resolved_bootstrap()
    assert settings.redis.url is not None
    assert settings.worker.group_id == "stream-infer-scoring"


def test_workloads_are_wired(docs: list[dict[str, Any]]) -> None:
    configmaps, secrets = _by_kind(docs, "ConfigMap"), _by_kind(docs, "Secret")
    claims = _by_kind(docs, "PersistentVolumeClaim")
    settings = settings_from_env(
        {
            **configmaps["stream-infer-settings"]["data"],
            **secrets["stream-infer-secrets"]["stringData"],
        }
    )
    ports = {
        "worker": settings.metrics.port,
        "labels": settings.labels.metrics_port,
        "sidecar": settings.serve.port,
        "lag-exporter": 9110,
    }
    workloads = [d for d in docs if _pod_specs(d)]
    assert {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in workloads
    } == {
        *ports,
        "topics",
    }
    for doc in workloads:
        pod = _pod_specs(doc)[0]
        name = doc["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, name
        for c in pod["containers"]:
            assert c["image"] == "stream-infer:0.1.0", name
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            refs = c["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= set(
                configmaps
            )
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} <= set(secrets)
            assert {m["name"] for m in c.get("volumeMounts", [])} <= set(volumes), name
            component = doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            if component == "topics":
                continue
            assert [p["containerPort"] for p in c["ports"]] == [ports[component]], name
            port_names = {p["name"] for p in c["ports"]}
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(ports[component]), name
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http:
                    assert http["port"] in port_names, (name, probe)


def test_worker_readiness_is_model_warm_up(docs: list[dict[str, Any]]) -> None:
    worker = _by_kind(docs, "Deployment")["stream-infer-worker"]
    [c] = _pod_specs(worker)[0]["containers"]
    command = c["readinessProbe"]["exec"]["command"]
    assert command[:3] == ["python", "-m", "stream_infer.healthcheck"]
    assert command[command.index("--gauge") + 1] == "stream_infer_ready"
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    sidecar = _by_kind(docs, "Deployment")["stream-infer-sidecar"]
    [s] = _pod_specs(sidecar)[0]["containers"]
    assert s["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_services_and_budgets_select_their_pods(docs: list[dict[str, Any]]) -> None:
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] == "Deployment"
    }

    def selected(selector: dict[str, str]) -> set[str]:
        return {name for name, labels in pods.items() if selector.items() <= labels.items()}

    for svc in _by_kind(docs, "Service").values():
        assert selected(svc["spec"]["selector"]) == {svc["metadata"]["name"]}
    budgets = _by_kind(docs, "PodDisruptionBudget")
    assert set(budgets) == {"stream-infer-worker", "stream-infer-sidecar"}
    for pdb in budgets.values():
        assert selected(pdb["spec"]["selector"]["matchLabels"]) == {pdb["metadata"]["name"]}
