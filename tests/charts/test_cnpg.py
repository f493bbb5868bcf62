"""PostgreSQL run by CloudNativePG (cnpg.enabled), as the staging and prod overlays do.

The CNPG CRDs are not in kubernetes-validate, and no operator runs here: these tests check the
fields the operator requires and what the rest of the chart connects to, over the rendered objects.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.charts.chart_utils import REPO, HelmFailedError, render_chart, workloads

pytestmark = pytest.mark.charts

OVERLAYS = {
    env: yaml.safe_load((REPO / "k8s" / "envs" / env / "values.yaml").read_text())
    for env in ("staging", "prod")
}
CLIENTS = {"airflow": "airflow", "mlflow": "mlflow", "features": "features"}  # database -> role (defaults)


def cnpg_objects(values, namespace="ml"):
    objects = render_chart(values, namespace=namespace)
    return objects, [o for o in objects if o["apiVersion"] == "postgresql.cnpg.io/v1"]


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_overlay_renders_a_complete_cluster_with_backups(env):
    values = OVERLAYS[env]
    _, cnpg = cnpg_objects(values, f"ml-{env}")
    kinds = sorted(o["kind"] for o in cnpg)
    assert kinds == ["Cluster", "Database", "Database", "ScheduledBackup"]
    (cluster,) = [o for o in cnpg if o["kind"] == "Cluster"]
    name = cluster["metadata"]["name"]
    assert cluster["metadata"]["namespace"] == f"ml-{env}"
    spec = cluster["spec"]
    assert isinstance(spec["instances"], int) and spec["instances"] >= 2  # a replica to fail over to
    assert re.fullmatch(r"\d+(Gi|Mi|Ti)", spec["storage"]["size"])
    assert spec["enableSuperuserAccess"] is False
    initdb = spec["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("airflow", "airflow")
    assert initdb["secret"]["name"] == values["cnpg"]["roleSecrets"]["airflow"]
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert sorted(roles) == sorted(CLIENTS.values())
    for client, role in CLIENTS.items():
        assert roles[role]["login"] is True
        assert roles[role]["passwordSecret"]["name"] == values["cnpg"]["roleSecrets"][client]
    databases = {d["spec"]["name"]: d["spec"] for d in cnpg if d["kind"] == "Database"}
    assert sorted(databases) == ["features", "mlflow"]
    for database, db in databases.items():
        assert db["owner"] == CLIENTS[database]
        assert db["cluster"]["name"] == name
    store = spec["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    assert store["destinationPath"] == values["cnpg"]["backup"]["destinationPath"]
    for key, secret_key in (("accessKeyId", "access-key-id"), ("secretAccessKey", "secret-access-key")):
        assert store["s3Credentials"][key] == {"name": "mlp-postgres-backup-s3", "key": secret_key}
    assert re.fullmatch(r"[1-9]\d*[dwm]", spec["backup"]["retentionPolicy"])
    (scheduled,) = [o for o in cnpg if o["kind"] == "ScheduledBackup"]
    assert scheduled["spec"]["cluster"]["name"] == name
    assert scheduled["spec"]["method"] == "barmanObjectStore"
    assert len(scheduled["spec"]["schedule"].split()) == 6  # CNPG's cron has seconds first


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_every_client_connects_to_the_clusters_read_write_service(env):
    """No bundled PostgreSQL or MinIO is rendered, and every PostgreSQL host the chart hands a
    client is the Cluster's `-rw` Service."""
    objects, cnpg = cnpg_objects(OVERLAYS[env], f"ml-{env}")
    (cluster,) = [o for o in cnpg if o["kind"] == "Cluster"]
    rw = f"{cluster['metadata']['name']}-rw"
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert not [n for n in names if n[1].startswith(("mlp-postgresql", "mlp-minio")) and n[0] != "Secret"]
    text = yaml.safe_dump_all(objects)
    assert "mlp-postgresql:" not in text and "mlp-postgresql." not in text
    assert "mlp-minio" not in text
    # Every database URL a client gets (Airflow, MLflow, the feature store) names the -rw Service.
    urls = re.findall(r"postgresql(?:\+\w+)?://[^\s\"'@]*@([^:/\s\"']+)(?::\d+)?/(\w+)", text)
    assert {database for _, database in urls} == set(CLIENTS)
    assert {host.split(".")[0] for host, _ in urls} == {rw}


def test_bundled_and_managed_postgresql_together_are_refused():
    values = copy.deepcopy(OVERLAYS["prod"])
    values["postgresql"] = {"enabled": True}
    with pytest.raises(HelmFailedError, match=r"postgresql\.enabled"):
        render_chart(values)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "db.example.internal",
        # a short name resolves only in the release's namespace, not from a steps namespace
        "mlp-postgres-rw",
        # another namespace's Cluster
        "mlp-postgres-rw.ml-staging.svc.cluster.local",
    ],
)
def test_clients_pointed_elsewhere_are_refused(host):
    values = copy.deepcopy(OVERLAYS["prod"])
    values["global"]["postgresql"]["host"] = host
    with pytest.raises(HelmFailedError, match=r"mlp-postgres-rw\.ml-prod\.svc\.cluster\.local"):
        render_chart(values, namespace="ml-prod")


def test_the_qualified_read_write_service_is_accepted_with_or_without_the_domain():
    values = copy.deepcopy(OVERLAYS["prod"])
    for host in ("mlp-postgres-rw.ml-prod.svc", "mlp-postgres-rw.ml-prod.svc.cluster.local"):
        values["global"]["postgresql"]["host"] = host
        assert cnpg_objects(values, "ml-prod")[1]


def test_backups_without_a_destination_are_refused():
    values = copy.deepcopy(OVERLAYS["prod"])
    values["cnpg"]["backup"]["destinationPath"] = ""
    with pytest.raises(HelmFailedError, match="destinationPath"):
        render_chart(values, namespace="ml-prod")
    values["cnpg"]["backup"] = {"enabled": False}
    _, cnpg = cnpg_objects(values, "ml-prod")
    assert "ScheduledBackup" not in {o["kind"] for o in cnpg}
    (cluster,) = [o for o in cnpg if o["kind"] == "Cluster"]
    assert "backup" not in cluster["spec"]


def test_off_by_default():
    _, cnpg = cnpg_objects({})
    assert cnpg == []
    assert any(
        o["kind"] == "StatefulSet" and o["metadata"]["name"] == "mlp-postgresql" for o in render_chart({})
    )


def test_core_objects_of_the_managed_profile_validate():
    import kubernetes_validate

    objects, _ = cnpg_objects(OVERLAYS["prod"], "ml-prod")
    for obj in workloads(objects):
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
