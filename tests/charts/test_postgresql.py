"""The bundled PostgreSQL: one role and one database per client, passwords only from the Secret."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import env_of, get, pod_spec, render_chart

pytestmark = pytest.mark.charts


def statefulset(values=None):
    return get(render_chart(values), "StatefulSet", "mlp-postgresql")


def initdb_script(values=None) -> str:
    return get(render_chart(values), "ConfigMap", "mlp-postgresql-initdb")["data"][
        "10-roles-and-databases.sh"
    ]


def test_one_role_and_database_per_client():
    script = initdb_script()
    for client in ("airflow", "mlflow", "features"):
        assert f'create "{client}" "{client}" "${client.upper()}_PASSWORD"' in script
    assert "CREATE ROLE %I LOGIN PASSWORD %L" in script
    assert "CREATE DATABASE %I OWNER %I" in script
    assert "REVOKE ALL ON DATABASE %I FROM PUBLIC" in script


def test_database_and_role_names_come_from_values():
    values = {"global": {"postgresql": {"databases": {"features": {"database": "fs", "username": "fs_rw"}}}}}
    assert 'create "fs_rw" "fs" "$FEATURES_PASSWORD"' in initdb_script(values)
    env = get(render_chart(values), "ConfigMap", "mlp-pipeline-env")["data"]
    assert (
        env["PIPELINE_FEATURE_STORE_URL"]
        == "postgresql+psycopg2://fs_rw@mlp-postgresql.ml.svc.cluster.local:5432/fs"
    )


def test_passwords_reach_the_server_only_from_the_auth_secret():
    (container,) = pod_spec(statefulset())["containers"]
    env = env_of(container)
    for variable, key in [
        ("POSTGRES_PASSWORD", "postgres-password"),
        ("AIRFLOW_PASSWORD", "airflow-password"),
        ("MLFLOW_PASSWORD", "mlflow-password"),
        ("FEATURES_PASSWORD", "features-password"),
    ]:
        assert env[variable] == {"secretKeyRef": {"name": "mlp-postgresql-auth", "key": key}}


def test_no_generated_password_is_written_into_the_init_script():
    import base64

    objects = render_chart()
    secret = get(objects, "Secret", "mlp-postgresql-auth")["data"]
    script = get(objects, "ConfigMap", "mlp-postgresql-initdb")["data"]["10-roles-and-databases.sh"]
    for encoded in secret.values():
        assert base64.b64decode(encoded).decode() not in script


def test_data_on_a_persistent_volume_claim():
    sts = statefulset({"postgresql": {"persistence": {"size": "3Gi", "storageClass": "fast"}}})
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(sts)["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/var/lib/postgresql/data"


def test_persistence_off_uses_an_empty_dir():
    sts = statefulset({"postgresql": {"persistence": {"enabled": False}}})
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_image_is_the_official_postgres_image_pinned_by_digest():
    image = pod_spec(statefulset())["containers"][0]["image"]
    assert image.startswith("docker.io/library/postgres@sha256:")
    assert "bitnami" not in image


def test_server_settings_become_arguments():
    values = {"postgresql": {"settings": {"max_connections": 50}}}
    args = pod_spec(statefulset(values))["containers"][0]["args"]
    where = args.index("max_connections=50")
    assert args[where - 1] == "-c"
