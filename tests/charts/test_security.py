"""Invariants of every workload in every profile: non-root restricted pods, resources, probes,
labels, checksums of the Secrets they read. One parametrised test per invariant, one case per
(profile, workload), in the spirit of the Airflow chart's security-context tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.chart_utils import (
    LONG_RUNNING_KINDS,
    PROFILES,
    containers,
    pod_metadata,
    pod_spec,
    pod_template,
    render_chart,
    workloads,
)

pytestmark = pytest.mark.charts

REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def all_pods() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for profile, values in PROFILES.items():
        objects = render_chart(values)
        for obj in workloads(objects):
            cases.append((f"{profile}:{obj['kind']}/{obj['metadata']['name']}", obj))
        if any(o["metadata"]["name"] == "mlp-airflow-config" for o in objects):
            cases.append((f"{profile}:Pod/worker-pod-template", pod_template(objects)))
    return cases


CASES = all_pods()
IDS = [case_id for case_id, _ in CASES]
OBJECTS = [obj for _, obj in CASES]


@pytest.mark.parametrize("obj", OBJECTS, ids=IDS)
def test_pod_runs_as_non_root_with_runtime_default_seccomp(obj):
    spec = pod_spec(obj)
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] > 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host_namespace), host_namespace


@pytest.mark.parametrize("obj", OBJECTS, ids=IDS)
def test_every_container_is_restricted(obj):
    for container in containers(pod_spec(obj)):
        context = container["securityContext"]
        name = container["name"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] > 0, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["privileged"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name


@pytest.mark.parametrize("obj", OBJECTS, ids=IDS)
def test_every_container_has_requests_and_limits(obj):
    for container in containers(pod_spec(obj)):
        resources = container["resources"]
        for what in ("cpu", "memory"):
            assert resources["requests"][what], (container["name"], what)
            assert resources["limits"][what], (container["name"], what)


@pytest.mark.parametrize("obj", OBJECTS, ids=IDS)
def test_images_are_fully_qualified_references(obj):
    for container in containers(pod_spec(obj)):
        image = container["image"]
        assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, image
        assert not image.endswith(":latest"), image
        assert container["imagePullPolicy"] in ("IfNotPresent", "Always", "Never")


@pytest.mark.parametrize("obj", OBJECTS, ids=IDS)
def test_pods_carry_the_standard_labels(obj):
    labels = pod_metadata(obj)["labels"]
    for key in REQUIRED_LABELS:
        assert labels.get(key), key
    assert labels["app.kubernetes.io/part-of"] == "ml-pipeline"
    assert labels["app.kubernetes.io/instance"] == "mlp"
    if obj["kind"] != "Pod":
        for key in REQUIRED_LABELS:
            assert obj["metadata"]["labels"].get(key), key


LONG_RUNNING = [(i, o) for i, o in CASES if o["kind"] in LONG_RUNNING_KINDS]


@pytest.mark.parametrize("obj", [o for _, o in LONG_RUNNING], ids=[i for i, _ in LONG_RUNNING])
def test_long_running_containers_have_liveness_and_readiness_probes(obj):
    for container in pod_spec(obj)["containers"]:
        assert container.get("livenessProbe"), container["name"]
        assert container.get("readinessProbe"), container["name"]


@pytest.mark.parametrize("obj", [o for _, o in LONG_RUNNING], ids=[i for i, _ in LONG_RUNNING])
def test_pods_reading_secrets_restart_when_they_change(obj):
    secrets = set()
    for container in containers(pod_spec(obj)):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secrets.add(ref["name"])
    annotations = pod_metadata(obj).get("annotations", {})
    checksums = [k for k in annotations if k.startswith("checksum/")]
    if secrets:
        assert checksums, f"reads Secrets {sorted(secrets)} but has no checksum annotation"


@pytest.mark.parametrize("obj", [o for _, o in LONG_RUNNING], ids=[i for i, _ in LONG_RUNNING])
def test_selectors_match_pod_labels(obj):
    selector = obj["spec"]["selector"]["matchLabels"]
    labels = pod_metadata(obj)["labels"]
    assert selector.items() <= labels.items()


def test_a_pdb_protects_every_workload_with_more_than_one_replica():
    for profile, values in PROFILES.items():
        objects = render_chart(values)
        pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
        for obj in objects:
            if obj["kind"] not in ("Deployment", "StatefulSet"):
                continue
            labels = pod_metadata(obj)["labels"]
            covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
            if obj["spec"]["replicas"] > 1:
                assert covering, f"{profile}: {obj['metadata']['name']} has replicas>1 and no PDB"
            else:
                assert not covering, f"{profile}: PDB on single-replica {obj['metadata']['name']}"


def test_high_availability_profile_really_has_pdbs():
    names = {
        o["metadata"]["name"]
        for o in render_chart(PROFILES["high-availability"])
        if o["kind"] == "PodDisruptionBudget"
    }
    assert names == {"mlp-mlflow", "mlp-airflow-api-server", "mlp-airflow-scheduler"}


def test_only_pods_that_call_the_kubernetes_api_get_a_token():
    objects = render_chart()
    with_token = {
        o["metadata"]["name"]
        for o in workloads(objects)
        if pod_spec(o).get("automountServiceAccountToken") is not False
    }
    assert with_token == {"mlp-airflow-api-server", "mlp-airflow-scheduler"}
    for obj in objects:
        if obj["kind"] == "ServiceAccount":
            assert obj["automountServiceAccountToken"] is False
