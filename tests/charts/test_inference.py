"""The inference server the chart deploys (templates/inference/): `pipeline serve <model>@<alias>`
on the pipeline image with the step pods' environment.

The rendered objects (off by default, on in the kind overlay; PDB, HPA, probes, security, where
its settings and secrets come from), their validation against Kubernetes 1.33, the NetworkPolicy
flows it needs and the ones it must not have (tests/charts/netpol.py), NOTES.txt, and, last, the
rendered container's own command and environment run on this machine against a model trained
here: its probes and `/invocations` answer as the kubelet and a client would see them.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.charts.chart_utils import (
    CHART,
    EXTERNAL_VALUES,
    KIND_VALUES,
    NAMESPACE,
    RELEASE,
    REPO,
    HelmFailedError,
    get,
    pod_spec,
    render_chart,
    render_text,
)
from tests.charts.cluster_model import merged, overlay, rendered
from tests.charts.netpol import External, Node, Pod, Policies

pytestmark = pytest.mark.charts

ON: dict[str, Any] = {"inference": {"enabled": True}}
STEPS_NS = "ml-steps"
NAME = f"{RELEASE}-inference"
# the penguins model's feature columns (not the target, not `year`)
FEATURES = ("island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex")


def inference_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "inference"
        or o["metadata"]["name"] == NAME
    ]


def deployment(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return get(render_chart(merged(ON, values or {})), "Deployment", NAME)


def container(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (only,) = pod_spec(deployment(values))["containers"]
    return only


def gen():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_schema", CHART / "hack" / "generate_schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_schema", module)
    spec.loader.exec_module(module)
    return module


# --- rendered objects ------------------------------------------------------------------------------


def test_off_by_default_and_nothing_mentions_it():
    objects = render_chart()
    assert not inference_objects(objects)
    assert "inference" not in json.dumps([o for o in objects if o["kind"] == "NetworkPolicy"])
    assert "port-forward svc/mlp-inference" not in render_text()


def test_on_in_the_kind_overlay():
    assert KIND_VALUES["inference"]["enabled"] is True
    kinds = {o["kind"] for o in inference_objects(render_chart(KIND_VALUES))}
    assert {"Deployment", "Service", "ServiceAccount", "NetworkPolicy"} <= kinds


def test_enabled_renders_a_deployment_service_account_and_policy_in_the_pipeline_namespace():
    objects = inference_objects(render_chart(merged(ON, {"global": {"pipeline": {"namespace": STEPS_NS}}})))
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == {
        ("Deployment", NAME),
        ("Service", NAME),
        ("ServiceAccount", NAME),
        ("NetworkPolicy", NAME),
    }
    assert {o["metadata"]["namespace"] for o in objects} == {STEPS_NS}


def test_the_command_is_pipeline_serve_of_the_configured_model_at_champion():
    c = container()
    assert "command" not in c  # the image's entrypoint (tini, python -m pipeline) stays PID 1
    assert c["args"] == ["serve", "penguins@champion", "--host", "0.0.0.0", "--port", "5001"]  # noqa: S104
    assert c["image"] == "ml-pipeline/pipeline:0.1.0"
    assert c["ports"] == [{"name": "http", "containerPort": 5001, "protocol": "TCP"}]
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", (REPO / "images/pipeline/Dockerfile").read_text(), re.M)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1))[-3:] == ["python", "-m", "pipeline"]


@pytest.mark.parametrize(
    ("values", "ref"),
    [
        ({"pipeline": {"modelName": "wine"}}, "wine@champion"),
        ({"pipeline": {"modelName": "wine"}, "inference": {"model": {"name": "other"}}}, "other@champion"),
        ({"inference": {"model": {"alias": "challenger"}}}, "penguins@challenger"),
        ({"pipeline": {"config": "data:\n  name: wine\n"}}, "wine@champion"),
        (
            {"global": {"pipeline": {"existingConfigMap": "cfg"}}, "inference": {"model": {"name": "m"}}},
            "m@champion",
        ),
    ],
)
def test_the_model_is_the_one_the_pipeline_registers(values, ref):
    assert container(values)["args"][1] == ref


def test_no_model_name_known_is_refused_naming_the_keys():
    with pytest.raises(HelmFailedError) as failed:
        render_chart(merged(ON, {"global": {"pipeline": {"existingConfigMap": "cfg"}}}))
    assert "inference.model.name" in failed.value.stderr and "pipeline.modelName" in failed.value.stderr


def test_probes_ready_when_a_model_is_loaded_and_alive_while_waiting_for_one():
    c = container()
    assert c["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    # liveness and startup ask /version, which answers with or without a model
    assert c["livenessProbe"]["httpGet"] == {"path": "/version", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/version", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600  # inference.startupTimeoutSeconds
    longer = container({"inference": {"startupTimeoutSeconds": 1200}})["startupProbe"]
    assert longer["periodSeconds"] * longer["failureThreshold"] == 1200


def test_rollouts_keep_a_ready_server_and_shutdown_has_time_to_flush():
    d = deployment()
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod_spec(d)["terminationGracePeriodSeconds"] == 45
    assert (
        pod_spec(deployment({"inference": {"serve": {"shutdownFlushSeconds": 60.0}}}))[
            "terminationGracePeriodSeconds"
        ]
        == 75
    )


def test_security_context_and_scratch_volumes():
    spec = pod_spec(deployment())
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == NAME
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    (c,) = spec["containers"]
    context = c["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/tmp", "/var/lib/ml-pipeline"):
        assert "emptyDir" in volumes[mounts[path]], path
    assert volumes[mounts["/etc/ml-pipeline"]]["configMap"]["name"] == f"{RELEASE}-pipeline-config"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


def test_its_service_account_has_no_token_and_no_role():
    objects = render_chart(ON)
    account = get(objects, "ServiceAccount", NAME)
    assert account["automountServiceAccountToken"] is False
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert NAME not in json.dumps(binding["subjects"])
    other = render_chart(merged(ON, {"inference": {"serviceAccount": {"create": False, "name": "shop-sa"}}}))
    assert not [o for o in other if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == NAME]
    assert pod_spec(get(other, "Deployment", NAME))["serviceAccountName"] == "shop-sa"


def test_the_service_is_cluster_ip_on_the_named_port():
    service = get(render_chart(merged(ON, {"inference": {"port": 8080}})), "Service", NAME)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"].items()
        <= pod_spec_labels(deployment({"inference": {"port": 8080}})).items()
    )


def pod_spec_labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["spec"]["template"]["metadata"]["labels"]


# --- environment and secrets -------------------------------------------------------------------------


def test_env_and_secrets_come_exactly_as_the_step_pods_get_them():
    values = merged(
        ON,
        {
            "global": {"pipeline": {"namespace": STEPS_NS}},
            "airflow": {"dag": {"extraEnvConfigMaps": ["team-env"], "extraEnvSecrets": ["team-keys"]}},
        },
    )
    objects = render_chart(values)
    c = container(values)
    settings = get(objects, "ConfigMap", f"{RELEASE}-dag-settings")["data"]
    config_maps = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
    secrets = [s["secretRef"]["name"] for s in c["envFrom"] if "secretRef" in s]
    assert config_maps == settings["MLP_DAG_ENV_CONFIGMAPS"].split(",")
    assert secrets == settings["MLP_DAG_ENV_SECRETS"].split(",")
    env = {e["name"]: e for e in c["env"]}
    assert env["PIPELINE_CONFIG"]["value"] == "/etc/ml-pipeline/config.yaml"
    # the tracking URI and the feature store, fully qualified, through the step pods' ConfigMap
    data = get(objects, "ConfigMap", f"{RELEASE}-pipeline-env")["data"]
    assert data["MLFLOW_TRACKING_URI"] == f"http://{RELEASE}-mlflow.{NAMESPACE}.svc.cluster.local:5000"
    assert f"@{RELEASE}-postgresql.{NAMESPACE}.svc.cluster.local:5432/" in data["PIPELINE_FEATURE_STORE_URL"]


def test_no_secret_value_is_rendered_into_the_deployment():
    objects = render_chart(ON)
    text = json.dumps(get(objects, "Deployment", NAME))
    # every generated password and key of the release (user names are not secret: MLflow's is `pipeline`)
    values = [
        base64.b64decode(v).decode()
        for o in objects
        if o["kind"] == "Secret"
        for k, v in (o.get("data") or {}).items()
        if re.search(r"(?i)password|secret|key|token", k)
    ]
    assert values
    leaked = [v for v in values if len(v) >= 8 and v in text]
    assert not leaked
    for entry in container()["env"]:
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", entry["name"]):
            assert "value" not in entry, entry["name"]
    assert get(objects, "Deployment", NAME)["spec"]["template"]["metadata"]["annotations"][
        "checksum/pipeline-secret"
    ]


def test_with_existing_secrets_the_deployment_reads_the_named_ones():
    c = container(EXTERNAL_VALUES)
    assert {"secretRef": {"name": "team-pipeline"}} in c["envFrom"]


def test_each_serve_value_reaches_its_variable_and_parses_back():
    from pipeline.settings import ServeSettings

    samples = {
        "pollIntervalSeconds": 0.5,
        "maxRequestBytes": 1048576,
        "logPredictions": False,
        "logQueueMax": 50,
        "logBatchRows": 7,
        "logFlushSeconds": 2.5,
        "shutdownFlushSeconds": 12.0,
    }
    module = gen()
    settings = list(module.serve_settings())
    assert {s.path.rsplit(".", 1)[1] for s in settings} == set(samples)
    env = {e["name"]: e.get("value") for e in container({"inference": {"serve": samples}})["env"]}
    for setting in settings:
        key = setting.path.rsplit(".", 1)[1]
        field = module.SERVE_VALUES[setting.path]
        assert setting.env == f"PIPELINE_SERVE__{field.upper()}"
        parsed = ServeSettings.model_validate({field: env[setting.env]})
        assert getattr(parsed, field) == samples[key], setting.env
    defaults = {e["name"]: e.get("value") for e in container()["env"]}
    assert (
        ServeSettings.model_validate({module.SERVE_VALUES[s.path]: defaults[s.env] for s in settings})
        == ServeSettings()
    )


def test_extra_env_is_set_on_the_container_over_the_step_pods_configmap():
    values = merged(ON, {"inference": {"env": {"PIPELINE_LOG_LEVEL": "DEBUG"}}})
    env = {e["name"]: e.get("value") for e in container(values)["env"]}
    assert env["PIPELINE_LOG_LEVEL"] == "DEBUG"  # a container's env wins over its envFrom
    assert (
        get(render_chart(values), "ConfigMap", f"{RELEASE}-pipeline-env")["data"]["PIPELINE_LOG_LEVEL"]
        == "INFO"
    )


# --- replicas, PDB, HPA --------------------------------------------------------------------------------


def test_one_replica_no_pdb_no_hpa():
    objects = render_chart(ON)
    assert get(objects, "Deployment", NAME)["spec"]["replicas"] == 1
    assert not [o for o in objects if o["kind"] in ("PodDisruptionBudget", "HorizontalPodAutoscaler")]


def test_more_replicas_get_a_pdb_selecting_them():
    objects = render_chart(merged(ON, {"inference": {"replicas": 3}}))
    d = get(objects, "Deployment", NAME)
    assert d["spec"]["replicas"] == 3
    pdb = get(objects, "PodDisruptionBudget", NAME)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_spec_labels(d).items()


def test_autoscaling_owns_the_replica_count():
    values = merged(ON, {"inference": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}}})
    objects = render_chart(values)
    d = get(objects, "Deployment", NAME)
    assert "replicas" not in d["spec"]
    hpa = get(objects, "HorizontalPodAutoscaler", NAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert get(objects, "PodDisruptionBudget", NAME)
    # an autoscaler that may go down to one replica needs no budget
    single = render_chart(merged(values, {"inference": {"autoscaling": {"minReplicas": 1}}}))
    assert not [o for o in single if o["kind"] == "PodDisruptionBudget"]


def test_an_autoscaler_minimum_above_its_maximum_is_refused():
    with pytest.raises(HelmFailedError) as failed:
        render_chart(
            merged(ON, {"inference": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}})
        )
    assert "inference.autoscaling.minReplicas" in failed.value.stderr


@pytest.mark.parametrize(
    "values",
    [
        {"inference": {"replicas": 0}},
        {"inference": {"port": 0}},
        {"inference": {"model": {"alias": "a/b"}}},
        {"inference": {"serve": {"pollIntervalSeconds": 0}}},
        {"inference": {"serve": {"logQueueMax": "many"}}},
        {"inference": {"serve": {"unknown": 1}}},
        {"inference": {"autoscaling": {"targetCPUUtilizationPercentage": 0}}},
    ],
)
def test_bad_values_are_refused_by_the_schema(values):
    with pytest.raises(HelmFailedError) as failed:
        render_chart(merged(ON, values))
    assert "inference" in failed.value.stderr


# --- Kubernetes schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        ON,
        KIND_VALUES,
        merged(
            ON,
            {
                "inference": {"autoscaling": {"enabled": True}},
                "global": {"pipeline": {"namespace": STEPS_NS}},
            },
        ),
        merged(ON, {"inference": {"replicas": 2, "nodeSelector": {"pool": "cpu"}}}),
    ],
    ids=["on", "kind", "autoscaling-steps-namespace", "replicas"],
)
def test_the_objects_validate_against_kubernetes_1_33(values):
    import kubernetes_validate

    objects = inference_objects(render_chart(values))
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


# --- NetworkPolicy flows (tests/charts/netpol.py) ----------------------------------------------------------

DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, ip="10.244.9.2")
KUBE_API = [(External("172.18.0.2"), 6443), (External("10.0.0.1"), 443)]


class Flows:
    """A profile with inference on: its pods, its policies, and Service lookups."""

    def __init__(self, values: dict[str, Any], namespace: str = NAMESPACE) -> None:
        self.cluster = rendered(merged(ON, values), namespace)
        self.namespace = namespace
        self.tns = self.cluster.pipeline_namespace
        self.policies = Policies([o for o in self.cluster.objects if o["kind"] == "NetworkPolicy"])
        self.lenient = Policies(
            [o for o in self.cluster.objects if o["kind"] == "NetworkPolicy"], ipblock_matches_pods=True
        )
        self.server = self.cluster.pods[NAME]

    def pod(self, name: str) -> Pod:
        return self.cluster.pods[name if name in ("step", "worker") else f"{RELEASE}-{name}"]

    def landed(self, service: str, port: int, namespace: str | None = None) -> list[tuple[Pod, int]]:
        found = self.cluster.backends(namespace or self.namespace, f"{RELEASE}-{service}", port)
        assert found, f"Service {service}:{port} selects no pod"
        return found

    def reaches(self, src: Pod | Node, service: str, port: int, namespace: str | None = None) -> bool:
        return all(self.policies.allowed(src, dst, p) for dst, p in self.landed(service, port, namespace))

    def blocked(self, src: Pod | Node, service: str, port: int, namespace: str | None = None) -> bool:
        return not any(
            e.allowed(src, dst, p)
            for e in (self.policies, self.lenient)
            for dst, p in self.landed(service, port, namespace)
        )

    def client(self, namespace: str, labelled: bool = True) -> Pod:
        labels = {"app": "shop", **({"ml-pipeline/inference-client": "true"} if labelled else {})}
        return Pod(f"shop-{namespace}-{labelled}", namespace, labels, ip="10.244.5.5")


@pytest.mark.parametrize(
    ("values", "namespace"),
    [
        ({}, NAMESPACE),
        ({"global": {"pipeline": {"namespace": STEPS_NS}}}, NAMESPACE),
        (KIND_VALUES, "ml-pipeline"),
    ],
    ids=["defaults", "steps-namespace", "kind"],
)
def test_the_server_reaches_mlflow_postgresql_minio_and_dns(values, namespace):
    f = Flows(values, namespace)
    assert f.server.namespace == f.tns
    assert f.reaches(f.server, "mlflow", 5000)
    assert f.reaches(f.server, "postgresql", 5432)
    assert f.reaches(f.server, "minio", 9000)
    for protocol in ("UDP", "TCP"):
        assert f.policies.allowed(f.server, DNS, 53, protocol)
    assert f.policies.selecting(f.server, "Ingress") and f.policies.selecting(f.server, "Egress")


def test_the_server_reaches_the_managed_database_in_the_prod_overlay():
    f = Flows(overlay("prod"), "ml-prod")
    assert f.reaches(f.server, "postgres-r", 5432)
    assert f.reaches(f.server, "postgres-rw", 5432)
    assert f.reaches(f.server, "mlflow", 5000)


def test_external_services_go_through_external_egress():
    f = Flows(EXTERNAL_VALUES)
    assert f.policies.allowed(f.server, External("52.95.0.1"), 443)  # the S3 endpoint
    assert not f.policies.allowed(f.server, External("10.20.0.5"), 6432)  # a private database: needs an entry


def test_the_server_calls_nothing_else():
    f = Flows({"global": {"pipeline": {"namespace": STEPS_NS}}})
    assert f.blocked(f.server, "airflow-api-server", 8080)
    for endpoint, port in KUBE_API:
        assert not f.lenient.allowed(f.server, endpoint, port)
    assert not f.policies.allowed(f.server, f.pod("step"), 8080)
    assert not f.lenient.allowed(f.server, External("10.1.2.3"), 443)
    assert not f.policies.allowed(f.server, External("93.184.216.34"), 80)


@pytest.mark.parametrize("tns", [NAMESPACE, STEPS_NS])
def test_only_labelled_clients_of_its_namespace_and_the_node_may_call_it(tns):
    f = Flows({"global": {"pipeline": {"namespace": tns}}})
    port = 5001
    assert f.reaches(f.client(tns), "inference", port, tns)
    assert f.reaches(Node("node-1", "172.18.0.3"), "inference", port, tns)  # probes, kubectl port-forward
    assert f.blocked(f.client(tns, labelled=False), "inference", port, tns)
    assert f.blocked(f.client("other"), "inference", port, tns)
    for name in ("step", "mlflow", "airflow-api-server", "airflow-scheduler", "minio", "postgresql"):
        assert f.blocked(f.pod(name), "inference", port, tns), name
    # a labelled client on another port than the server's is refused as well
    (server, _), *_ = f.landed("inference", port, tns)
    assert not f.policies.allowed(f.client(tns), server, 5000)


def test_the_clients_labels_and_extra_sources_are_configurable():
    web = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}}
    f = Flows(
        {
            "inference": {
                "port": 8080,
                "networkPolicy": {
                    # maps merge with the defaults: null drops the default label
                    "clientPodLabels": {"ml-pipeline/inference-client": None, "role": "scorer"},
                    "ingressFrom": [web],
                },
            }
        }
    )
    scorer = Pod("scorer", NAMESPACE, {"role": "scorer"}, ip="10.244.5.6")
    assert f.reaches(scorer, "inference", 8080)
    assert f.reaches(Pod("web-app", "web", {"app": "web"}, ip="10.244.5.7"), "inference", 8080)
    assert f.blocked(f.client(NAMESPACE), "inference", 8080)  # the default label no longer counts


def test_the_step_pods_policy_is_unchanged_by_inference():
    off = [
        o
        for o in render_chart()
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == f"{RELEASE}-pipeline-steps"
    ]
    on = [
        o
        for o in render_chart(ON)
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == f"{RELEASE}-pipeline-steps"
    ]
    assert off == on


# --- NOTES.txt ----------------------------------------------------------------------------------------------


def notes(values: dict[str, Any]) -> str:
    from tests.charts.chart_utils import run_helm

    path = Path(__import__("tempfile").mkdtemp()) / "values.json"
    path.write_text(json.dumps(values))
    result = run_helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "--values", str(path)
    )
    return result.stdout.split("\nNOTES:\n", 1)[1]


def test_notes_give_the_port_forward_and_a_curl_to_invocations():
    text = notes(merged(ON, {"global": {"pipeline": {"namespace": STEPS_NS}}}))
    assert f"kubectl -n {STEPS_NS} port-forward svc/{NAME} 5001:5001" in text
    assert "curl -s http://localhost:5001/ping" in text
    (body,) = re.findall(r"curl -s http://localhost:5001/invocations .*?-d '(.+?)'", text, re.S)
    record = json.loads(body)["dataframe_records"][0]
    # the example row has exactly the model's feature columns (penguins: not the target, not `year`)
    assert set(record) == set(FEATURES)
    assert f"{NAME}.{STEPS_NS}.svc.cluster.local:5001" in text
    assert "port-forward svc/mlp-inference" not in notes({})


# --- behaviour: the rendered container, run here -----------------------------------------------------------


def entrypoint_here() -> list[str]:
    """The image's ENTRYPOINT as this machine runs it: without tini (PID 1 in the pod), this
    interpreter for `python`."""
    match = re.search(r"^ENTRYPOINT (.+)$", (REPO / "images/pipeline/Dockerfile").read_text(), re.M)
    assert match is not None
    words = json.loads(match.group(1))
    words = words[words.index("--") + 1 :] if "--" in words else words
    assert words[0] == "python"
    return [sys.executable, *words[1:]]


def secret_data(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = get(objects, "Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def wait_for(url: str, status: int, deadline: float, proc: subprocess.Popen) -> requests.Response:
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited {proc.returncode} while waiting for {url}")
        try:
            last = requests.get(url, timeout=2)
            if last.status_code == status:
                return last
        except requests.ConnectionError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{url} never answered {status}: last {last}")


@pytest.mark.slow
def test_the_rendered_container_serves_a_locally_trained_model(tmp_path):
    """Train a model here (the FAST options), render the chart with inference on, and start the
    rendered container's command (the image's entrypoint + its args, exactly) with its env: the
    values it sets, and what its envFrom ConfigMap and Secret hold. Only what names the cluster
    is replaced: the feature store's host (a local PostgreSQL, the prediction log's real home,
    with the Secret's password), the tracking URI (this machine has no MLflow server: the
    embedded store the model was trained into), and the emptyDir/ConfigMap mount paths. Then, as
    the kubelet: the startup/liveness path answers while no model is @champion and readiness
    says 503; once the alias exists, readiness says 200 and /invocations predicts; SIGTERM flushes
    the prediction log into PostgreSQL."""
    from mlflow import MlflowClient

    from tests.conftest import FAST, clean_env, run_cli
    from tests.services import postgres_server
    from tests.support import free_port

    home = tmp_path / "home"
    trained = run_cli(["run", *FAST], home)
    assert trained.returncode == 0, trained.stderr[-3000:]
    tracking = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    version = trained.json["version"]
    if "champion" in client.get_registered_model("penguins").aliases:
        client.delete_registered_model_alias("penguins", "champion")  # start as a fresh cluster does

    port = free_port()
    values = merged(ON, {"inference": {"port": port, "serve": {"pollIntervalSeconds": 0.5}}})
    objects = render_chart(values)
    c = container(values)
    assert c["args"] == ["serve", "penguins@champion", "--host", "0.0.0.0", "--port", str(port)]  # noqa: S104
    settings = get(objects, "ConfigMap", f"{RELEASE}-dag-settings")["data"]
    env: dict[str, str] = {}
    for source in c["envFrom"]:  # in order; the container's own env wins, as in a pod
        if "configMapRef" in source:
            env.update(get(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(secret_data(objects, source["secretRef"]["name"]))
    assert set(settings["MLP_DAG_ENV_SECRETS"].split(",")) == {
        s["secretRef"]["name"] for s in c["envFrom"] if "secretRef" in s
    }
    env.update({e["name"]: e["value"] for e in c["env"]})
    assert (
        "PIPELINE_FEATURE_STORE_PASSWORD" in env and "feature" not in env["PIPELINE_FEATURE_STORE_PASSWORD"]
    )

    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    config_dir = tmp_path / "etc-ml-pipeline"
    config_dir.mkdir()
    for key, text in get(objects, "ConfigMap", f"{RELEASE}-pipeline-config")["data"].items():
        (config_dir / key).write_text(text)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    with postgres_server() as pg:
        pg_host = f"{RELEASE}-postgresql.{NAMESPACE}.svc.cluster.local:5432"
        assert pg_host in env["PIPELINE_FEATURE_STORE_URL"]
        conn = pg.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE features LOGIN")
            cur.execute("CREATE DATABASE features OWNER features")
        conn.close()
        env["PIPELINE_FEATURE_STORE_URL"] = env["PIPELINE_FEATURE_STORE_URL"].replace(
            pg_host, f"127.0.0.1:{pg.port}"
        )
        env["MLFLOW_TRACKING_URI"] = tracking
        env["PIPELINE_CONFIG"] = env["PIPELINE_CONFIG"].replace(mounts["config"], str(config_dir))
        env["PIPELINE_HOME"] = env["PIPELINE_HOME"].replace(mounts["scratch"], str(scratch))
        process_env = clean_env(scratch)
        process_env.update(env)
        stderr = (tmp_path / "serve.err").open("w")
        proc = subprocess.Popen(
            [*entrypoint_here(), *c["args"]],
            cwd=scratch,
            env=process_env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            probe = {
                name: c[name]["httpGet"]["path"]
                for name in ("startupProbe", "livenessProbe", "readinessProbe")
            }
            deadline = time.monotonic() + 60
            wait_for(base + probe["startupProbe"], 200, deadline, proc)
            assert requests.get(base + probe["livenessProbe"], timeout=5).status_code == 200
            assert (
                requests.get(base + probe["readinessProbe"], timeout=5).status_code == 503
            )  # no champion yet

            client.set_registered_model_alias("penguins", "champion", version)
            ready = wait_for(base + probe["readinessProbe"], 200, time.monotonic() + 30, proc)
            assert ready.json()["model_version"] == str(version)

            from palmerpenguins import load_penguins

            rows = load_penguins()[list(FEATURES)].dropna().head(5)
            response = requests.post(
                base + "/invocations",
                json={"dataframe_split": {"columns": list(FEATURES), "data": rows.values.tolist()}},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == str(version)
            predictions = response.json()["predictions"]
            assert len(predictions) == 5
            assert {p["prediction"] for p in predictions} <= {"Adelie", "Chinstrap", "Gentoo"}
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            stderr.close()
        log = (tmp_path / "serve.err").read_text()
        assert proc.returncode == 0, log[-3000:]
        assert json.loads(out.splitlines()[-1])["stopped"] is True
        logged = pg.query("features", "SELECT count(*), min(model_version) FROM prediction_log")
        assert logged == [(5, str(version))], log[-3000:]
