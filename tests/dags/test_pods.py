"""Every step's pod, built without a cluster, is a valid Kubernetes Pod shaped by MLP_DAG_*.

Pods are built the way the operator builds them before it calls the API: templates rendered with a
run's context, then ``build_pod_request_obj(ctx, dry_run=True)``, serialised with the Kubernetes
client and validated strictly against the Kubernetes 1.33 schema.
"""

from __future__ import annotations

import json
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.steps import STEP_NAMES, STEPS
from tests.dags.conftest import CHECK, PREFLIGHT, load_dag
from tests.support import unavailable

pytestmark = pytest.mark.airflow

RUN_ID = "scheduled__2026-11-30T03:00:00+00:00"
GPU_STEPS = {s.name for s in STEPS if s.uses_gpu}
DIGEST = "sha256:" + "ab" * 32


def build_pods(params: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    from kubernetes.client import ApiClient

    dag = load_dag()
    pods = {}
    for task in dag.tasks:
        if task.task_id == CHECK:  # no pod: it checks the params in the worker
            continue
        ti = types.SimpleNamespace(
            dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1, run_id=RUN_ID
        )
        ctx = {
            "ti": ti,
            "task_instance": ti,
            "run_id": RUN_ID,
            "dag": dag,
            "task": task,
            "params": params or {"source": None, "overrides": []},
        }
        task.render_template_fields(ctx)
        pod = task.build_pod_request_obj(ctx, dry_run=True)
        pods[task.task_id] = ApiClient().sanitize_for_serialization(pod)
    return pods


def validate(obj: dict[str, Any]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate", "pip install kubernetes-validate")
    kubernetes_validate.validate(obj, "1.33.0", strict=True)


def base_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
    return container


@pytest.fixture
def cluster_env(mlp_env):
    mlp_env.setenv("MLP_DAG_IMAGE", f"registry.example.com/ml-pipeline/pipeline@{DIGEST}")
    mlp_env.setenv("MLP_DAG_IMAGE_PULL_POLICY", "Always")
    mlp_env.setenv("MLP_DAG_IMAGE_PULL_SECRETS", "regcred,mirror-cred")
    mlp_env.setenv("MLP_DAG_NAMESPACE", "ml-pipeline")
    mlp_env.setenv("MLP_DAG_SERVICE_ACCOUNT", "pipeline-steps")
    mlp_env.setenv("MLP_DAG_ENV_CONFIGMAPS", "mlp-env")
    mlp_env.setenv("MLP_DAG_ENV_SECRETS", "mlp-s3,mlp-feature-store")
    mlp_env.setenv("MLP_DAG_CONFIG_CONFIGMAP", "mlp-config")
    mlp_env.setenv("MLP_DAG_ON_FINISH_ACTION", "keep_pod")
    mlp_env.setenv(
        "MLP_DAG_RESOURCES",
        '{"train": {"limits": {"memory": "6Gi"}}, "default": {"requests": {"cpu": "100m"}}}',
    )
    mlp_env.setenv("MLP_DAG_GPU_NODE_SELECTOR", '{"nvidia.com/gpu.present": "true"}')
    mlp_env.setenv(
        "MLP_DAG_GPU_TOLERATIONS",
        '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},'
        ' {"key": "spot", "operator": "Equal", "value": "yes", "effect": "NoExecute",'
        ' "tolerationSeconds": 60}]',
    )
    return mlp_env


@pytest.mark.parametrize("gpu", [False, True], ids=["gpu-off", "gpu-on"])
def test_every_step_pod_validates_strictly(cluster_env, gpu):
    cluster_env.setenv("MLP_DAG_GPU_ENABLED", str(gpu).lower())
    pods = build_pods()
    assert list(pods) == [PREFLIGHT, *STEP_NAMES]
    for task_id, pod in pods.items():
        validate(pod)
        container = base_container(pod)
        # No command: the image's entrypoint (tini -- python -m pipeline) runs the arguments.
        assert not container.get("command")
        expected = ["doctor", "--json"] if task_id == PREFLIGHT else ["step", task_id, "--run-id", RUN_ID]
        assert container["args"] == expected


@pytest.mark.parametrize("gpu", [False, True], ids=["gpu-off", "gpu-on"])
def test_only_the_train_pod_gets_the_gpu(cluster_env, gpu):
    cluster_env.setenv("MLP_DAG_GPU_ENABLED", str(gpu).lower())
    cluster_env.setenv("MLP_DAG_GPU_COUNT", "2")
    pods = build_pods()
    assert {"train"} == GPU_STEPS
    for step, pod in pods.items():
        limits = base_container(pod)["resources"].get("limits", {})
        env = {e["name"]: e.get("value") for e in base_container(pod)["env"]}
        if gpu and step in GPU_STEPS:
            assert limits["nvidia.com/gpu"] == "2"
            assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert pod["spec"]["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Equal",
                    "value": "yes",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                },
            ]
            assert env["PIPELINE_REQUIRE_GPU"] == "true"
            assert env["PIPELINE_TRAIN__GPUS"] == "2", "one training rank per GPU"
            # torchrun in front of the image's entrypoint; the arguments are the step's own.
            assert base_container(pod)["command"] == [
                "/usr/bin/tini", "-g", "--", "python", "-m", "pipeline.torchrun",
                "--standalone", "--nproc-per-node", "2", "-m", "pipeline",
            ]  # fmt: skip
            assert base_container(pod)["args"] == ["step", "train", "--run-id", RUN_ID]
            shm = next(v for v in pod["spec"]["volumes"] if v["name"] == "shm")
            assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
            assert {"name": "shm", "mountPath": "/dev/shm"} in base_container(pod)["volumeMounts"]
        else:
            assert "nvidia.com/gpu" not in limits
            assert not pod["spec"].get("nodeSelector")
            assert not pod["spec"].get("tolerations")
            assert "PIPELINE_REQUIRE_GPU" not in env
            assert "PIPELINE_TRAIN__GPUS" not in env
            assert not base_container(pod).get("command"), "the image's entrypoint, one process"
            assert "shm" not in {v["name"] for v in pod["spec"]["volumes"]}


CUDA_IMAGE = f"registry.example.com/ml-pipeline/pipeline-cuda@sha256:{'cd' * 32}"


@pytest.mark.parametrize("gpu", [False, True], ids=["gpu-off", "gpu-on"])
def test_only_the_train_pod_gets_the_runtime_class_and_the_cuda_image(cluster_env, gpu):
    cluster_env.setenv("MLP_DAG_GPU_ENABLED", str(gpu).lower())
    cluster_env.setenv("MLP_DAG_GPU_RUNTIME_CLASS", "nvidia")
    cluster_env.setenv("MLP_DAG_GPU_IMAGE", CUDA_IMAGE)
    pods = build_pods()
    cpu_image = f"registry.example.com/ml-pipeline/pipeline@{DIGEST}"
    for step, pod in pods.items():
        validate(pod)
        env = {e["name"]: e.get("value") for e in base_container(pod)["env"]}
        if gpu and step in GPU_STEPS:
            assert pod["spec"]["runtimeClassName"] == "nvidia"
            assert base_container(pod)["image"] == CUDA_IMAGE
            assert env["PIPELINE_IMAGE_DIGEST"] == "sha256:" + "cd" * 32
        else:
            assert not pod["spec"].get("runtimeClassName"), step
            assert base_container(pod)["image"] == cpu_image, step
            assert env["PIPELINE_IMAGE_DIGEST"] == DIGEST, step


def test_without_a_cuda_image_the_train_pod_keeps_the_pipeline_image(cluster_env):
    cluster_env.setenv("MLP_DAG_GPU_ENABLED", "true")
    pods = build_pods()
    assert base_container(pods["train"])["image"] == f"registry.example.com/ml-pipeline/pipeline@{DIGEST}"
    assert not pods["train"]["spec"].get("runtimeClassName")


def test_a_malformed_runtime_class_is_refused(cluster_env):
    from ml_pipeline_support.settings import DagSettings

    with pytest.raises(ValueError, match="MLP_DAG_GPU_RUNTIME_CLASS"):
        DagSettings.from_env(("train",), {"MLP_DAG_GPU_RUNTIME_CLASS": "Not A Name"})


def test_step_pods_get_no_kubernetes_api_token(cluster_env):
    for step, pod in build_pods().items():
        assert pod["spec"]["automountServiceAccountToken"] is False, step


def test_the_xcom_sidecar_image_comes_from_the_kubernetes_connection(cluster_env):
    """The provider's own mechanism: `xcom_sidecar_container_image` in the extra of the
    kubernetes_default connection (the chart sets it as AIRFLOW_CONN_KUBERNETES_DEFAULT)."""
    pinned = f"registry.example.com/library/alpine@sha256:{'ef' * 32}"
    cluster_env.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps(
            {"conn_type": "kubernetes", "extra": {"in_cluster": True, "xcom_sidecar_container_image": pinned}}
        ),
    )
    for step, pod in build_pods().items():
        (sidecar,) = [c for c in pod["spec"]["containers"] if c["name"] == "airflow-xcom-sidecar"]
        assert sidecar["image"] == pinned, step


def test_gpu_resource_name_is_configurable(cluster_env):
    cluster_env.setenv("MLP_DAG_GPU_ENABLED", "true")
    cluster_env.setenv("MLP_DAG_GPU_RESOURCE", "amd.com/gpu")
    pods = build_pods()
    assert base_container(pods["train"])["resources"]["limits"]["amd.com/gpu"] == "1"


def test_pod_settings_come_from_the_environment(cluster_env):
    pods = build_pods()
    dag = load_dag()
    for step, pod in pods.items():
        spec, container = pod["spec"], base_container(pod)
        assert pod["metadata"]["namespace"] == "ml-pipeline"
        assert pod["metadata"]["labels"]["ml-pipeline/step"] == step
        assert spec["serviceAccountName"] == "pipeline-steps"
        assert spec["automountServiceAccountToken"] is False
        assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-cred"}]
        assert spec["restartPolicy"] == "Never"
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["image"] == f"registry.example.com/ml-pipeline/pipeline@{DIGEST}"
        assert container["imagePullPolicy"] == "Always"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        # The pipeline's configuration arrives at run time, from ConfigMaps and Secrets.
        assert container["envFrom"] == [
            {"configMapRef": {"name": "mlp-env"}},
            {"secretRef": {"name": "mlp-s3"}},
            {"secretRef": {"name": "mlp-feature-store"}},
        ]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PIPELINE_CONFIG"] == "/etc/ml-pipeline/config.yaml"
        assert env["PIPELINE_IMAGE_DIGEST"] == DIGEST
        assert "PIPELINE_HOME" not in env  # the image's default, or the chart's env ConfigMap
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for writable in ("/var/lib/ml-pipeline", "/tmp"):  # the only places a step writes
            assert "emptyDir" in volumes[mounts[writable]["name"]]
        assert mounts["/etc/ml-pipeline"]["readOnly"] is True
        assert "/airflow/xcom" in mounts  # the step's return.json comes back through the sidecar
        assert volumes["config"]["configMap"]["name"] == "mlp-config"
        requests = container["resources"]["requests"]
        limits = container["resources"]["limits"]
        if step == "train":
            # train keeps its own built-in request of 1 CPU; its memory limit is overridden
            assert (requests, limits) == ({"cpu": "1", "memory": "1Gi"}, {"memory": "6Gi"})
        else:
            assert (requests, limits) == ({"cpu": "100m", "memory": "512Mi"}, {"memory": "2Gi"})
        task = dag.get_task(step)
        assert task.on_finish_action.value == "keep_pod"
        assert task.do_xcom_push is True
        assert task.deferrable is False
        assert spec["activeDeadlineSeconds"] == 600 + (300 if step == PREFLIGHT else 3600)


def test_manual_run_params_become_set_options(cluster_env):
    # an operator allowed these keys (the default allows train.* but neither the source nor the gate)
    cluster_env.setenv("MLP_DAG_TRIGGER_ALLOWED_KEYS", "data.source.uri, train.*, gate.margin")
    pods = build_pods(
        {"source": "s3://bucket/penguins.parquet", "overrides": ["train.max_epochs=5", "gate.margin=0.01"]}
    )
    for step, pod in pods.items():
        command = ["doctor", "--json"] if step == PREFLIGHT else ["step", step, "--run-id", RUN_ID]
        assert base_container(pod)["args"] == [
            *command,
            "--set", "data.source.uri=s3://bucket/penguins.parquet",
            "--set", "train.max_epochs=5",
            "--set", "gate.margin=0.01",
        ]  # fmt: skip


def test_a_template_in_a_param_is_passed_verbatim(cluster_env):
    cluster_env.setenv("MLP_DAG_TRIGGER_ALLOWED_KEYS", "data.source.uri,data.name")
    pods = build_pods({"source": "{{ 7 * 7 }}", "overrides": ["data.name={{ run_id }}"]})
    assert base_container(pods["ingest"])["args"][-4:] == [
        "--set", "data.source.uri={{ 7 * 7 }}", "--set", "data.name={{ run_id }}"
    ]  # fmt: skip


def test_a_malformed_override_fails_without_retry(cluster_env):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="not key=value"):
        build_pods({"source": None, "overrides": ["--config=/etc/passwd"]})


# --------------------------------------------------------------------------------------------
# The pod's exit code decides whether Airflow retries: the real provider's cleanup, fed the pod
# by a stub Kubernetes API server over HTTP (GET and PATCH of one pod).
# --------------------------------------------------------------------------------------------


class _StubApi(BaseHTTPRequestHandler):
    pod: dict[str, Any] = {}
    requests: list[str] = []

    def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(f"GET {self.path}")
        self._send(self.pod)

    def do_PATCH(self):
        self.requests.append(f"PATCH {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(self.pod)

    def do_DELETE(self):
        self.requests.append(f"DELETE {self.path}")
        self._send({"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_kube_api(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubApi)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "stub", "user": {"token": "stub"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                "current-context": "stub",
            }
        )
    )
    _StubApi.requests = []
    _StubApi.kubeconfig = str(kubeconfig)
    yield _StubApi
    server.shutdown()


def failed_pod(exit_code: int, log_tail: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mlp-validate-abc", "namespace": "default", "labels": {}},
        "spec": {"containers": [{"name": "base", "image": "x"}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "base",
                    "image": "x",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code, "reason": "Error", "message": log_tail}},
                }
            ],
        },
    }


# The tail of a failed step's log, as the pipeline CLI writes it (its last line is the summary).
POD_LOG_TAIL = (
    "03:00:05 INFO    pipeline.steps.validate: 31 expectations on 344 rows\n"
    "step validate: bad input: validation failed, 1 rule(s) broken:\n"
    "  - column 'flipper_length_mm': 1 of 344 rows violate it (rule: finite values within [150.0, 250.0])\n"
    "pipeline: error: step validate: validation failed, 1 rule(s) broken: | - column 'flipper_length_mm': "
    "1 of 344 rows violate it (rule: finite values within [150.0, 250.0])\n"
)


@pytest.mark.parametrize(("exit_code", "retryable"), [(65, False), (75, True), (137, True), (2, False)])
def test_pod_exit_code_decides_retry(mlp_env, stub_kube_api, exit_code, retryable):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    from kubernetes.client import ApiClient
    from ml_pipeline_support.operators import StepBadInput, StepFailed

    stub_kube_api.pod = failed_pod(exit_code, POD_LOG_TAIL)
    remote_pod = ApiClient()._ApiClient__deserialize(stub_kube_api.pod, "V1Pod")
    task = load_dag().get_task("validate")
    task.config_file = stub_kube_api.kubeconfig  # the operator's own kubeconfig parameter
    with pytest.raises(AirflowException) as raised:
        task.cleanup(pod=remote_pod, remote_pod=remote_pod, context=None)
    error = raised.value
    assert isinstance(error, AirflowFailException) is (not retryable)
    assert isinstance(error, StepFailed if retryable else StepBadInput)
    assert error.step == "validate"
    assert error.exit_code == exit_code
    assert error.error_line.startswith("step validate: validation failed, 1 rule(s) broken")
    assert error.error_line.endswith("(rule: finite values within [150.0, 250.0])")
    assert any(
        r.startswith("GET /api/v1/namespaces/default/pods/mlp-validate-abc") for r in stub_kube_api.requests
    )


def test_the_torchrun_command_keeps_the_images_entrypoint():
    """The multi-GPU train pod replaces the image's ENTRYPOINT: it must be that entrypoint with
    torchrun in front of ``-m pipeline``, or the pod would run something the image never tested."""
    import re
    from pathlib import Path

    from ml_pipeline_support.tasks import torchrun_command

    dockerfile = (Path(__file__).resolve().parents[2] / "images" / "pipeline" / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))
    command = torchrun_command(4)
    assert entrypoint[-1] == "pipeline" and entrypoint[-2] == "-m"
    assert command[: len(entrypoint) - 1] == entrypoint[:-1]
    assert command[len(entrypoint) - 1 :] == [
        "pipeline.torchrun", "--standalone", "--nproc-per-node", "4", "-m", "pipeline",
    ]  # fmt: skip
