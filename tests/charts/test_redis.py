"""Redis: off by default; on, the Celery broker of the hybrid executor, password from a Secret."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import REDIS_VALUES, env_of, get, pod_spec, render_chart

pytestmark = pytest.mark.charts


def test_off_by_default():
    assert not [o for o in render_chart() if o["metadata"]["name"].startswith("mlp-redis")]


def test_password_from_the_secret_never_on_the_command_line():
    objects = render_chart(REDIS_VALUES)
    container = pod_spec(get(objects, "Deployment", "mlp-redis"))["containers"][0]
    assert env_of(container)["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-redis-auth", "key": "password"}
    }
    script = container["command"][-1]
    assert "--requirepass" not in script
    assert "requirepass ${REDIS_PASSWORD}" in script
    assert "redis-server -" in script


def test_image_is_the_official_redis_image_pinned_by_digest():
    image = pod_spec(get(render_chart(REDIS_VALUES), "Deployment", "mlp-redis"))["containers"][0]["image"]
    assert image.startswith("docker.io/library/redis@sha256:")


def test_airflow_components_get_the_broker_url_with_the_password_reference():
    objects = render_chart(REDIS_VALUES)
    for name in ("mlp-airflow-scheduler", "mlp-airflow-celery-worker"):
        env = env_of(pod_spec(get(objects, "Deployment", name))["containers"][0])
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"]
            == "redis://:$(REDIS_PASSWORD)@mlp-redis.ml.svc.cluster.local:6379/0"
        )
        assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "mlp-redis-auth", "key": "password"}}


def test_external_redis():
    values = {
        "airflow": {"executor": "CeleryExecutor,KubernetesExecutor"},
        "global": {"redis": {"host": "redis.shared", "port": 6380, "existingSecret": "shared-redis"}},
    }
    objects = render_chart(values)
    env = env_of(pod_spec(get(objects, "Deployment", "mlp-airflow-scheduler"))["containers"][0])
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:$(REDIS_PASSWORD)@redis.shared:6380/0"
    assert env["REDIS_PASSWORD"]["secretKeyRef"]["name"] == "shared-redis"
    assert not [o for o in objects if o["metadata"]["name"].startswith("mlp-redis")]
