"""Airflow 3: four components on one metadata database, one JWT secret, the KubernetesExecutor
with its pod template, a migration Job they wait for, and RBAC only in the pipeline namespace."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import (
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


def test_migration_job_is_named_after_the_image_and_is_no_hook():
    def job(values):
        (found,) = [
            o
            for o in render_chart(values)
            if o["kind"] == "Job" and "airflow-migrate" in o["metadata"]["name"]
        ]
        return found

    first = job({})
    assert "annotations" not in first["metadata"]
    assert pod_spec(first)["containers"][0]["args"] == ["airflow", "db", "migrate"]
    assert job({})["metadata"]["name"] == first["metadata"]["name"]
    bumped = job({"global": {"images": {"airflow": {"tag": "0.2.0"}}}})
    assert bumped["metadata"]["name"] != first["metadata"]["name"]


def test_rbac_lets_airflow_manage_pods_only_in_the_pipeline_namespace():
    objects = render_chart(TASK_NAMESPACE_VALUES)
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    assert [(r["kind"], r["metadata"]["namespace"]) for r in roles] == [("Role", "ml-steps")]
    resources = {res for rule in roles[0]["rules"] for res in rule["resources"]}
    assert resources == {"pods", "pods/log", "pods/exec", "events"}
    assert all("*" not in rule["verbs"] for rule in roles[0]["rules"])
    assert "secrets" not in resources
    binding = get(objects, "RoleBinding", "mlp-airflow-pod-manager")
    assert binding["metadata"]["namespace"] == "ml-steps"
    assert {(s["name"], s["namespace"]) for s in binding["subjects"]} == {
        ("mlp-airflow", "ml"),
        ("mlp-airflow", "ml-steps"),
    }
    assert not [o for o in objects if o["kind"] == "ClusterRoleBinding"]


def test_worker_pods_get_copies_of_what_they_mount_in_the_pipeline_namespace():
    objects = render_chart(TASK_NAMESPACE_VALUES)
    where = {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects}
    for kind, name in [
        ("ConfigMap", "mlp-airflow-config"),
        ("ConfigMap", "mlp-dag-settings"),
        ("Secret", "mlp-airflow-secrets"),
        ("ServiceAccount", "mlp-airflow"),
    ]:
        assert (kind, name, "ml") in where
        assert (kind, name, "ml-steps") in where
    (copy,) = [
        o
        for o in objects
        if o["kind"] == "Secret"
        and o["metadata"]["name"] == "mlp-airflow-secrets"
        and o["metadata"]["namespace"] == "ml-steps"
    ]
    assert set(copy["data"]) == {"api-secret-key"}  # no Fernet or JWT key where the tasks run


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


def test_remote_logging_to_the_bucket():
    objects = render_chart({"airflow": {"logs": {"remote": {"enabled": True}}}})
    cfg = airflow_cfg(objects)
    assert cfg["logging"]["remote_logging"] == "True"
    assert cfg["logging"]["remote_base_log_folder"] == "s3://ml-pipeline/airflow-logs"
    assert cfg["logging"]["remote_log_conn_id"] == "mlp_s3"
    worker_env = env_of(pod_template(objects)["spec"]["containers"][0])
    assert worker_env["LOGS_S3_ACCESS_KEY_ID"]["secretKeyRef"] == {
        "name": "mlp-pipeline",
        "key": "PIPELINE_S3__ACCESS_KEY_ID",
    }
    assert '"endpoint_url":"http://mlp-minio.ml.svc.cluster.local:9000"' in worker_env["AIRFLOW_CONN_MLP_S3"]


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
