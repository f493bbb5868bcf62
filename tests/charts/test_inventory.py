"""Every object the chart makes, by (kind, name): nothing appears or disappears unnoticed."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import (
    EXTERNAL_VALUES,
    REDIS_VALUES,
    render_chart,
)

pytestmark = pytest.mark.charts

DEFAULT_INVENTORY = {
    # generated Secrets (umbrella)
    ("Secret", "mlp-postgresql-auth"),
    ("Secret", "mlp-s3-credentials"),
    ("Secret", "mlp-airflow-secrets"),
    ("Secret", "mlp-pipeline"),
    ("Secret", "mlp-s3-pipeline"),  # one object-store user per client
    ("Secret", "mlp-s3-mlflow"),
    ("Secret", "mlp-s3-airflow-logs"),
    ("Secret", "mlp-mlflow-auth"),  # MLflow basic-auth: admin, pipeline user, CSRF key
    # the pipeline's step pods
    ("ConfigMap", "mlp-pipeline-env"),
    ("ConfigMap", "mlp-pipeline-config"),
    ("ServiceAccount", "mlp-pipeline"),
    ("Job", "mlp-pipeline-doctor"),  # `helm test`: the preflight (pipeline doctor)
    # PostgreSQL
    ("StatefulSet", "mlp-postgresql"),
    ("Service", "mlp-postgresql"),
    ("Service", "mlp-postgresql-headless"),
    ("ConfigMap", "mlp-postgresql-initdb"),
    # MinIO
    ("Deployment", "mlp-minio"),
    ("Service", "mlp-minio"),
    ("PersistentVolumeClaim", "mlp-minio"),
    ("ConfigMap", "mlp-minio-bucket"),
    ("Job", "mlp-minio-bucket"),
    # MLflow
    ("Deployment", "mlp-mlflow"),
    ("Service", "mlp-mlflow"),
    ("Job", "mlp-mlflow-migrate"),
    ("ConfigMap", "mlp-mlflow-auth"),
    ("Job", "mlp-mlflow-users"),
    # Airflow
    ("ConfigMap", "mlp-airflow-config"),
    ("ConfigMap", "mlp-dag-settings"),
    ("Deployment", "mlp-airflow-api-server"),
    ("Service", "mlp-airflow-api-server"),
    ("Deployment", "mlp-airflow-scheduler"),
    ("Deployment", "mlp-airflow-dag-processor"),
    ("Deployment", "mlp-airflow-triggerer"),
    *(
        ("ServiceAccount", f"mlp-airflow-{i}")
        for i in ("api-server", "dag-processor", "migrate", "scheduler", "triggerer", "worker")
    ),
    *(
        (kind, f"mlp-airflow-{i}")
        for kind in ("Role", "RoleBinding")
        for i in ("api-server", "scheduler", "worker")
    ),
    # NetworkPolicies (on by default)
    ("NetworkPolicy", "mlp-default-deny"),
    ("NetworkPolicy", "mlp-allow-dns"),
    ("NetworkPolicy", "mlp-postgresql"),
    ("NetworkPolicy", "mlp-minio"),
    ("NetworkPolicy", "mlp-minio-bucket-job"),
    ("NetworkPolicy", "mlp-mlflow"),
    ("NetworkPolicy", "mlp-mlflow-users"),
    ("NetworkPolicy", "mlp-airflow"),
    ("NetworkPolicy", "mlp-airflow-api-server"),
    ("NetworkPolicy", "mlp-airflow-kube-api"),
    ("NetworkPolicy", "mlp-pipeline-steps"),
    ("NetworkPolicy", "mlp-pipeline-doctor"),
}


def inventory(values=None) -> set[tuple[str, str]]:
    objects = render_chart(values)
    found = set()
    for obj in objects:
        name = obj["metadata"]["name"]
        # The Airflow migration Job is named after a hash of the image.
        if obj["kind"] == "Job" and name.startswith("mlp-airflow-migrate-"):
            name = "mlp-airflow-migrate-<image hash>"
        found.add((obj["kind"], name))
    return found


def test_default_inventory():
    assert inventory() == DEFAULT_INVENTORY | {("Job", "mlp-airflow-migrate-<image hash>")}


def test_every_object_is_in_the_release_namespace_by_default():
    for obj in render_chart():
        assert obj["metadata"].get("namespace") == "ml", (obj["kind"], obj["metadata"]["name"])


def test_external_postgresql_and_s3_drop_the_bundled_services_and_their_secrets():
    found = inventory(EXTERNAL_VALUES)
    gone = {
        ("StatefulSet", "mlp-postgresql"),
        ("Deployment", "mlp-minio"),
        ("Job", "mlp-minio-bucket"),
        ("Secret", "mlp-postgresql-auth"),
        ("Secret", "mlp-s3-credentials"),
        ("Secret", "mlp-pipeline"),
        ("PersistentVolumeClaim", "mlp-minio"),
    }
    assert not found & gone
    assert ("Deployment", "mlp-mlflow") in found
    assert ("Secret", "mlp-airflow-secrets") in found


def test_redis_adds_broker_and_celery_workers():
    added = inventory(REDIS_VALUES) - inventory()
    assert added == {
        ("Deployment", "mlp-redis"),
        ("Service", "mlp-redis"),
        ("Secret", "mlp-redis-auth"),
        ("Deployment", "mlp-airflow-celery-worker"),
        ("NetworkPolicy", "mlp-redis"),
    }


def test_turning_network_policies_off_removes_only_network_policies():
    removed = inventory() - inventory({"global": {"networkPolicy": {"enabled": False}}})
    assert removed == {o for o in DEFAULT_INVENTORY if o[0] == "NetworkPolicy"}


def test_turning_every_subchart_off_leaves_only_the_pipeline_objects():
    values = {
        **EXTERNAL_VALUES,
        "mlflow": {"enabled": False},
        "airflow": {"enabled": False},
        "global": {**EXTERNAL_VALUES["global"], "mlflow": {"trackingUri": "https://mlflow.example.com"}},
    }
    assert inventory(values) == {
        ("ConfigMap", "mlp-pipeline-env"),
        ("ConfigMap", "mlp-pipeline-config"),
        ("ServiceAccount", "mlp-pipeline"),
        ("Job", "mlp-pipeline-doctor"),
        ("NetworkPolicy", "mlp-default-deny"),
        ("NetworkPolicy", "mlp-allow-dns"),
        ("NetworkPolicy", "mlp-pipeline-steps"),
        ("NetworkPolicy", "mlp-pipeline-doctor"),
    }


def test_model_release_record_appears_with_a_model_version():
    added = inventory({"pipeline": {"model": {"name": "penguins", "version": "7"}}}) - inventory()
    assert added == {("ConfigMap", "mlp-model-release")}
