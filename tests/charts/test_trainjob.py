"""Multi-node training (trainJob.enabled): the chart's Kubeflow Trainer TrainingRuntime and the
TrainJob scripts/trainjob prints for a run, checked against the Trainer's own API models
(kubeflow-trainer-api: a field the Trainer does not know, or a value of the wrong type, does not
survive the round trip), the node pod against Kubernetes' schema, and its GPU scheduling.

What this cannot show: the Trainer controller turning them into a JobSet, pods on several GPU
nodes, NCCL between them. None of that ran here (no cluster, no Trainer, no GPU). The ranks'
traffic is evaluated in tests/charts/test_network_policies.py (the "trainjob" profile); torchrun
configured by the PET_* variables the Trainer sets, with two agents as two nodes, runs in
tests/e2e/test_train_ddp.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.charts.chart_utils import REPO, render_chart
from tests.charts.cluster_model import STEPS, merged, trainjob_pods
from tests.support import unavailable

CUDA_IMAGE = {"repository": "registry.example.com/ml-pipeline/pipeline-cuda", "digest": "sha256:" + "cd" * 32}
GPU = {
    "enabled": True,
    "resource": "nvidia.com/gpu",
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "runtimeClassName": "nvidia",
    "image": CUDA_IMAGE,
}
TRAINJOB = {"trainJob": {"enabled": True, "numNodes": 3, "gpusPerNode": 4}, "airflow": {"dag": {"gpu": GPU}}}
SCRIPT = REPO / "scripts" / "trainjob"


def trainer_api():
    try:
        from kubeflow_trainer_api import models
    except ImportError as exc:
        unavailable(f"the Kubeflow Trainer API models ({exc})", "pip install -e '.[dev]'")
    return models


def runtime(values: dict[str, Any]) -> dict[str, Any]:
    (found,) = [o for o in render_chart(values) if o["kind"] == "TrainingRuntime"]
    return found


def node_pod(obj: dict[str, Any]) -> dict[str, Any]:
    return next(iter(trainjob_pods(obj).values()))


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (node,) = node_pod(obj)["spec"]["containers"]
    return node


def round_trip(model, obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(model.from_dict(obj).to_dict(), default=str))


def test_off_by_default():
    objects = render_chart({})
    assert not [o for o in objects if o["kind"] == "TrainingRuntime"]
    assert not [o for o in objects if "trainjob" in o["metadata"]["name"]]


@pytest.mark.parametrize(
    "values", [TRAINJOB, merged(STEPS, TRAINJOB)], ids=["release-namespace", "steps-namespace"]
)
def test_the_runtime_survives_the_trainer_api_models_unchanged(values):
    models = trainer_api()
    obj = runtime(values)
    assert obj["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert round_trip(models.TrainerV1alpha1TrainingRuntime, obj) == obj
    (job,) = obj["spec"]["template"]["spec"]["replicatedJobs"]
    # the Trainer puts the trainer's settings (image, command, numProcPerNode) on this job only
    assert job["name"] == "node"
    assert job["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    assert obj["spec"]["mlPolicy"] == {"numNodes": 3, "torch": {}}
    dag_namespace = next(
        o
        for o in render_chart(values)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("dag-settings")
    )["data"]["MLP_DAG_NAMESPACE"]
    assert obj["metadata"]["namespace"] == dag_namespace, "beside the step pods, their ConfigMaps and Secret"


def test_the_node_pod_is_a_restricted_step_pod():
    import kubernetes_validate

    obj = runtime(TRAINJOB)
    pod = node_pod(obj)
    kubernetes_validate.validate(pod, "1.33.0", strict=True)
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    node = container(obj)
    assert node["securityContext"]["readOnlyRootFilesystem"] is True
    assert node["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "shm", "mountPath": "/dev/shm"} in node["volumeMounts"]
    shm = next(v for v in spec["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    # the step pods' environment: the same ConfigMap and Secret the DAG's step pods read
    assert [next(iter(e.values()))["name"] for e in node["envFrom"]] == ["mlp-pipeline-env", "mlp-pipeline"]
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "pipeline-step", "the step NetworkPolicy selects it"


def test_the_command_is_the_images_entrypoint_with_torchrun_in_front():
    dockerfile = (REPO / "images" / "pipeline" / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))
    assert entrypoint[-2:] == ["-m", "pipeline"]
    node = container(runtime(TRAINJOB))
    assert node["command"] == [*entrypoint[:-2], "-m", "pipeline.torchrun", "-m", "pipeline"]
    assert "args" not in node, "each TrainJob gives its run's arguments"


def test_gpu_nodes_and_cpu_nodes():
    gpu = runtime(TRAINJOB)
    spec = node_pod(gpu)["spec"]
    node = container(gpu)
    assert node["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert node["image"] == f"{CUDA_IMAGE['repository']}@{CUDA_IMAGE['digest']}"
    assert spec["nodeSelector"] == GPU["nodeSelector"]
    assert spec["tolerations"] == GPU["tolerations"]
    assert spec["runtimeClassName"] == "nvidia"
    assert {"name": "PIPELINE_REQUIRE_GPU", "value": "true"} in node["env"]
    # no PIPELINE_TRAIN__GPUS: under torchrun the world is torchrun's (nodes x ranks per node)
    assert not [e for e in node["env"] if e["name"].startswith("PIPELINE_TRAIN__")]

    cpu = runtime(merged(TRAINJOB, {"trainJob": {"gpusPerNode": 0}}))
    spec = node_pod(cpu)["spec"]
    node = container(cpu)
    assert "nvidia.com/gpu" not in node["resources"]["limits"]
    assert not node["image"].startswith(CUDA_IMAGE["repository"])
    assert "nodeSelector" not in spec and "tolerations" not in spec and "runtimeClassName" not in spec
    assert "PIPELINE_REQUIRE_GPU" not in {e["name"] for e in node["env"]}


def trainjob_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_runs_trainjob_names_the_runtime_and_survives_the_trainer_api_models():
    models = trainer_api()
    import kubernetes_validate
    import yaml

    run_id = "scheduled__2026-11-30T03:00:00+00:00"
    printed = trainjob_cli("--run-id", run_id, "--nodes", "3", "--gpus-per-node", "4")
    assert printed.returncode == 0, printed.stderr
    job = yaml.safe_load(printed.stdout)
    assert round_trip(models.TrainerV1alpha1TrainJob, job) == job
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "TrainingRuntime",
        "name": runtime(TRAINJOB)["metadata"]["name"],
    }
    assert job["spec"]["trainer"] == {
        "args": ["step", "train", "--run-id", run_id],
        "numNodes": 3,
        "numProcPerNode": 4,
    }
    name = job["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 40, name
    assert job["metadata"]["annotations"]["ml-pipeline/run-id"] == run_id
    # metadata as Kubernetes accepts it (a ConfigMap carries the same ObjectMeta rules)
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": job["metadata"]}, "1.33.0", strict=True
    )
    # run ids that differ only where a name cannot: different TrainJobs
    other = yaml.safe_load(trainjob_cli("--run-id", run_id.replace(":", "_")).stdout)
    assert other["metadata"]["name"] != name
    cpu = yaml.safe_load(trainjob_cli("--run-id", "r1", "--gpus-per-node", "0").stdout)
    assert cpu["spec"]["trainer"]["numProcPerNode"] == 1


@pytest.mark.parametrize("run_id", ["../other", "a/b", "", "-x"])
def test_a_run_id_the_pipeline_refuses_is_refused(run_id):
    refused = trainjob_cli(f"--run-id={run_id}")
    assert refused.returncode == 2
    assert "is not a pipeline run id" in refused.stderr
    assert not refused.stdout
