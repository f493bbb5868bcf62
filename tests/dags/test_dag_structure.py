"""The DAG file parses cleanly and its shape follows the step registry and the MLP_DAG_* contract."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from pipeline.steps import STEP_NAMES, STEPS
from tests.dags.conftest import (
    CHECK,
    DAG_ID,
    DAGS,
    PREFLIGHT,
    airflow_env,
    load_dag,
    load_dagbag,
    run_airflow,
)

TASK_IDS = [CHECK, PREFLIGHT, *STEP_NAMES]

pytestmark = pytest.mark.airflow


def test_dagbag_loads_the_folder_without_import_errors(mlp_env):
    bag = load_dagbag()
    assert bag.import_errors == {}
    assert DAG_ID in bag.dags
    assert bag.dags[DAG_ID].fileloc == str(DAGS / "ml_pipeline.py")


def test_task_order_equals_the_step_registry(mlp_env):
    dag = load_dag()
    order = [task.task_id for task in dag.topological_sort()]
    assert order == TASK_IDS, "the params check, the preflight check, then the steps in registry order"
    # A chain, not only a topological order: each task waits for exactly the previous one.
    for previous, step in itertools.pairwise(TASK_IDS):
        assert dag.get_task(step).upstream_task_ids == {previous}
    assert dag.get_task(CHECK).upstream_task_ids == set()
    for spec in STEPS:
        assert dag.get_task(spec.name).doc_md == spec.summary


@pytest.mark.parametrize("runner", ["kubernetes", "local"])
def test_both_task_runners_build_the_same_graph(mlp_env, runner):
    mlp_env.setenv("MLP_DAG_TASK_RUNNER", runner)
    dag = load_dag()
    assert [t.task_id for t in dag.topological_sort()] == TASK_IDS
    expected = "KubernetesStepOperator" if runner == "kubernetes" else "LocalStepOperator"
    assert {type(t).__name__ for t in dag.tasks if t.task_id != CHECK} == {expected}
    assert type(dag.get_task(CHECK)).__name__ == "TriggerParamsCheck"
    assert dag.get_task(PREFLIGHT).arguments == ["doctor", "--json"]
    for step in STEP_NAMES:
        assert dag.get_task(step).arguments == ["step", step, "--run-id", "{{ run_id }}"]


def test_preflight_can_be_turned_off(mlp_env):
    mlp_env.setenv("MLP_DAG_PREFLIGHT", "false")
    dag = load_dag()
    assert [t.task_id for t in dag.topological_sort()] == [CHECK, *STEP_NAMES]


def test_scheduling_defaults(mlp_env):
    dag = load_dag()
    # weekly, Monday 03:00 UTC, or the monitor's retrain asset (tests/dags/test_monitor_dag.py)
    assert dag.timetable.timetable.expression == "0 3 * * 1"
    assert dag.timetable.can_be_scheduled
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.dagrun_timeout == timedelta(hours=6)
    assert set(dag.params) == {"source", "overrides"}
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_exponential_backoff == 2.0
        assert task.retry_delay == timedelta(seconds=30)
        assert task.max_retry_delay == timedelta(seconds=600)
        assert task.on_failure_callback


def test_schedule_retries_and_timeouts_follow_the_environment(mlp_env):
    mlp_env.setenv("MLP_DAG_SCHEDULE", "*/30 * * * *")
    mlp_env.setenv("MLP_DAG_RETRIES", "5")
    mlp_env.setenv("MLP_DAG_RUN_TIMEOUT_S", "7200")
    mlp_env.setenv("MLP_DAG_STEP_TIMEOUT_S", '{"default": 900, "train": 5400}')
    mlp_env.setenv("MLP_DAG_TASK_RUNNER", "local")
    dag = load_dag()
    assert dag.timetable.timetable.expression == "*/30 * * * *"
    assert dag.dagrun_timeout == timedelta(hours=2)
    assert {t.retries for t in dag.tasks} == {5}
    assert dag.get_task("train").execution_timeout == timedelta(seconds=5400)
    assert dag.get_task("ingest").execution_timeout == timedelta(seconds=900)


def test_pod_execution_timeout_adds_the_bounded_waits(mlp_env):
    mlp_env.setenv("MLP_DAG_STEP_TIMEOUT_S", "1000")
    mlp_env.setenv("MLP_DAG_GPU_ENABLED", "true")
    dag = load_dag()
    ingest, train = dag.get_task("ingest"), dag.get_task("train")
    assert (ingest.schedule_timeout_seconds, ingest.startup_timeout_seconds) == (600, 600)
    assert ingest.execution_timeout == timedelta(seconds=600 + 600 + 1000)
    assert (train.schedule_timeout_seconds, train.startup_timeout_seconds) == (1800, 1200)
    assert train.execution_timeout == timedelta(seconds=1800 + 1200 + 1000)


def test_schedule_none_disables_scheduling(mlp_env):
    mlp_env.setenv("MLP_DAG_SCHEDULE", "none")
    dag = load_dag()
    # No timetable left: only the monitor's retrain asset starts a run (tests/dags/test_monitor_dag.py).
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert not hasattr(dag.timetable, "timetable")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLP_DAG_TASK_RUNNER", "docker"),
        ("MLP_DAG_RESOURCES", '{"trian": {"limits": {"memory": "1Gi"}}}'),
        ("MLP_DAG_RESOURCES", '{"train": {"limits": {"memory": "lots"}}}'),
        ("MLP_DAG_GPU_TOLERATIONS", '{"key": "gpu"}'),
        ("MLP_DAG_ON_FINISH_ACTION", "delete_everything"),
        ("MLP_DAG_STEP_TIMEOUT_S", "soon"),
        ("MLP_DAG_SCHEDULE", "every monday"),
        ("MLP_DAG_NAMESPACE", "Not_A_Namespace"),
        ("MLP_DAG_TRIGGER_ALLOWED_KEYS", "train.*,gate margin"),
    ],
)
def test_a_bad_setting_is_an_import_error_naming_the_variable(mlp_env, name, value):
    mlp_env.setenv(name, value)
    bag = load_dagbag()
    assert DAG_ID not in bag.dags
    assert name in bag.import_errors[str(DAGS / "ml_pipeline.py")]


def test_list_import_errors_local_is_clean(sqlite_airflow, tmp_path):
    home, db_url = sqlite_airflow
    proc = run_airflow(
        ["dags", "list-import-errors", "--local", "--output", "json"],
        airflow_env(home, db_url, MLP_DAG_TASK_RUNNER="kubernetes", MLP_DAG_SCHEDULE="0 3 * * 1"),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.stdout.strip().splitlines()[-1] in ("[]", "No data found")
    # ... and the CLI really parsed our folder: a broken setting shows up there.
    broken = run_airflow(
        ["dags", "list-import-errors", "--local", "--output", "json"],
        airflow_env(home, db_url, MLP_DAG_TASK_RUNNER="docker"),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert "MLP_DAG_TASK_RUNNER" in broken.stdout
