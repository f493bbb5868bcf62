"""MLflow: PostgreSQL backend, proxied S3 artifacts, allowed hosts, telemetry off, migration Job."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import EXTERNAL_VALUES, env_of, get, pod_spec, render_chart

pytestmark = pytest.mark.charts


def server(values=None):
    return pod_spec(get(render_chart(values), "Deployment", "mlp-mlflow"))["containers"][0]


def test_artifacts_are_proxied_to_the_bucket_without_a_default_artifact_root():
    args = server({"global": {"s3": {"bucket": "team-ml"}}})["args"]
    assert args[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in args
    assert "--artifacts-destination=s3://team-ml/mlflow" in args
    assert not any(a.startswith("--default-artifact-root") for a in args)


def test_backend_store_is_postgresql_with_the_password_from_the_secret():
    container = server()
    env = env_of(container)
    assert env["MLFLOW_DB_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-postgresql-auth", "key": "mlflow-password"}
    }
    assert env["MLFLOW_BACKEND_STORE_URI"] == (
        "postgresql+psycopg2://mlflow:$(MLFLOW_DB_PASSWORD)@mlp-postgresql.ml.svc.cluster.local:5432/mlflow"
    )
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["args"]


def test_allowed_hosts_cover_the_service_localhost_and_extras():
    args = server({"mlflow": {"allowedHosts": ["mlflow.example.com"]}})["args"]
    (allowed,) = [a.split("=", 1)[1] for a in args if a.startswith("--allowed-hosts=")]
    hosts = set(allowed.split(","))
    for host in (
        "mlp-mlflow",
        "mlp-mlflow:5000",
        "mlp-mlflow.ml.svc",
        "mlp-mlflow.ml.svc.cluster.local:5000",
        "localhost:5000",
        "127.0.0.1",
        "mlflow.example.com",
    ):
        assert host in hosts


def test_probes_send_an_allowed_host_header():
    container = server()
    for probe in ("readinessProbe", "livenessProbe"):
        get_ = container[probe]["httpGet"]
        assert get_["path"] == "/health"
        assert {"name": "Host", "value": "localhost"} in get_["httpHeaders"]


def test_telemetry_off_and_small_footprint():
    env = env_of(server())
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["DO_NOT_TRACK"] == "true"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "--workers=1" in server()["args"]


def test_s3_endpoint_and_keys_for_the_artifact_proxy():
    env = env_of(server())
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://mlp-minio.ml.svc.cluster.local:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "mlp-s3-mlflow", "key": "access-key-id"}}
    external = env_of(server(EXTERNAL_VALUES))
    assert external["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"
    assert external["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "team-s3"
    assert external["MLFLOW_BACKEND_STORE_URI"].endswith("@db.example.internal:6432/mlflow")


def test_migration_is_a_hook_job_by_default():
    job = get(render_chart(), "Job", "mlp-mlflow-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    assert pod_spec(job)["containers"][0]["args"] == [
        "mlflow",
        "db",
        "upgrade",
        "$(MLFLOW_BACKEND_STORE_URI)",
    ]


def test_migration_without_helm_hooks_is_a_job_named_after_its_spec():
    def job_name(tag, memory="256Mi"):
        values = {
            "mlflow": {"migrateJob": {"useHelmHooks": False, "resources": {"requests": {"memory": memory}}}},
            "global": {"images": {"mlflow": {"tag": tag}}},
        }
        (job,) = [
            o
            for o in render_chart(values)
            if o["kind"] == "Job" and "mlflow-migrate" in o["metadata"]["name"]
        ]
        assert "helm.sh/hook" not in job["metadata"]["annotations"]
        assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
        return job["metadata"]["name"]

    assert job_name("1.0") == job_name("1.0")
    assert job_name("1.0") != job_name("1.1")
    assert job_name("1.0") != job_name("1.0", memory="300Mi")
    assert job_name("1.0").startswith("mlp-mlflow-migrate-")


def test_server_and_migration_wait_for_postgresql_with_a_bound():
    objects = render_chart({"mlflow": {"waitForDatabase": {"timeoutSeconds": 42}}})
    for obj in (get(objects, "Deployment", "mlp-mlflow"), get(objects, "Job", "mlp-mlflow-migrate")):
        (wait,) = pod_spec(obj)["initContainers"]
        env = env_of(wait)
        assert env["WAIT_S"] == "42"
        assert env["WAIT_DSN"] == "postgresql://mlflow@mlp-postgresql.ml.svc.cluster.local:5432/mlflow"
        assert env["PGPASSWORD"]["secretKeyRef"] == {"name": "mlp-postgresql-auth", "key": "mlflow-password"}
        compile(wait["args"][2], "wait.py", "exec")
        assert "did not accept connections within" in wait["args"][2]


def test_basic_auth_is_on_by_default_with_the_ini_and_secrets_wired():
    objects = render_chart()
    server = pod_spec(get(objects, "Deployment", "mlp-mlflow"))["containers"][0]
    assert "--app-name=basic-auth" in server["args"]
    env = env_of(server)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow-auth/basic_auth.ini"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["secretKeyRef"] == {
        "name": "mlp-mlflow-auth",
        "key": "admin-password",
    }
    ini = get(objects, "ConfigMap", "mlp-mlflow-auth")["data"]["basic_auth.ini"]
    assert "default_permission = READ" in ini
    assert (
        "database_uri = postgresql+psycopg2://mlflow@mlp-postgresql.ml.svc.cluster.local:5432/mlflow" in ini
    )
    job = get(objects, "Job", "mlp-mlflow-users")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    off = render_chart({"mlflow": {"auth": {"enabled": False}}})
    assert (
        "--app-name=basic-auth" not in pod_spec(get(off, "Deployment", "mlp-mlflow"))["containers"][0]["args"]
    )
