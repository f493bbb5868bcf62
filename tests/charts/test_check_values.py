"""Impossible combinations fail at render time with a message naming the keys and the fix
(templates/check-values.yaml)."""

from __future__ import annotations

import re

import pytest

from tests.charts.chart_utils import EXTERNAL_VALUES, HelmFailedError, render_chart

pytestmark = pytest.mark.charts

EXTERNAL_GLOBAL = EXTERNAL_VALUES["global"]

CASES = {
    "bundled-and-external-postgresql": (
        {"global": {"postgresql": {"host": "db.example.internal"}}},
        ["global.postgresql.host", "postgresql.enabled=false"],
    ),
    "no-postgresql-at-all": (
        {"postgresql": {"enabled": False}},
        ["postgresql.enabled=false", "global.postgresql.host"],
    ),
    "external-postgresql-without-secret": (
        {"postgresql": {"enabled": False}, "global": {"postgresql": {"host": "db"}}},
        ["global.postgresql.existingSecret"],
    ),
    "bundled-and-external-s3": (
        {"global": {"s3": {"endpoint": "https://s3.example.com"}}},
        ["global.s3.endpoint", "minio.enabled=false"],
    ),
    "no-s3-at-all": ({"minio": {"enabled": False}}, ["minio.enabled=false", "global.s3.endpoint"]),
    "external-s3-without-secret": (
        {"minio": {"enabled": False}, "global": {"s3": {"endpoint": "https://s3.example.com"}}},
        ["global.s3.existingSecret"],
    ),
    "existing-secrets-without-pipeline-secret": (
        {"global": {"s3": {"existingSecret": "team-s3"}}},
        ["global.pipeline.existingSecret", "PIPELINE_S3__ACCESS_KEY_ID"],
    ),
    "bundled-and-external-mlflow": (
        {"global": {"mlflow": {"trackingUri": "https://mlflow.example.com"}}},
        ["global.mlflow.trackingUri", "mlflow.enabled=false"],
    ),
    "no-mlflow-at-all": (
        {"mlflow": {"enabled": False}},
        ["mlflow.enabled=false", "global.mlflow.trackingUri"],
    ),
    "redis-without-celery": ({"redis": {"enabled": True}}, ["redis.enabled=true", "airflow.executor"]),
    "celery-without-broker": (
        {"airflow": {"executor": "CeleryExecutor,KubernetesExecutor"}},
        ["airflow.executor", "redis.enabled=true", "global.redis.host"],
    ),
    "external-redis-without-secret": (
        {"airflow": {"executor": "CeleryExecutor,KubernetesExecutor"}, "global": {"redis": {"host": "r"}}},
        ["global.redis.existingSecret"],
    ),
    "redis-without-airflow": (
        {"redis": {"enabled": True}, "airflow": {"enabled": False}},
        ["redis.enabled=true", "airflow.enabled=false"],
    ),
    "git-sync-without-repo": ({"airflow": {"gitSync": {"enabled": True}}}, ["airflow.gitSync.repo"]),
    "retry-delays-inverted": (
        {"airflow": {"dag": {"retryDelaySeconds": 900, "maxRetryDelaySeconds": 60}}},
        ["airflow.dag.maxRetryDelaySeconds", "airflow.dag.retryDelaySeconds"],
    ),
    "gpu-with-local-runner": (
        {"airflow": {"dag": {"taskRunner": "local", "gpu": {"enabled": True}}}},
        ["airflow.dag.gpu.enabled", "airflow.dag.taskRunner"],
    ),
    "model-version-without-name": ({"pipeline": {"model": {"version": "3"}}}, ["pipeline.model.name"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_impossible_combination_is_refused_with_the_keys_and_a_fix(case):
    values, keys = CASES[case]
    with pytest.raises(HelmFailedError, match=r"check-values\.yaml") as failure:
        render_chart(values)
    message = failure.value.stderr
    for key in keys:
        assert key in message, f"{key!r} not named in: {message}"
    assert re.search(r"\b(set|raise|turn|clear)\b", message), f"no fix offered: {message}"


def test_the_valid_external_combination_renders():
    assert render_chart(EXTERNAL_VALUES)
