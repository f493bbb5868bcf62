"""Airflow 3: four components on one metadata database, one JWT secret, the KubernetesExecutor
with its pod template, a migration Job they wait for, remote task logs in the object store
(RBAC: tests/charts/test_rbac.py)."""

from __future__ import annotations

import json

import pytest

from tests.charts.chart_utils import (
    EXTERNAL_VALUES,
    REDIS_VALUES,
    TASK_NAMESPACE_VALUES,
    airflow_cfg,
    env_of,
    get,
    pod_spec,
    pod_template,
    render_chart,
)

pytestmark = pytest.mark.charts

COMPONENTS = {
    "api-server": ["airflow", "api-server", "--port", "8080", "--workers", "1", "--proxy-headers"],
    "scheduler": ["airflow", "scheduler"],
    "dag-processor": ["airflow", "dag-processor"],
    "triggerer": ["airflow", "triggerer"],
}


def component(objects, name):
    return get(objects, "Deployment", f"mlp-airflow-{name}")


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_component_runs_its_command_behind_the_image_entrypoint(name):
    container = pod_spec(component(render_chart(), name))["containers"][0]
    assert "command" not in container  # tini, the image's entrypoint, stays PID 1
    assert container["args"] == COMPONENTS[name]
    assert container["image"] == "ml-pipeline/airflow:0.1.0"


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_components_share_database_and_keys(name):
    env = env_of(pod_spec(component(render_chart(), name))["containers"][0])
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:$(AIRFLOW_DB_PASSWORD)@mlp-postgresql.ml.svc.cluster.local:5432/airflow"
    )
    assert env["AIRFLOW_DB_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-postgresql-auth", "key": "airflow-password"}
    }
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == {
        "secretKeyRef": {"name": "mlp-airflow-secrets", "key": "jwt-secret"}
    }
    assert env["AIRFLOW__CORE__FERNET_KEY"] == {
        "secretKeyRef": {"name": "mlp-airflow-secrets", "key": "fernet-key"}
    }
    assert env["AIRFLOW__API__SECRET_KEY"] == {
        "secretKeyRef": {"name": "mlp-airflow-secrets", "key": "api-secret-key"}
    }
    assert env["AIRFLOW_CONFIG"] == "/opt/airflow/config/airflow.cfg"


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_components_wait_for_the_migration_and_restart_on_changes(name):
    deployment = component(render_chart(), name)
    init = pod_spec(deployment)["initContainers"][0]
    assert init["name"] == "wait-for-migrations"
    assert init["args"][:3] == ["airflow", "db", "check-migrations"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    for key in (
        "checksum/airflow-config",
        "checksum/dag-settings",
        "checksum/airflow-secrets",
        "checksum/db-auth",
    ):
        assert key in annotations


def test_config_change_changes_the_checksum():
    def checksum(values):
        return component(render_chart(values), "scheduler")["spec"]["template"]["metadata"]["annotations"]

    base = checksum({})
    gpu = checksum({"airflow": {"dag": {"gpu": {"enabled": True}}}})
    assert base["checksum/dag-settings"] != gpu["checksum/dag-settings"]
    assert base["checksum/airflow-config"] == gpu["checksum/airflow-config"]


def test_airflow_cfg_configures_the_kubernetes_executor():
    cfg = airflow_cfg(render_chart())
    assert cfg["core"]["executor"] == "KubernetesExecutor"
    assert (
        cfg["core"]["execution_api_server_url"]
        == "http://mlp-airflow-api-server.ml.svc.cluster.local:8080/execution/"
    )
    assert cfg["core"]["load_examples"] == "False"
    assert cfg["core"]["dags_folder"] == "/opt/airflow/dags"
    assert cfg["kubernetes_executor"]["namespace"] == "ml"
    assert cfg["kubernetes_executor"]["pod_template_file"] == "/opt/airflow/config/pod_template_file.yaml"
    assert cfg["scheduler"]["enable_health_check"] == "True"
    for section in cfg.values():
        for key, value in section.items():
            assert "secret" not in key or not value, f"{key} must come from the environment"


def test_extra_config_merges_over_the_chart_settings():
    cfg = airflow_cfg(
        render_chart({"airflow": {"config": {"core": {"parallelism": 3, "default_timezone": "UTC"}}}})
    )
    assert cfg["core"]["parallelism"] == "3"
    assert cfg["core"]["default_timezone"] == "UTC"
    assert cfg["core"]["executor"] == "KubernetesExecutor"


def migrate_job(values):
    (found,) = [
        o for o in render_chart(values) if o["kind"] == "Job" and "airflow-migrate" in o["metadata"]["name"]
    ]
    return found


def test_migration_job_is_named_after_its_pod_template_and_no_helm_hook():
    """A Job's pod template is immutable: any change to it (not only the image) must make a new
    Job, or `helm upgrade` / an Argo CD sync fails with `spec.template: field is immutable`. No
    Helm hook (the components wait for it); under Argo CD a Sync hook re-created at every sync, so
    a migration that failed once runs again."""
    first = migrate_job({})
    annotations = first["metadata"]["annotations"]
    assert not [key for key in annotations if key.startswith("helm.sh/")]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert migrate_job({})["metadata"]["name"] == first["metadata"]["name"]  # unchanged: left in place
    changes = [
        {"global": {"images": {"airflow": {"tag": "0.2.0"}}}},
        {"airflow": {"migrateDatabaseJob": {"resources": {"limits": {"memory": "2Gi"}}}}},
        {"airflow": {"logs": {"remote": {"enabled": False}}}},
        {"airflow": {"env": [{"name": "TZ", "value": "UTC"}]}},
        {"airflow": {"migrateDatabaseJob": {"rerun": "2026-12-02"}}},
    ]
    names = {first["metadata"]["name"]}
    for change in changes:
        job = migrate_job(change)
        assert job["spec"]["template"] != first["spec"]["template"], change
        assert job["metadata"]["name"] not in names, change
        names.add(job["metadata"]["name"])


def test_migration_waits_for_the_database_bounded_and_says_which():
    job = migrate_job({"airflow": {"migrateDatabaseJob": {"waitForDatabaseSeconds": 120}}})
    container = pod_spec(job)["containers"][0]
    assert container["args"][:2] == ["bash", "-c"]
    script = container["args"][2]
    assert "until airflow db check" in script
    assert "+ 120 ))" in script
    assert "mlp-postgresql.ml.svc.cluster.local:5432/airflow did not answer within 120 s" in script
    assert script.index("airflow db check") < script.index("airflow db migrate")


def test_migration_wait_script_gives_up_with_the_message(tmp_path):
    """Run the rendered script with a fake `airflow` whose `db check` always fails."""
    import os
    import subprocess

    job = migrate_job({"airflow": {"migrateDatabaseJob": {"waitForDatabaseSeconds": 0}}})
    script = pod_spec(job)["containers"][0]["args"][2]
    fake = tmp_path / "airflow"
    fake.write_text(
        '#!/bin/sh\necho "$@" >> "$CALLS"\n[ "$1 $2" = "db check" ] && { echo refused; exit 1; }\nexit 0\n'
    )
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "CALLS": str(calls)}
    script = script.replace("/tmp/db-check.log", str(tmp_path / "db-check.log"))
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "did not answer within 0 s" in proc.stderr and "refused" in proc.stderr
    assert "db migrate" not in calls.read_text()  # never migrates against no database


def test_fab_auth_manager_creates_its_admin_in_the_migration_job():
    fab = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    objects = render_chart({"airflow": {"auth": {"manager": fab}}})
    cfg = airflow_cfg(objects)
    assert cfg["core"]["auth_manager"] == fab
    assert "simple_auth_manager_users" not in cfg["core"]
    (job,) = [o for o in objects if o["kind"] == "Job" and "airflow-migrate" in o["metadata"]["name"]]
    container = pod_spec(job)["containers"][0]
    assert "airflow users create --role Admin" in container["args"][2]
    assert env_of(container)["ADMIN_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-airflow-secrets", "key": "admin-password"}
    }
    api = pod_spec(component(objects, "api-server"))
    assert [c["name"] for c in api["initContainers"]] == ["wait-for-migrations"]


def test_worker_pods_get_copies_of_what_they_mount_in_the_pipeline_namespace():
    objects = render_chart(TASK_NAMESPACE_VALUES)
    where = {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects}
    for kind, name in [
        ("ConfigMap", "mlp-airflow-config"),
        ("ConfigMap", "mlp-dag-settings"),
        ("Secret", "mlp-airflow-secrets"),
    ]:
        assert (kind, name, "ml") in where
        assert (kind, name, "ml-steps") in where
    assert ("ServiceAccount", "mlp-airflow-worker", "ml-steps") in where
    (copy,) = [
        o
        for o in objects
        if o["kind"] == "Secret"
        and o["metadata"]["name"] == "mlp-airflow-secrets"
        and o["metadata"]["namespace"] == "ml-steps"
    ]
    assert set(copy["data"]) == {"api-secret-key"}  # no Fernet or JWT key where the tasks run


def test_every_secret_a_worker_pod_reads_that_the_chart_renders_is_rendered_where_it_runs():
    """A Secret the chart generates (e.g. the airflow-logs S3 user's) must exist in the pipeline
    namespace too, or every worker pod there fails with CreateContainerConfigError."""
    objects = render_chart(TASK_NAMESPACE_VALUES)
    rendered = {(o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects if o["kind"] == "Secret"}
    names = {name for name, _ in rendered}
    (base,) = pod_template(objects)["spec"]["containers"]
    read = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in base["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert read
    for name in read & names:
        assert (name, "ml-steps") in rendered, name


def test_worker_pod_template_has_no_database_access():
    template = pod_template(render_chart())
    (base,) = template["spec"]["containers"]
    assert base["name"] == "base"
    env = env_of(base)
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert "AIRFLOW__CORE__FERNET_KEY" not in env
    assert env["AIRFLOW__API__SECRET_KEY"]["secretKeyRef"]["key"] == "api-secret-key"
    assert base["envFrom"] == [{"configMapRef": {"name": "mlp-dag-settings"}}]
    assert template["spec"]["restartPolicy"] == "Never"


def test_api_server_writes_the_admin_password_file_from_the_secret():
    spec = pod_spec(component(render_chart(), "api-server"))
    init = {c["name"]: c for c in spec["initContainers"]}["write-auth-passwords"]
    assert env_of(init)["ADMIN_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-airflow-secrets", "key": "admin-password"}
    }
    assert {"name": "auth", "emptyDir": {}} in spec["volumes"]
    cfg = airflow_cfg(render_chart())
    assert cfg["core"]["simple_auth_manager_passwords_file"] == "/opt/airflow/auth/passwords.json"
    assert cfg["core"]["simple_auth_manager_users"] == "admin:admin"


def test_probes():
    objects = render_chart()
    api = pod_spec(component(objects, "api-server"))["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/v2/monitor/health"
    scheduler = pod_spec(component(objects, "scheduler"))["containers"][0]
    assert scheduler["livenessProbe"]["httpGet"] == {"path": "/health", "port": "health"}
    for name, job_type in [("dag-processor", "DagProcessorJob"), ("triggerer", "TriggererJob")]:
        container = pod_spec(component(objects, name))["containers"][0]
        assert job_type in container["livenessProbe"]["exec"]["command"]


def test_git_sync_sidecar_and_worker_init_container():
    values = {
        "airflow": {
            "gitSync": {"enabled": True, "repo": "https://git.example.com/dags.git", "subPath": "dags"}
        }
    }
    objects = render_chart(values)
    names = [c["name"] for c in pod_spec(component(objects, "dag-processor"))["containers"]]
    assert names == ["dag-processor", "git-sync"]
    assert airflow_cfg(objects)["core"]["dags_folder"] == "/opt/airflow/git-dags/repo/dags"
    template = pod_template(objects)
    assert [c["name"] for c in template["spec"]["initContainers"]] == ["git-sync-init"]
    assert env_of(template["spec"]["initContainers"][0])["GITSYNC_ONE_TIME"] == "true"


def test_remote_logging_is_on_by_default_into_the_logs_bucket():
    objects = render_chart()
    cfg = airflow_cfg(objects)
    assert cfg["logging"]["remote_logging"] == "True"
    assert cfg["logging"]["remote_base_log_folder"] == "s3://airflow-logs"
    assert cfg["logging"]["remote_log_conn_id"] == "mlp_s3"
    keys = {"secretKeyRef": {"name": "mlp-s3-airflow-logs", "key": "access-key-id"}}
    containers = [pod_template(objects)["spec"]["containers"][0]]
    containers += [pod_spec(component(objects, name))["containers"][0] for name in COMPONENTS]
    for container in containers:  # workers write the logs, the api-server reads them
        env = env_of(container)
        assert env["LOGS_S3_ACCESS_KEY_ID"] == keys, container["name"]
        conn = json.loads(env["AIRFLOW_CONN_MLP_S3"])
        assert conn["conn_type"] == "aws"
        assert conn["login"] == "$(LOGS_S3_ACCESS_KEY_ID)"
        assert conn["extra"]["endpoint_url"] == "http://mlp-minio.ml.svc.cluster.local:9000"
        # Kubernetes expands $(VAR) only for variables defined earlier in the list
        order = [e["name"] for e in container["env"]]
        assert order.index("LOGS_S3_SECRET_ACCESS_KEY") < order.index("AIRFLOW_CONN_MLP_S3")


def test_remote_logging_with_external_s3_uses_its_client_secret_and_prefix():
    values = json.loads(json.dumps(EXTERNAL_VALUES))
    values["global"]["s3"]["clientSecrets"] = {"airflow-logs": "team-logs"}
    values["airflow"] = {"logs": {"remote": {"prefix": "/ml/"}}}
    objects = render_chart(values)
    assert airflow_cfg(objects)["logging"]["remote_base_log_folder"] == "s3://airflow-logs/ml"
    env = env_of(pod_template(objects)["spec"]["containers"][0])
    assert env["LOGS_S3_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "team-logs"
    conn = json.loads(env["AIRFLOW_CONN_MLP_S3"])
    assert conn["extra"] == {"endpoint_url": "https://s3.eu-west-1.amazonaws.com", "region_name": "eu-west-1"}
    # without a client Secret of its own, the logs use the external S3's Secret
    del values["global"]["s3"]["clientSecrets"]
    env = env_of(pod_template(render_chart(values))["spec"]["containers"][0])
    assert env["LOGS_S3_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "team-s3"


def test_remote_logging_can_be_turned_off():
    objects = render_chart({"airflow": {"logs": {"remote": {"enabled": False}}}})
    assert airflow_cfg(objects)["logging"]["remote_logging"] == "False"
    assert "AIRFLOW_CONN_MLP_S3" not in env_of(pod_template(objects)["spec"]["containers"][0])


def sidecar_image(values):
    conn = json.loads(
        env_of(pod_template(render_chart(values))["spec"]["containers"][0])["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
    )
    assert conn["conn_type"] == "kubernetes" and conn["extra"]["in_cluster"] is True
    return conn["extra"]["xcom_sidecar_container_image"]


def test_xcom_sidecar_image_is_pinned_and_configurable():
    assert sidecar_image({}) == "ml-pipeline/pipeline:0.1.0"  # the pipeline image, never `alpine`
    digest = "sha256:" + "e" * 64
    values = {
        "airflow": {
            "dag": {"xcomSidecarImage": {"repository": "registry.example.com/alpine", "digest": digest}}
        }
    }
    assert sidecar_image(values) == f"registry.example.com/alpine@{digest}"


def test_hybrid_executor_adds_celery_workers():
    objects = render_chart(REDIS_VALUES)
    assert airflow_cfg(objects)["core"]["executor"] == "CeleryExecutor,KubernetesExecutor"
    worker = pod_spec(component(objects, "celery-worker"))["containers"][0]
    assert worker["args"][:3] == ["airflow", "celery", "worker"]


@pytest.mark.airflow
@pytest.mark.parametrize("profile", ["defaults", "redis-celery", "git-sync-remote-logs"])
def test_every_airflow_cfg_option_is_one_airflow_knows(profile):
    """A misspelt option would be silently ignored by Airflow: check each against Airflow's own
    configuration description (core plus the installed providers)."""
    from tests.charts.chart_utils import PROFILES

    try:
        from tests.dags.conftest import require_airflow

        require_airflow()
        from airflow.configuration import conf
    except ImportError as exc:
        from tests.support import unavailable

        unavailable(f"Apache Airflow ({exc})", "pip install -e '.[airflow]'")
    import importlib.util

    known = conf.configuration_description
    for section, options in airflow_cfg(render_chart(PROFILES[profile])).items():
        provider = {"celery": "airflow.providers.celery"}.get(section)
        if provider and importlib.util.find_spec(provider) is None:
            continue  # that provider lives in the Airflow image, not necessarily in this venv
        assert section in known, f"unknown section [{section}]"
        for option in options:
            assert option in known[section]["options"], f"unknown option [{section}] {option}"
