"""The step pods' environment (PIPELINE_* contract), their config.yaml and their identity."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.charts.chart_utils import EXTERNAL_VALUES, REPO, TASK_NAMESPACE_VALUES, get, render_chart

pytestmark = pytest.mark.charts

CONTRACT = (REPO / "docs" / "configuration.md").read_text()
DOCUMENTED = set(re.findall(r"`((?:PIPELINE|MLFLOW)_[A-Z0-9_]+)`", CONTRACT))


def env(values=None) -> dict[str, str]:
    return get(render_chart(values), "ConfigMap", "mlp-pipeline-env")["data"]


def test_every_variable_is_in_the_documented_contract():
    assert set(env()) <= DOCUMENTED, set(env()) - DOCUMENTED


def test_defaults_point_at_the_bundled_services():
    assert env() == {
        "PIPELINE_HOME": "/var/lib/ml-pipeline",
        "PIPELINE_ARTIFACT_ROOT": "s3://ml-pipeline/artifacts",
        "PIPELINE_DVC_REMOTE": "s3://ml-pipeline/dvc",
        "MLFLOW_TRACKING_URI": "http://mlp-mlflow.ml.svc.cluster.local:5000",
        "PIPELINE_FEATURE_STORE_URL": "postgresql+psycopg2://features@mlp-postgresql.ml.svc.cluster.local:5432/features",
        "PIPELINE_S3__ENDPOINT_URL": "http://mlp-minio.ml.svc.cluster.local:9000",
        "PIPELINE_S3__REGION": "us-east-1",
        "PIPELINE_LOG_LEVEL": "INFO",
    }


def test_external_services():
    values = {**EXTERNAL_VALUES, "mlflow": {"enabled": False}}
    values["global"] = {**EXTERNAL_VALUES["global"], "mlflow": {"trackingUri": "https://mlflow.example.com"}}
    data = env(values)
    assert data["PIPELINE_S3__ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"
    assert data["PIPELINE_S3__REGION"] == "eu-west-1"
    assert data["PIPELINE_ARTIFACT_ROOT"] == "s3://team-ml/artifacts"
    assert data["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert (
        data["PIPELINE_FEATURE_STORE_URL"]
        == "postgresql+psycopg2://features@db.example.internal:6432/features"
    )


def test_extra_environment_and_names():
    data = env(
        {"pipeline": {"env": {"PIPELINE_TRAIN__MAX_EPOCHS": 20}, "experimentName": "exp", "modelName": "m"}}
    )
    assert data["PIPELINE_TRAIN__MAX_EPOCHS"] == "20"
    assert data["PIPELINE_EXPERIMENT_NAME"] == "exp"
    assert data["PIPELINE_MODEL_NAME"] == "m"


def test_no_secret_in_the_configmap():
    for key, value in env().items():
        assert not re.search("PASSWORD|SECRET|ACCESS_KEY", key), key
        assert not re.search(r"//[^/@:]+:[^/@]+@", value), f"{key} carries a password in its URL"


def test_default_config_is_the_penguins_dataset():
    rendered = get(render_chart(), "ConfigMap", "mlp-pipeline-config")["data"]["config.yaml"]
    packaged = (REPO / "pipeline" / "configs" / "penguins.yaml").read_text()
    assert yaml.safe_load(rendered) == yaml.safe_load(packaged)


def test_config_is_overridable_and_existing_configmap_replaces_it():
    wine = (REPO / "pipeline" / "configs" / "wine.yaml").read_text()
    rendered = get(render_chart({"pipeline": {"config": wine}}), "ConfigMap", "mlp-pipeline-config")
    assert yaml.safe_load(rendered["data"]["config.yaml"]) == yaml.safe_load(wine)
    objects = render_chart({"global": {"pipeline": {"existingConfigMap": "team-config"}}})
    assert not [o for o in objects if o["metadata"]["name"] == "mlp-pipeline-config"]
    assert get(objects, "ConfigMap", "mlp-dag-settings")["data"]["MLP_DAG_CONFIG_CONFIGMAP"] == "team-config"


def test_pipeline_objects_live_in_the_pipeline_namespace():
    objects = render_chart(TASK_NAMESPACE_VALUES)
    for kind, name in [
        ("ConfigMap", "mlp-pipeline-env"),
        ("ConfigMap", "mlp-pipeline-config"),
        ("Secret", "mlp-pipeline"),
        ("ServiceAccount", "mlp-pipeline"),
    ]:
        assert get(objects, kind, name)["metadata"]["namespace"] == "ml-steps"


def test_step_service_account_mounts_no_token():
    sa = get(render_chart(), "ServiceAccount", "mlp-pipeline")
    assert sa["automountServiceAccountToken"] is False


def test_model_release_record():
    values = {
        "pipeline": {"model": {"name": "penguins", "version": "7"}},
        "global": {"images": {"pipeline": {"digest": "sha256:" + "a" * 64}}},
    }
    data = get(render_chart(values), "ConfigMap", "mlp-model-release")["data"]
    assert data == {
        "model-name": "penguins",
        "model-version": "7",
        "model-uri": "models:/penguins/7",
        "pipeline-image": "ml-pipeline/pipeline@sha256:" + "a" * 64,
    }


def test_helm_test_runs_the_pipeline_preflight_like_a_step_pod():
    """`helm test` runs `pipeline doctor` with exactly the step pods' configuration."""
    (job,) = [
        o for o in render_chart() if o["kind"] == "Job" and o["metadata"]["name"] == "mlp-pipeline-doctor"
    ]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["doctor"]
    assert "command" not in container  # the image's entrypoint (tini -- python -m pipeline) runs it
    assert container["envFrom"] == [
        {"configMapRef": {"name": "mlp-pipeline-env"}},
        {"secretRef": {"name": "mlp-pipeline"}},
    ]
    assert {"name": "PIPELINE_CONFIG", "value": "/etc/ml-pipeline/config.yaml"} in container["env"]
    assert spec["serviceAccountName"] == "mlp-pipeline"
    assert spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "mlp-pipeline-config"
