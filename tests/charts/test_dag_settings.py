"""The DAG's pod settings (MLP_DAG_*), the KubernetesExecutor's pod template and the DAG's own
step pods all agree with the chart's values: image, namespace, service account, GPU. The chart's
values and the settings they mirror (DagSettings, and the pipeline's backend settings the step pods
get through the pipeline ConfigMap and Secret) agree, and a setting declared once is all the
generated schema needs."""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass

import pytest
from pydantic import Field, SecretStr

from tests.charts.chart_utils import (
    GPU_VALUES,
    REPO,
    TASK_NAMESPACE_VALUES,
    HelmFailedError,
    airflow_cfg,
    get,
    pod_template,
    render_chart,
)
from tests.support import unavailable

pytestmark = pytest.mark.charts

CONTRACT = (REPO / "docs" / "configuration.md").read_text()
DOCUMENTED = set(re.findall(r"`(MLP_[A-Z0-9_]+)`", CONTRACT))
DIGEST = "sha256:" + "c" * 64
CUDA_DIGEST = "sha256:" + "d" * 64
CLUSTER_VALUES = {
    "global": {
        "imagePullSecrets": ["regcred"],
        "images": {
            "pipeline": {
                "repository": "registry.example.com/ml/pipeline",
                "digest": DIGEST,
                "pullPolicy": "Always",
            },
            "airflow": {"repository": "registry.example.com/ml/airflow", "tag": "1.4.0"},
        },
        "pipeline": {"namespace": "ml-steps", "serviceAccountName": "steps"},
    },
    **{"airflow": GPU_VALUES["airflow"]},
}


def dag_env(values=None) -> dict[str, str]:
    return get(render_chart(values), "ConfigMap", "mlp-dag-settings")["data"]


def test_every_setting_is_in_the_documented_contract():
    env = dag_env()
    assert set(env) <= DOCUMENTED, set(env) - DOCUMENTED
    documented_dag = {n for n in DOCUMENTED if n.startswith("MLP_DAG_")}
    assert documented_dag <= set(env), (
        f"contract variables the chart does not set: {documented_dag - set(env)}"
    )


def test_defaults():
    env = dag_env()
    assert env["MLP_DAG_IMAGE"] == "ml-pipeline/pipeline:0.1.0"
    assert env["MLP_DAG_NAMESPACE"] == "ml"
    assert env["MLP_DAG_SERVICE_ACCOUNT"] == "mlp-pipeline"
    assert env["MLP_DAG_ENV_CONFIGMAPS"] == "mlp-pipeline-env"
    assert env["MLP_DAG_ENV_SECRETS"] == "mlp-pipeline"
    assert env["MLP_DAG_CONFIG_CONFIGMAP"] == "mlp-pipeline-config"
    assert env["MLP_DAG_GPU_ENABLED"] == "false"
    assert env["MLP_DAG_RUN_AS_USER"] == "10001"
    assert json.loads(env["MLP_DAG_RESOURCES"])["train"]["limits"]["memory"] == "4Gi"


def test_cluster_values_reach_the_dag_settings():
    env = dag_env(CLUSTER_VALUES)
    assert env["MLP_DAG_IMAGE"] == f"registry.example.com/ml/pipeline@{DIGEST}"
    assert env["MLP_DAG_IMAGE_PULL_POLICY"] == "Always"
    assert env["MLP_DAG_IMAGE_PULL_SECRETS"] == "regcred"
    assert env["MLP_DAG_NAMESPACE"] == "ml-steps"
    assert env["MLP_DAG_SERVICE_ACCOUNT"] == "steps"
    gpu = GPU_VALUES["airflow"]["dag"]["gpu"]
    assert env["MLP_DAG_GPU_ENABLED"] == "true"
    assert env["MLP_DAG_GPU_COUNT"] == str(gpu["count"])
    assert env["MLP_DAG_GPU_RESOURCE"] == gpu["resource"]
    assert json.loads(env["MLP_DAG_GPU_NODE_SELECTOR"]) == gpu["nodeSelector"]
    assert json.loads(env["MLP_DAG_GPU_TOLERATIONS"]) == gpu["tolerations"]


def _dag_settings_module():
    """The DAG's own settings parser (dags/ml_pipeline_support/settings.py: no Airflow import)."""
    import importlib
    import sys

    if str(REPO / "dags") not in sys.path:
        sys.path.append(str(REPO / "dags"))
    return importlib.import_module("ml_pipeline_support.settings")


def _dag_settings(env: dict[str, str]):
    return _dag_settings_module().DagSettings.from_env(("ingest", "train"), env)


STEPS = ("ingest", "validate", "train", "evaluate")


def _declared():
    return _dag_settings_module().DagSettings.declared()


def _lookup(values: dict, path: str):
    node = values
    for key in path.split("."):
        node = node[key]
    return node


def _chart_drifts(values=None) -> dict[str, tuple]:
    """Settings whose value, as the chart renders it with ``values``, differs from the declared
    default although the chart renders it straight from its values (``Setting.chart_default``)."""
    cls = _dag_settings_module().DagSettings
    env = dag_env(values)
    declared = cls.from_env(STEPS, {})
    drifts = {}
    for name, spec in cls.declared().items():
        if spec.chart_default and spec.chart:
            rendered = getattr(cls.from_env(STEPS, {spec.env: env[spec.env]}), name)
            if rendered != getattr(declared, name):
                drifts[spec.env] = (env[spec.env], getattr(declared, name))
    return drifts


def test_the_chart_sets_exactly_the_declared_dag_settings():
    set_by_chart = {name for name in dag_env() if name.startswith("MLP_DAG_")}
    declared = {spec.env for spec in _declared().values()}
    assert set_by_chart - declared == set(), "the chart sets MLP_DAG_* names DagSettings does not declare"
    assert declared - set_by_chart == set(), "DagSettings declares settings the chart never sets"


def test_the_charts_defaults_are_the_declared_defaults():
    assert _chart_drifts() == {}


def test_a_chart_default_that_drifts_is_caught():
    drifted = {"airflow": {"dag": {"gpu": {"scheduleTimeoutSeconds": 1799}, "preflight": False}}}
    assert set(_chart_drifts(drifted)) == {"MLP_DAG_GPU_SCHEDULE_TIMEOUT_S", "MLP_DAG_PREFLIGHT"}


def test_every_declared_chart_value_exists():
    from tests.charts.test_schema import merged_values

    values = merged_values()
    for spec in _declared().values():
        if spec.chart:
            try:
                _lookup(values, spec.chart)
            except KeyError:
                pytest.fail(f"{spec.env}: the chart has no value {spec.chart}")


def test_every_declared_dag_setting_has_a_row_in_the_docs():
    # the table is generated (scripts/generate_config_docs.py; tests/unit/test_config_docs.py checks it)
    for spec in _declared().values():
        assert f"| `{spec.env}` |" in CONTRACT, spec.env


# --- the values and the settings they mirror (charts/ml-pipeline/hack/generate_schema.py) -------------


def _gen():
    from tests.charts.test_schema import generator

    return generator()


def _values():
    from tests.charts.test_schema import merged_values

    return copy.deepcopy(merged_values())


def test_the_values_and_the_settings_agree():
    assert _gen().drift(_values(), _gen().declared_settings()) == []


def test_a_drifted_default_a_missing_value_and_an_undeclared_value_are_each_reported():
    gen = _gen()
    values = _values()
    values["airflow"]["dag"]["gpu"]["startupTimeoutSeconds"] = 1199  # MLP_DAG_GPU_STARTUP_TIMEOUT_S: 1200
    values["pipeline"]["logLevel"] = "DEBUG"  # PIPELINE_LOG_LEVEL: INFO
    del values["airflow"]["dag"]["sweepSlots"]
    values["airflow"]["dag"]["sweepParallelism"] = 2
    problems = "\n".join(gen.drift(values, gen.declared_settings()))
    assert "airflow.dag.gpu.startupTimeoutSeconds: values.yaml has 1199" in problems
    assert "MLP_DAG_GPU_STARTUP_TIMEOUT_S declares the default 1200" in problems
    assert 'pipeline.logLevel: values.yaml has "DEBUG"' in problems
    assert "MLP_DAG_SWEEP_SLOTS: the chart has no value airflow.dag.sweepSlots" in problems
    assert "airflow.dag.sweepParallelism: a chart value that no setting declares" in problems
    assert len(problems.splitlines()) == 4, problems


def test_the_generator_refuses_to_write_a_schema_the_settings_disagree_with(monkeypatch):
    gen = _gen()
    values, docs = gen.merged()
    values["pipeline"]["logLevel"] = "WARNING"
    monkeypatch.setattr(gen, "merged", lambda: (values, docs))
    with pytest.raises(SystemExit, match=r"pipeline\.logLevel: values\.yaml has"):
        gen.schema()


def _with_chart_value(gen, monkeypatch, path: str, value, comment: str | None = None):
    values, docs = gen.merged()
    node = values
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    if comment:
        docs[tuple(path.split("."))] = comment
    monkeypatch.setattr(gen, "merged", lambda: (values, docs))
    return values


def test_a_throwaway_pipeline_setting_needs_only_its_declaration_and_its_chart_value(monkeypatch):
    """Declared once (type, bound, default, description, chart path), the value's schema is derived;
    the chart value itself (values.yaml) is the one other edit, and without it the check fails."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    gen = _gen()

    class Throwaway(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="PIPELINE_", env_nested_delimiter="__")
        widget_limit: int = Field(
            7,
            ge=2,
            le=99,
            description="How many widgets.",
            json_schema_extra={"chart": "pipeline.widgetLimit"},
        )
        widget_token: SecretStr | None = Field(
            None, json_schema_extra={"chart": "global.pipeline.existingSecret", "chart_secret": True}
        )

    settings = [*gen.declared_settings(), *gen.pipeline_settings(Throwaway)]
    assert gen.drift(_values(), settings) == [
        "PIPELINE_WIDGET_LIMIT: the chart has no value pipeline.widgetLimit (its declared chart value)"
    ]
    _with_chart_value(gen, monkeypatch, "pipeline.widgetLimit", 7)  # no comment: the field's description
    document = gen.schema(settings)
    assert document["properties"]["pipeline"]["properties"]["widgetLimit"] == {
        "description": "How many widgets. Sets `PIPELINE_WIDGET_LIMIT`.",
        "type": "integer",
        "minimum": 2,
        "maximum": 99,
        "default": 7,
    }
    described = document["properties"]["global"]["properties"]["pipeline"]["properties"]["existingSecret"]
    assert "`PIPELINE_WIDGET_TOKEN`" in described["description"]
    # its ConfigMap line is generated too (a Secret's line is not: the chart makes the value)
    lines = gen.env_lines(gen.pipeline_settings(Throwaway))
    assert lines == "  PIPELINE_WIDGET_LIMIT: {{ .Values.pipeline.widgetLimit | toString | quote }}\n"
    _with_chart_value(gen, monkeypatch, "pipeline.widgetLimit", 8)
    with pytest.raises(SystemExit, match="PIPELINE_WIDGET_LIMIT declares the default 7"):
        gen.schema(settings)


def test_a_throwaway_dag_setting_takes_its_parsers_schema(monkeypatch):
    module = _dag_settings_module()
    gen = _gen()

    @dataclass(frozen=True)
    class WithWidgets(module.DagSettings):
        widget_slots: int = module.setting(
            "MLP_DAG_WIDGET_SLOTS",
            module.integer(minimum=3),
            5,
            "widget slots",
            chart="airflow.dag.widgetSlots",
        )

    settings = [*gen.pipeline_settings(), *gen.dag_settings(WithWidgets)]
    assert gen.drift(_values(), settings) == [
        "MLP_DAG_WIDGET_SLOTS: the chart has no value airflow.dag.widgetSlots (its declared chart value)"
    ]
    _with_chart_value(gen, monkeypatch, "airflow.dag.widgetSlots", 5)
    slots = gen.schema(settings)["properties"]["airflow"]["properties"]["dag"]["properties"]["widgetSlots"]
    assert slots == {
        "description": "widget slots Sets `MLP_DAG_WIDGET_SLOTS`.",
        "type": "integer",
        "minimum": 3,
        "default": 5,
    }


# --- the pipeline's settings in the step pods' ConfigMap and Secret -----------------------------------

# Read by MLflow's client, not by the pipeline's settings: the bundled MLflow's pipeline user.
MLFLOW_CLIENT_VARIABLES = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}


# What check-values asks for next to a value that points at an external service.
EXTERNAL = {
    "global.mlflow.trackingUri": {"mlflow": {"enabled": False}},
    "global.s3.endpoint": {
        "minio": {"enabled": False},
        "global": {"s3": {"existingSecret": "s3-keys"}, "pipeline": {"existingSecret": "pipeline-env"}},
    },
}


def _pipeline_settings():
    return list(_gen().pipeline_settings())


def _sample(setting):
    """A value for the setting's chart value other than its default: the field's first other example."""
    from pipeline.settings import Settings

    examples = [
        example
        for where, info in _gen()._config_docs().leaves(Settings)
        if _gen()._config_docs().env_names(where, info)[0] == setting.env
        for example in info.examples or []
    ]
    current = _gen()._lookup(_values(), setting.path)
    other = next((example for example in examples if example != current), None)
    if other is None:
        pytest.fail(
            f"{setting.env}: give its field examples=[...] with a value other than the chart's default"
        )
    return other


def test_the_step_pods_environment_is_exactly_the_declared_settings():
    values = {"pipeline": {"experimentName": "wine", "modelName": "wine"}}  # rendered only when set
    objects = render_chart(values)
    config = set(get(objects, "ConfigMap", "mlp-pipeline-env")["data"])
    secret = set(get(objects, "Secret", "mlp-pipeline")["data"])
    declared = _pipeline_settings()
    assert config == {s.env for s in declared if not s.secret}
    assert secret == {s.env for s in declared if s.secret} | MLFLOW_CLIENT_VARIABLES


@pytest.mark.parametrize(
    "setting",
    [
        s
        for s in _gen().pipeline_settings()
        if not s.secret and not isinstance(_gen()._lookup(_values(), s.path), dict)
    ],
    ids=lambda s: s.env,
)
def test_each_chart_value_reaches_the_variable_it_declares(setting):
    sample = _sample(setting)
    values = copy.deepcopy(EXTERNAL.get(setting.path, {}))
    node = values
    *parents, last = setting.path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = sample
    assert get(render_chart(values), "ConfigMap", "mlp-pipeline-env")["data"][setting.env] == str(sample)


def test_the_configmaps_generated_lines_are_checked(tmp_path, monkeypatch):
    gen = _gen()
    text = gen.ENV_CONFIGMAP.read_text()
    assert gen.render_env_configmap(text, gen.pipeline_settings()) == text
    line = "  PIPELINE_LOG_LEVEL: {{ .Values.pipeline.logLevel | toString | quote }}\n"
    assert line in text
    monkeypatch.setattr(gen, "ENV_CONFIGMAP", tmp_path / "pipeline-env-configmap.yaml")
    gen.ENV_CONFIGMAP.write_text(text.replace(line, ""))
    monkeypatch.setattr(gen, "SCHEMA_FILE", tmp_path / "values.schema.json")
    gen.SCHEMA_FILE.write_text((gen.CHART / "values.schema.json").read_text())
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.ENV_CONFIGMAP.read_text() == text


def test_the_existing_secrets_description_lists_every_secret_variable():
    from tests.charts.test_schema import SCHEMA

    described = SCHEMA["properties"]["global"]["properties"]["pipeline"]["properties"]["existingSecret"]
    for name in {s.env for s in _pipeline_settings() if s.secret} | MLFLOW_CLIENT_VARIABLES:
        assert name in described["description"], name


def test_trigger_allow_list_reaches_the_dag_and_defaults_agree():
    default = dag_env()["MLP_DAG_TRIGGER_ALLOWED_KEYS"]
    # the chart's default is the DAG's own default, read back by the DAG's parser
    assert _dag_settings({"MLP_DAG_TRIGGER_ALLOWED_KEYS": default}).trigger_allowed_keys == (
        _dag_settings_module().DEFAULT_TRIGGER_ALLOWED_KEYS
    )
    assert not any(key.startswith(("gate", "data", "tracking", "s3")) for key in default.split(","))
    given = dag_env({"airflow": {"dag": {"triggerAllowedKeys": ["train.max_epochs", "data.source.uri"]}}})
    assert given["MLP_DAG_TRIGGER_ALLOWED_KEYS"] == "train.max_epochs,data.source.uri"
    assert _dag_settings(given).trigger_allowed_keys == ("train.max_epochs", "data.source.uri")
    # an empty list means no key at all, not the DAG's default
    empty = dag_env({"airflow": {"dag": {"triggerAllowedKeys": []}}})
    assert empty["MLP_DAG_TRIGGER_ALLOWED_KEYS"] == "none"
    assert _dag_settings(empty).trigger_allowed_keys == ()


def test_a_malformed_trigger_key_is_refused_by_the_schema():
    with pytest.raises(HelmFailedError, match="triggerAllowedKeys"):
        render_chart({"airflow": {"dag": {"triggerAllowedKeys": ["gate margin"]}}})


def test_step_timeout_per_step_is_json():
    env = dag_env({"airflow": {"dag": {"stepTimeoutSeconds": {"default": 1800, "train": 7200}}}})
    assert json.loads(env["MLP_DAG_STEP_TIMEOUT_S"]) == {"default": 1800, "train": 7200}


def test_pod_template_agrees_with_values_and_dag_settings():
    objects = render_chart(CLUSTER_VALUES)
    template = pod_template(objects)
    env = get(objects, "ConfigMap", "mlp-dag-settings")["data"]
    cfg = airflow_cfg(objects)
    # namespace: worker pods, step pods, the executor's setting and the Role all agree
    assert template["metadata"]["namespace"] == env["MLP_DAG_NAMESPACE"] == "ml-steps"
    assert cfg["kubernetes_executor"]["namespace"] == "ml-steps"
    assert get(objects, "Role", "mlp-airflow-worker")["metadata"]["namespace"] == "ml-steps"
    # image: the worker pod runs the Airflow image of the values
    (base,) = template["spec"]["containers"]
    assert base["image"] == "registry.example.com/ml/airflow:1.4.0"
    assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    # service accounts: the worker's is bound to the Role; the steps' exists where they run
    bound = {s["name"] for s in get(objects, "RoleBinding", "mlp-airflow-worker")["subjects"]}
    assert template["spec"]["serviceAccountName"] in bound
    step_sas = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "steps"]
    assert [sa["metadata"]["namespace"] for sa in step_sas] == ["ml-steps"]
    # every ConfigMap / Secret the step pods take is rendered in their namespace
    rendered = {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects}
    for name in [*env["MLP_DAG_ENV_CONFIGMAPS"].split(","), env["MLP_DAG_CONFIG_CONFIGMAP"]]:
        assert ("ConfigMap", name, "ml-steps") in rendered
    for name in env["MLP_DAG_ENV_SECRETS"].split(","):
        assert ("Secret", name, "ml-steps") in rendered
    # the worker pod reads the same DAG settings the components read
    assert {"configMapRef": {"name": "mlp-dag-settings"}} in base["envFrom"]
    assert ("ConfigMap", "mlp-dag-settings", "ml-steps") in rendered


def test_gpu_runtime_class_and_cuda_image_reach_the_dag_settings():
    assert dag_env()["MLP_DAG_GPU_RUNTIME_CLASS"] == ""
    assert dag_env()["MLP_DAG_GPU_IMAGE"] == ""  # the train pod keeps the pipeline image
    gpu = {"runtimeClassName": "nvidia", "image": {"repository": "ml/pipeline-cuda", "tag": "0.1.0-cu12"}}
    env = dag_env({"global": {"imageRegistry": "registry.example.com"}, "airflow": {"dag": {"gpu": gpu}}})
    assert env["MLP_DAG_GPU_RUNTIME_CLASS"] == "nvidia"
    assert env["MLP_DAG_GPU_IMAGE"] == "registry.example.com/ml/pipeline-cuda:0.1.0-cu12"
    assert env["MLP_DAG_IMAGE"] == "registry.example.com/ml-pipeline/pipeline:0.1.0"
    settings = _dag_settings(env | {"MLP_DAG_GPU_ENABLED": "true"})
    assert settings.gpu_runtime_class == "nvidia"
    assert settings.gpu_image == "registry.example.com/ml/pipeline-cuda:0.1.0-cu12"


def test_gpu_settings_never_leak_into_the_worker_pod_template():
    template = pod_template(render_chart(GPU_VALUES))
    assert "nvidia.com/gpu" not in json.dumps(template)


@pytest.mark.airflow
@pytest.mark.parametrize("gpu", [False, True], ids=["gpu-off", "gpu-on"])
def test_the_dags_step_pods_agree_with_the_chart(gpu, monkeypatch):
    """Build every step pod with the real DAG, fed the MLP_DAG_* the chart renders."""
    try:
        from tests.dags.conftest import require_airflow
        from tests.dags.test_pods import base_container, build_pods
    except ImportError as exc:
        unavailable(f"the DAG test helpers ({exc})", "pip install -e '.[airflow,dev]'")
    require_airflow()
    import kubernetes_validate

    values = json.loads(json.dumps(CLUSTER_VALUES))
    values["airflow"]["dag"]["gpu"]["enabled"] = gpu
    values["airflow"]["dag"]["gpu"]["runtimeClassName"] = "nvidia"
    values["airflow"]["dag"]["gpu"]["image"] = {
        "repository": "registry.example.com/ml/pipeline-cuda",
        "digest": CUDA_DIGEST,
    }
    values["airflow"]["dag"]["xcomSidecarImage"] = {
        "repository": "registry.example.com/library/alpine",
        "digest": CUDA_DIGEST,
    }
    objects = render_chart(values)
    env = get(objects, "ConfigMap", "mlp-dag-settings")["data"]
    for name in [n for n in os.environ if n.startswith("MLP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # the worker pod's own environment carries the kubernetes_default connection (xcom sidecar)
    (worker,) = pod_template(objects)["spec"]["containers"]
    worker_env = {e["name"]: e.get("value") for e in worker["env"]}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", worker_env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    pods = build_pods()
    gpu_values = values["airflow"]["dag"]["gpu"]
    for step, pod in pods.items():
        kubernetes_validate.validate(pod, "1.33.0", strict=True)
        container = base_container(pod)
        on_gpu = gpu and step == "train"
        image = (
            f"registry.example.com/ml/pipeline{'-cuda' if on_gpu else ''}@{CUDA_DIGEST if on_gpu else DIGEST}"
        )
        assert container["image"] == image, step
        assert pod["spec"].get("runtimeClassName") == ("nvidia" if on_gpu else None), step
        (sidecar,) = [c for c in pod["spec"]["containers"] if c["name"] == "airflow-xcom-sidecar"]
        assert sidecar["image"] == f"registry.example.com/library/alpine@{CUDA_DIGEST}", step
        assert pod["spec"]["automountServiceAccountToken"] is False, step
        assert pod["metadata"]["namespace"] == "ml-steps", step
        assert pod["spec"]["serviceAccountName"] == "steps", step
        env_from = container.get("envFrom", [])
        assert {"configMapRef": {"name": "mlp-pipeline-env"}} in env_from
        assert {"secretRef": {"name": "mlp-pipeline"}} in env_from
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["config"]["configMap"]["name"] == "mlp-pipeline-config"
        limits = container["resources"].get("limits", {})
        if gpu and step == "train":
            assert limits[gpu_values["resource"]] == str(gpu_values["count"])
            assert pod["spec"]["nodeSelector"] == gpu_values["nodeSelector"]
            assert pod["spec"]["tolerations"] == gpu_values["tolerations"]
        else:
            assert gpu_values["resource"] not in limits
            assert not pod["spec"].get("nodeSelector")


def test_task_namespace_profile_moves_worker_and_step_pods_together():
    env = dag_env(TASK_NAMESPACE_VALUES)
    assert env["MLP_DAG_NAMESPACE"] == "ml-steps"
    assert pod_template(render_chart(TASK_NAMESPACE_VALUES))["metadata"]["namespace"] == "ml-steps"
