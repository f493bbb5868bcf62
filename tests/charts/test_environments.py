"""The environment overlays (k8s/envs) render, and the GitOps manifests (k8s/argocd) point at them."""

from __future__ import annotations

import pytest
import yaml

from tests.charts.chart_utils import REPO, containers, pod_spec, pod_template, render_chart, workloads

pytestmark = pytest.mark.charts

ENVS = ("dev", "staging", "prod")


def overlay(env: str) -> dict:
    return yaml.safe_load((REPO / "k8s" / "envs" / env / "values.yaml").read_text())


@pytest.mark.parametrize("env", ENVS)
def test_overlay_renders_and_validates(env):
    import kubernetes_validate

    objects = render_chart(overlay(env), namespace=f"ml-{env}")
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


@pytest.mark.parametrize("env", ENVS)
def test_gitops_overlays_generate_no_secret(env):
    """Argo CD renders without cluster access, so `lookup` cannot keep generated Secrets stable:
    every credential of a GitOps environment comes from an existing Secret."""
    objects = render_chart(overlay(env), namespace=f"ml-{env}")
    assert not [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    hooks = [
        o
        for o in objects
        if o["kind"] == "Job" and o["metadata"].get("annotations", {}).get("helm.sh/hook", "test") != "test"
    ]
    assert [h["metadata"]["name"] for h in hooks] == ["mlp-minio-bucket"]


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_every_image_is_pinned_by_digest(env):
    objects = render_chart(overlay(env), namespace=f"ml-{env}")
    pods = [pod_spec(o) for o in workloads(objects)] + [pod_template(objects)["spec"]]
    for spec in pods:
        for container in containers(spec):
            assert "@sha256:" in container["image"], container["image"]
    dag = next(o for o in objects if o["metadata"]["name"] == "mlp-dag-settings")
    assert "@sha256:" in dag["data"]["MLP_DAG_IMAGE"]


@pytest.mark.parametrize("env", ENVS)
def test_argocd_application_points_at_the_chart_and_the_overlay(env):
    app = yaml.safe_load((REPO / "k8s" / "argocd" / f"ml-pipeline-{env}.yaml").read_text())
    assert app["kind"] == "Application"
    assert app["spec"]["project"] == "ml-pipeline"
    assert app["spec"]["destination"]["namespace"] == f"ml-{env}"
    chart, values = app["spec"]["sources"]
    assert (REPO / chart["path"] / "Chart.yaml").is_file()
    (value_file,) = chart["helm"]["valueFiles"]
    assert value_file == f"$values/k8s/envs/{env}/values.yaml"
    assert values["ref"] == "values"
    automated = "automated" in (app["spec"].get("syncPolicy") or {})
    assert automated == (env != "prod"), "prod syncs by hand"


def test_kind_cluster_configs_parse():
    for name in ("cluster.yaml", "cluster-gpu.yaml"):
        config = yaml.safe_load((REPO / "k8s" / "kind" / name).read_text())
        assert config["kind"] == "Cluster"
        assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    gpu = yaml.safe_load((REPO / "k8s" / "kind" / "cluster-gpu.yaml").read_text())
    mounts = gpu["nodes"][0]["extraMounts"]
    assert {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"} in mounts


def test_kind_workflow_uses_the_makefile_targets():
    import re

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "kind-e2e.yml").read_text())
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["kind-e2e"]["steps"])
    makefile = (REPO / "Makefile").read_text()
    for target in ("kind-up", "kind-load", "deploy", "kind-down"):
        assert f"make {target}" in runs
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert re.search(r"^e2e:", makefile, re.MULTILINE)
    assert "scripts/kind-e2e" in runs
    assert (REPO / "scripts" / "kind-e2e").stat().st_mode & 0o111
