"""Secrets: generated once (stable through `lookup` on upgrade), consistent between the objects
that share them, replaceable by existing Secrets, never written in a values file."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from tests.charts.chart_utils import CHART, EXTERNAL_VALUES, HelmFailedError, get, render_chart

pytestmark = pytest.mark.charts

GENERATED = [
    "mlp-postgresql-auth",
    "mlp-s3-credentials",
    "mlp-s3-pipeline",
    "mlp-s3-mlflow",
    "mlp-s3-airflow-logs",
    "mlp-airflow-secrets",
    "mlp-mlflow-auth",
    "mlp-pipeline",
]
NOT_SECRET = {"MLFLOW_TRACKING_USERNAME"}  # a user name, from mlflow.auth.pipelineUsername


def decoded(secret) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_secrets_are_random_kept_and_marked(name):
    first = decoded(get(render_chart({"pipeline": {"logLevel": "DEBUG"}}), "Secret", name))
    second = decoded(get(render_chart({"pipeline": {"logLevel": "WARNING"}}), "Secret", name))
    for key, value in first.items():
        if key in NOT_SECRET:
            continue
        assert len(value) >= 20, key
        assert value != second[key], f"{name}/{key} is not random"
    annotations = get(render_chart(), "Secret", name)["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"


def test_keep_on_uninstall_can_be_turned_off():
    secret = get(render_chart({"secrets": {"keepOnUninstall": False}}), "Secret", "mlp-s3-credentials")
    assert "helm.sh/resource-policy" not in secret["metadata"]["annotations"]


def test_pipeline_secret_carries_the_same_credentials_as_the_service_secrets():
    """The step pods' Secret copies the pipeline's own S3 user (not MinIO's root credentials),
    the feature-store password and the MLflow pipeline user's password."""
    objects = render_chart()
    s3 = decoded(get(objects, "Secret", "mlp-s3-pipeline"))
    root = decoded(get(objects, "Secret", "mlp-s3-credentials"))
    pg = decoded(get(objects, "Secret", "mlp-postgresql-auth"))
    mlflow = decoded(get(objects, "Secret", "mlp-mlflow-auth"))
    pipeline = decoded(get(objects, "Secret", "mlp-pipeline"))
    assert pipeline == {
        "PIPELINE_S3__ACCESS_KEY_ID": s3["access-key-id"],
        "PIPELINE_S3__SECRET_ACCESS_KEY": s3["secret-access-key"],
        "PIPELINE_FEATURE_STORE_PASSWORD": pg["features-password"],
        "MLFLOW_TRACKING_USERNAME": "pipeline",
        "MLFLOW_TRACKING_PASSWORD": mlflow["pipeline-password"],
    }
    assert root["access-key-id"] not in pipeline.values()
    assert set(mlflow) == {"admin-password", "pipeline-password", "flask-secret-key"}


def test_mlflow_auth_existing_secret_needs_the_pipeline_secret_too():
    with pytest.raises(HelmFailedError, match=r"global\.pipeline\.existingSecret"):
        render_chart({"mlflow": {"auth": {"existingSecret": "team-mlflow"}}})
    objects = render_chart({"mlflow": {"auth": {"enabled": False}}})
    assert "MLFLOW_TRACKING_PASSWORD" not in get(objects, "Secret", "mlp-pipeline")["data"]
    assert not [o for o in objects if o["metadata"]["name"] in ("mlp-mlflow-auth", "mlp-mlflow-users")]


def test_fernet_key_is_a_valid_fernet_key():
    key = decoded(get(render_chart(), "Secret", "mlp-airflow-secrets"))["fernet-key"]
    assert len(base64.urlsafe_b64decode(key)) == 32


def test_lookup_keeps_existing_values_on_upgrade():
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in template
    assert "hasKey $data .key" in template


def test_existing_secrets_replace_the_generated_ones():
    values = {
        **EXTERNAL_VALUES,
        "global": {**EXTERNAL_VALUES["global"], "airflow": {"existingSecret": "team-airflow"}},
        "mlflow": {"auth": {"existingSecret": "team-mlflow"}},
    }
    objects = render_chart(values)
    assert not [o for o in objects if o["kind"] == "Secret"]
    names = set()
    for obj in objects:
        for match in re.finditer(r"'name': '([a-z0-9-]+)', 'key'", str(obj)):
            names.add(match.group(1))
    assert names <= {"team-db", "team-s3", "team-airflow", "team-pipeline", "team-mlflow"}, names
    dag = get(objects, "ConfigMap", "mlp-dag-settings")["data"]
    assert dag["MLP_DAG_ENV_SECRETS"] == "team-pipeline"


SECRET_KEY = re.compile(r"(password|secret|token|fernet|jwt|apikey|api_key|accesskey)", re.IGNORECASE)


@pytest.mark.parametrize(
    "path",
    sorted(
        {
            *CHART.glob("values*.yaml"),
            *CHART.glob("charts/*/values.yaml"),
            *CHART.parent.parent.glob("k8s/**/*.yaml"),
        }
    ),
    ids=lambda p: str(p.relative_to(CHART.parent.parent)),
)
def test_no_plaintext_secret_in_any_values_file(path):
    def walk(node, where=""):
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{where}.{key}"
                if SECRET_KEY.search(str(key)) and isinstance(value, str) and value:
                    # Only references to Secrets (names, keys) may be set, never the secret itself.
                    assert re.search(r"(existingSecret|Secret|SecretKey|secretName|secretKey)$", str(key)), (
                        here
                    )
                walk(value, here)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for document in yaml.safe_load_all(path.read_text()):
        walk(document)
