"""The environment overlays (k8s/envs) render, the GitOps manifests (k8s/argocd) point at them with a
pinned chart, and the kind configs and scripts (k8s/kind, scripts/kind-*) hold together."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.charts.chart_utils import REPO, containers, get, pod_spec, pod_template, render_chart, workloads

pytestmark = pytest.mark.charts

ENVS = ("dev", "staging", "prod")


def overlay(env: str) -> dict:
    return yaml.safe_load((REPO / "k8s" / "envs" / env / "values.yaml").read_text())


@pytest.mark.parametrize("env", ENVS)
def test_overlay_renders_and_validates(env):
    import kubernetes_validate

    objects = render_chart(overlay(env), namespace=f"ml-{env}")
    for obj in objects:
        if obj["apiVersion"].startswith("postgresql.cnpg.io/"):
            continue  # no schema for the CloudNativePG CRDs here: tests/charts/test_cnpg.py checks them
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
    bundled_minio = (overlay(env).get("minio") or {}).get("enabled", True)
    # The MLflow users Job is a hook on purpose (after every sync, once the server is up; an Argo CD
    # PostSync hook, deleted before it is created again).
    expected = (["mlp-minio-bucket"] if bundled_minio else []) + ["mlp-mlflow-users"]
    assert sorted(h["metadata"]["name"] for h in hooks) == expected


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
    # The chart is pinned (a release tag or a full commit), never a branch: a chart change reaches
    # an environment only through a reviewed change of this line (scripts/promote moves it).
    assert re.fullmatch(
        r"[0-9a-f]{40}|(?:[A-Za-z][\w.-]*-)?v?\d+\.\d+\.\d+(?:[-+][\w.-]+)?", chart["targetRevision"]
    )
    # The overlay follows main, where the promotion pull requests are merged.
    assert values["targetRevision"] == "main"
    (value_file,) = chart["helm"]["valueFiles"]
    assert value_file == f"$values/k8s/envs/{env}/values.yaml"
    assert values["ref"] == "values"
    automated = "automated" in (app["spec"].get("syncPolicy") or {})
    assert automated == (env != "prod"), "prod syncs by hand"


def test_argocd_project_allows_every_kind_the_overlays_render():
    project = yaml.safe_load((REPO / "k8s" / "argocd" / "project.yaml").read_text())
    allowed = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    for env in ENVS:
        for obj in render_chart(overlay(env), namespace=f"ml-{env}"):
            group = obj["apiVersion"].rpartition("/")[0]
            assert (group, obj["kind"]) in allowed, f"{env}: Argo CD would refuse {obj['kind']}"


def test_argo_cd_never_prunes_or_deletes_the_object_store_volume():
    """Argo CD ignores `helm.sh/resource-policy: keep`: its own sync options keep the claim."""
    pvc = get(render_chart(overlay("dev"), namespace="ml-dev"), "PersistentVolumeClaim", "mlp-minio")
    annotations = pvc["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"
    options = {o.strip() for o in annotations["argocd.argoproj.io/sync-options"].split(",")}
    assert {"Prune=false", "Delete=false"} <= options


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_use_external_s3_and_managed_postgresql(env):
    values = overlay(env)
    objects = render_chart(values, namespace=f"ml-{env}")
    assert not [o for o in objects if o["metadata"]["name"].startswith("mlp-minio")]
    assert not [o for o in objects if o["kind"] == "StatefulSet"]  # no bundled PostgreSQL
    assert "Cluster" in {o["kind"] for o in objects if o["apiVersion"].startswith("postgresql.cnpg.io/")}
    endpoint = values["global"]["s3"]["endpoint"]
    assert endpoint.startswith("https://")
    env_config = get(objects, "ConfigMap", "mlp-pipeline-env")["data"]
    assert endpoint in env_config.values()


def test_dev_names_no_registry_version():
    """dev's approved model is its @champion: a version number would mean nothing elsewhere."""
    model = (overlay("dev").get("pipeline") or {}).get("model") or {}
    assert not model.get("version")


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


def test_kind_scripts_parse():
    for script in ("kind-up", "kind-gpu-up", "kind-e2e", "port-forward"):
        path = REPO / "scripts" / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_gpu_manifests_validate():
    import kubernetes_validate

    runtime_class = yaml.safe_load((REPO / "k8s" / "kind" / "gpu" / "runtimeclass.yaml").read_text())
    kubernetes_validate.validate(runtime_class, "1.33.0", strict=True)
    assert (runtime_class["metadata"]["name"], runtime_class["handler"]) == ("nvidia", "nvidia")
    plugin = yaml.safe_load((REPO / "k8s" / "kind" / "gpu" / "device-plugin-values.yaml").read_text())
    assert plugin["runtimeClassName"] == "nvidia"
    gpu = yaml.safe_load((REPO / "k8s" / "kind" / "cluster-gpu.yaml").read_text())
    node_labels = gpu["nodes"][0]["labels"]
    assert all(node_labels.get(k) == v for k, v in plugin["nodeSelector"].items())


SHIM = """#!/usr/bin/env bash
args="$*"
echo "$(basename "$0") ${args//$'\\n'/ }" >> "$CALLS"
if [[ "$*" == *"-f -"* ]]; then cat > /dev/null; fi
case "$(basename "$0") $1 $2" in
  "kind get clusters") exit 0 ;;
  "kind get nodes") echo ml-pipeline-control-plane; echo ml-pipeline-worker ;;
  "kubectl get nodes") if [[ "$*" == *allocatable* ]]; then echo 1; fi ;;
  "kubectl create namespace") echo "apiVersion: v1" ;;
  "docker info --format") echo nvidia ;;
esac
"""


def fake_tools(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for kind, kubectl, helm and docker (no GPU host here) that log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "kubectl", "helm", "docker"):
        (bin_dir / tool).write_text(SHIM)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls.log"
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls)}


def test_kind_gpu_up_does_the_in_node_steps_on_every_node(tmp_path):
    env = fake_tools(tmp_path)
    result = subprocess.run(
        [str(REPO / "scripts" / "kind-gpu-up")],
        env={**env, "SKIP_HOST_CHECKS": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    calls = Path(env["CALLS"]).read_text().splitlines()
    create = next(i for i, c in enumerate(calls) if c.startswith("kind create cluster"))
    assert "--config k8s/kind/cluster-gpu.yaml" in calls[create]
    for node in ("ml-pipeline-control-plane", "ml-pipeline-worker"):
        steps = [c for c in calls if c.startswith("docker exec") and node in c]
        assert "umount -R /proc/driver/nvidia" in steps[0]
        assert "nvidia-ctk runtime configure --runtime=containerd --set-as-default" in steps[1]
        assert "systemctl restart containerd" in steps[1]
    runtime_class = next(i for i, c in enumerate(calls) if "apply -f k8s/kind/gpu/runtimeclass.yaml" in c)
    plugin = next(
        i for i, c in enumerate(calls) if c.startswith("helm upgrade --install nvidia-device-plugin")
    )
    wait = max(i for i, c in enumerate(calls) if "allocatable" in c)
    assert create < runtime_class < plugin < wait
    assert "--values k8s/kind/gpu/device-plugin-values.yaml" in calls[plugin]


def test_kind_gpu_up_refuses_a_host_without_a_gpu(tmp_path):
    env = fake_tools(tmp_path)
    result = subprocess.run([str(REPO / "scripts" / "kind-gpu-up")], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "nvidia-smi" in result.stderr
    calls = Path(env["CALLS"])
    assert not calls.exists() or "kind create" not in calls.read_text()


def test_the_images_workflow_pins_dev_through_scripts_promote():
    """The dev overlay says CI writes its digests: this is the workflow that does (it cannot run here)."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "images.yml").read_text())
    runs = "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    assert "scripts/promote build dev" in runs
    for image in ("pipeline", "airflow", "mlflow"):
        assert f'--image-digest "{image}=' in runs
    assert "--chart-revision" in runs and "gh pr create" in runs
    assert "images.yml" in (REPO / "k8s" / "envs" / "dev" / "values.yaml").read_text()
