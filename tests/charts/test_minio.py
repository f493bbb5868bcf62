"""The bundled MinIO: pinned and swappable image, credentials from the S3 Secret, a bucket Job."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import env_of, get, pod_spec, render_chart

pytestmark = pytest.mark.charts


def deployment(values=None):
    return get(render_chart(values), "Deployment", "mlp-minio")


def test_image_is_pinned_by_digest():
    image = pod_spec(deployment())["containers"][0]["image"]
    assert image == (
        "quay.io/minio/minio@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e"
    )


def test_image_is_swappable():
    values = {
        "minio": {"image": {"repository": "registry.example.com/s3/server", "tag": "1.2", "digest": ""}}
    }
    assert pod_spec(deployment(values))["containers"][0]["image"] == "registry.example.com/s3/server:1.2"


def test_root_credentials_come_from_the_s3_secret():
    env = env_of(pod_spec(deployment())["containers"][0])
    assert env["MINIO_ROOT_USER"] == {"secretKeyRef": {"name": "mlp-s3-credentials", "key": "access-key-id"}}
    assert env["MINIO_ROOT_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-s3-credentials", "key": "secret-access-key"}
    }


def test_console_port_follows_the_value():
    ports = {p["name"] for p in get(render_chart(), "Service", "mlp-minio")["spec"]["ports"]}
    assert ports == {"s3", "console"}
    off = render_chart({"minio": {"console": {"enabled": False}}})
    assert {p["name"] for p in get(off, "Service", "mlp-minio")["spec"]["ports"]} == {"s3"}
    args = pod_spec(get(off, "Deployment", "mlp-minio"))["containers"][0]["args"]
    assert not any(a.startswith("--console-address") for a in args)


def test_bucket_job_is_a_post_install_hook_creating_the_configured_bucket():
    objects = render_chart({"global": {"s3": {"bucket": "team-ml"}}})
    job = get(objects, "Job", "mlp-minio-bucket")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = env_of(pod_spec(job)["containers"][0])
    assert env["BUCKET"] == "team-ml"
    assert env["S3_ENDPOINT"] == "http://mlp-minio.ml.svc.cluster.local:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "mlp-s3-credentials", "key": "access-key-id"}
    }
    script = get(objects, "ConfigMap", "mlp-minio-bucket")["data"]["create_bucket.py"]
    compile(script, "create_bucket.py", "exec")
    assert "create_bucket(Bucket=bucket)" in script


def test_data_volume_is_kept_on_uninstall():
    pvc = get(render_chart({"minio": {"persistence": {"size": "7Gi"}}}), "PersistentVolumeClaim", "mlp-minio")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "7Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
