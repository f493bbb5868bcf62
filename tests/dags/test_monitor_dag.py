"""The monitor DAG (``ml_pipeline_monitor``) and the loop's wiring into the training DAG: structure,
the monitor's pod (validated strictly against Kubernetes 1.33), the retrain asset event carrying the
monitor's decision, the alerts, and the cause reaching the training DAG's step pods."""

from __future__ import annotations

import json
import types
from typing import Any

import pytest

from pipeline.steps import STEP_NAMES
from tests.dags.conftest import DAG_ID, DAGS, load_dagbag
from tests.dags.http_servers import WebhookReceiver
from tests.dags.test_pods import DIGEST, base_container, validate

pytestmark = pytest.mark.airflow

MONITOR_DAG = "ml_pipeline_monitor"
SUMMARY = {
    "model": "penguins",
    "champion_version": "3",
    "monitor_run_id": "0123abcd",
    "window": {"source": "prediction_log", "since": "2026-01-01T00:00:00+00:00", "rows": 150},
    "drift_detected": True,
    "drifted_columns": {"bill_length_mm": 1e-12, "island": 3e-9},
    "degraded": False,
    "retrain_triggered": True,
    "retrain_cause": "drift",
    "retrain_skipped": None,
    "alerts": [
        {"kind": "drift", "text": "Data drift on penguins v3: bill_length_mm (1e-12), island (3e-09)"}
    ],
    "report": {"artifact": "runs:/0123abcd/drift_report.html"},
}


def dags():
    bag = load_dagbag()
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags


def context(dag, task, run_id: str, **extra: Any) -> dict[str, Any]:
    ti = types.SimpleNamespace(
        dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1, run_id=run_id
    )
    return {"ti": ti, "task_instance": ti, "run_id": run_id, "dag": dag, "task": task, "params": {}, **extra}


def test_the_monitor_dag_runs_the_monitor_then_alerts_and_the_retrain_asset(mlp_env):
    from ml_pipeline_support.monitor import RETRAIN_ASSET

    dag = dags()[MONITOR_DAG]
    assert {t.task_id for t in dag.tasks} == {"monitor", "alerts", "retrain"}
    assert dag.get_task("alerts").upstream_task_ids == {"monitor"}
    assert dag.get_task("retrain").upstream_task_ids == {"monitor"}
    assert dag.get_task("retrain").outlets == [RETRAIN_ASSET]
    assert dag.timetable.can_be_scheduled and dag.catchup is False and dag.max_active_runs == 1
    # MLP_DAG_MONITOR_SCHEDULE's default, @hourly, in UTC like the training DAG
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.timetable.expression == "0 * * * *" and str(dag.timetable.timezone) == "UTC"
    monitor = dag.get_task("monitor")
    assert monitor.arguments == ["monitor", "--trigger"] and monitor.do_xcom_push is True
    assert monitor.on_failure_callback  # the failure alert of every step


def test_the_monitor_dag_runs_on_the_configured_schedule_or_only_when_triggered(mlp_env):
    mlp_env.setenv("MLP_DAG_MONITOR_SCHEDULE", "*/15 * * * *")
    mlp_env.setenv("MLP_DAG_SCHEDULE", "@daily")  # the training DAG's own setting, apart
    bag = dags()
    assert bag[MONITOR_DAG].timetable.expression == "*/15 * * * *"
    assert bag[DAG_ID].timetable.timetable.expression == "0 0 * * *"
    mlp_env.setenv("MLP_DAG_MONITOR_SCHEDULE", "none")
    timetable = dags()[MONITOR_DAG].timetable
    assert type(timetable).__name__ == "NullTimetable" and not timetable.can_be_scheduled


def test_a_bad_monitor_schedule_is_an_import_error_naming_the_variable(mlp_env):
    mlp_env.setenv("MLP_DAG_MONITOR_SCHEDULE", "61 * * * *")  # five fields, no such minute
    bag = load_dagbag()
    assert MONITOR_DAG not in bag.dags
    error = bag.import_errors[str(DAGS / "ml_pipeline_monitor.py")]
    assert "MLP_DAG_MONITOR_SCHEDULE='61 * * * *' is not a 5-field cron expression" in error


def test_the_training_dag_is_scheduled_on_its_timetable_or_the_retrain_asset(mlp_env):
    from ml_pipeline_support.monitor import RETRAIN_ASSET

    timetable = dags()[DAG_ID].timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert timetable.timetable.expression == "0 3 * * 1"
    assert list(timetable.asset_condition.objects) == [RETRAIN_ASSET]


def test_the_monitor_pod_validates_strictly_and_runs_pipeline_monitor(mlp_env):
    from kubernetes.client import ApiClient

    mlp_env.setenv("MLP_DAG_IMAGE", f"registry.example.com/ml-pipeline/pipeline@{DIGEST}")
    mlp_env.setenv("MLP_DAG_NAMESPACE", "ml-pipeline")
    mlp_env.setenv("MLP_DAG_ENV_SECRETS", "mlp-s3")
    dag = dags()[MONITOR_DAG]
    task = dag.get_task("monitor")
    ctx = context(dag, task, "scheduled__2026-12-01T00:00:00+00:00")
    task.render_template_fields(ctx)
    pod = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(ctx, dry_run=True))
    validate(pod)
    container = base_container(pod)
    assert container["args"] == ["monitor", "--trigger"] and not container.get("command")
    assert container["image"] == f"registry.example.com/ml-pipeline/pipeline@{DIGEST}"
    assert pod["metadata"]["namespace"] == "ml-pipeline"
    # The XCom sidecar reads the summary the monitor writes to /airflow/xcom/return.json.
    assert "airflow-xcom-sidecar" in {c["name"] for c in pod["spec"]["containers"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_triggered_retrain_emits_the_asset_event_with_the_cause(mlp_env):
    from airflow.sdk.exceptions import AirflowSkipException
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from ml_pipeline_support.monitor import RETRAIN_ASSET

    retrain = dags()[MONITOR_DAG].get_task("retrain").python_callable
    events = OutletEventAccessors()
    extra = retrain(SUMMARY, outlet_events=events)
    assert events[RETRAIN_ASSET].extra == extra
    assert extra["cause"] == "drift" and extra["monitor_run_id"] == "0123abcd"
    assert extra["drifted_columns"] == SUMMARY["drifted_columns"] and extra["window"]["rows"] == 150
    quiet = {**SUMMARY, "retrain_triggered": False, "retrain_skipped": "cool-down: ..."}
    with pytest.raises(AirflowSkipException, match="cool-down"):
        retrain(quiet, outlet_events=OutletEventAccessors())


def test_the_alerts_go_through_the_step_failure_webhook(mlp_env):
    from ml_pipeline_support.monitor import monitor_alerts

    dag = dags()[MONITOR_DAG]
    ctx = context(dag, dag.get_task("alerts"), "scheduled__2026-12-01T00:00:00+00:00")
    with WebhookReceiver() as hook:
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        assert monitor_alerts(ctx, SUMMARY) == 1
        assert monitor_alerts(ctx, {**SUMMARY, "alerts": []}) == 0  # an open episode: no alert
    (message,) = hook.messages()
    assert "Data drift on penguins v3: bill_length_mm" in message["text"]
    assert "triggered (drift)" in message["text"] and "runs:/0123abcd/drift_report.html" in message["text"]


def _step_env(dag, step: str, **ctx_extra: Any) -> dict[str, str]:
    task = dag.get_task(step)
    ctx = context(dag, task, ctx_extra.pop("run_id", "manual__2026-12-01T00:00:00+00:00"), **ctx_extra)
    task.render_template_fields(ctx)
    if hasattr(task, "env_vars"):
        return {e.name: e.value for e in task.env_vars}
    return dict(task.env)


@pytest.mark.parametrize("runner", ["kubernetes", "local"])
def test_the_asset_events_cause_reaches_every_training_step(mlp_env, runner):
    from ml_pipeline_support.monitor import RETRAIN_ASSET, retrain_extra

    mlp_env.setenv("MLP_DAG_TASK_RUNNER", runner)
    event = types.SimpleNamespace(extra=retrain_extra(SUMMARY))
    for step in STEP_NAMES:
        dag = dags()[DAG_ID]  # a fresh parse: rendering changes the task
        env = _step_env(
            dag,
            step,
            run_id="asset_triggered__2026-12-01T01:00:00+00:00",
            dag_run=types.SimpleNamespace(run_type="asset_triggered"),
            triggering_asset_events={RETRAIN_ASSET: [event]},
        )
        assert env["PIPELINE_TRIGGER__CAUSE"] == "drift"
        assert env["PIPELINE_TRIGGER__MONITOR_RUN_ID"] == "0123abcd"
        assert json.loads(env["PIPELINE_TRIGGER__DRIFTED_COLUMNS"]) == SUMMARY["drifted_columns"]
        assert json.loads(env["PIPELINE_TRIGGER__WINDOW"])["rows"] == 150


def test_a_scheduled_or_manual_run_records_schedule_or_manual(mlp_env):
    dag = dags()[DAG_ID]
    scheduled = _step_env(dag, "register", dag_run=types.SimpleNamespace(run_type="scheduled"))
    assert scheduled["PIPELINE_TRIGGER__CAUSE"] == "schedule"
    assert "PIPELINE_TRIGGER__MONITOR_RUN_ID" not in scheduled
    dag = dags()[DAG_ID]
    manual = _step_env(dag, "register", dag_run=types.SimpleNamespace(run_type="manual"))
    assert manual["PIPELINE_TRIGGER__CAUSE"] == "manual"


# --------------------------------------------------------------------------------------------
# For real: `airflow dags test ml_pipeline_monitor` (one-machine mode) on a trained champion
# --------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_dags_test_runs_the_monitor_alerts_once_and_emits_the_retrain_event(sqlite_airflow, tmp_path):
    from datetime import UTC, datetime, timedelta

    from tests.conftest import FAST, run_cli
    from tests.dags.conftest import airflow_env, run_airflow
    from tests.dags.test_dag_runs import query
    from tests.e2e.served import drifted_penguins, log_predictions

    home, db_url = sqlite_airflow
    pipeline_home = tmp_path / "pipeline-home"
    trained = run_cli(["run", *FAST], pipeline_home)
    assert trained.returncode == 0, trained.stderr[-3000:]
    log_predictions(pipeline_home, drifted_penguins(), datetime.now(UTC) - timedelta(minutes=30))

    with WebhookReceiver() as hook:
        env = airflow_env(home, db_url, MLP_ALERT_WEBHOOK_URL=hook.url, PIPELINE_HOME=str(pipeline_home))
        run_airflow(["dags", "test", MONITOR_DAG], env, cwd=tmp_path, timeout=600)
    (message,) = hook.messages()  # one alert: the drift episode opened
    assert "Data drift on penguins v1: bill_length_mm" in message["text"]
    (run_id,) = query(db_url, "SELECT run_id FROM dag_run WHERE dag_id = :d", d=MONITOR_DAG)[0]
    states = dict(
        query(
            db_url,
            "SELECT task_id, state FROM task_instance WHERE dag_id = :d AND run_id = :r",
            d=MONITOR_DAG,
            r=run_id,
        )
    )
    assert states == {"monitor": "success", "alerts": "success", "retrain": "success"}
    (extra,) = query(
        db_url,
        "SELECT extra FROM asset_event WHERE source_dag_id = :d AND source_run_id = :r",
        d=MONITOR_DAG,
        r=run_id,
    )[0]
    extra = extra if isinstance(extra, dict) else json.loads(extra)
    assert extra["cause"] == "drift" and set(extra["drifted_columns"]) == {"bill_length_mm", "island"}
    assert extra["window"]["rows"] == 150 and extra["monitor_run_id"]
