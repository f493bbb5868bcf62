"""The sweep DAG (``dags/ml_pipeline_sweep.py``): parses, has the prepare -> mapped trials -> finalize
shape, builds valid pods from the same MLP_DAG_* settings as the training DAG, and runs for real
(``airflow dags test``, one-machine mode) with trials mapped over two slots.
"""

from __future__ import annotations

import itertools
import json
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.dags.conftest import airflow_env, load_dagbag, run_airflow
from tests.support import unavailable

pytestmark = pytest.mark.airflow

SWEEP_DAG_ID = "ml_pipeline_sweep"
RUN_ID = "manual__2026-11-30T10:00:00+00:00"
TASKS = ["check_params", "sweep_prepare", "trial_slots", "sweep_trials", "sweep_finalize"]


def load_sweep_dag():
    bag = load_dagbag()
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[SWEEP_DAG_ID]


def test_the_sweep_dag_parses_beside_the_training_dag(mlp_env):
    bag = load_dagbag()
    assert bag.import_errors == {}
    assert {"ml_pipeline", SWEEP_DAG_ID} <= set(bag.dags)


@pytest.mark.parametrize("runner", ["kubernetes", "local"])
def test_prepare_then_trials_mapped_over_slots_then_finalize(mlp_env, runner):
    mlp_env.setenv("MLP_DAG_TASK_RUNNER", runner)
    dag = load_sweep_dag()
    assert [t.task_id for t in dag.topological_sort()] == TASKS
    for previous, task_id in itertools.pairwise(TASKS):
        assert dag.get_task(task_id).upstream_task_ids == {previous}
    assert dag.timetable.can_be_scheduled is False  # triggered by hand
    assert dag.max_active_runs == 1
    assert set(dag.params) == {"source", "overrides"}
    operator = "KubernetesStepOperator" if runner == "kubernetes" else "LocalStepOperator"
    trials = dag.get_task("sweep_trials")
    assert type(trials).__name__ == "MappedOperator"
    assert trials.operator_class.__name__ == operator
    assert set(trials.expand_input.value) == {"arguments"}  # one mapped instance per slot
    assert trials.partial_kwargs["max_active_tis_per_dagrun"] == 4
    prepare, finalize = dag.get_task("sweep_prepare"), dag.get_task("sweep_finalize")
    assert type(prepare).__name__ == type(finalize).__name__ == operator
    assert prepare.arguments == ["sweep", "--stage", "prepare", "--run-id", "{{ run_id }}"]
    assert finalize.arguments == ["sweep", "--stage", "finalize", "--run-id", "{{ run_id }}"]
    assert finalize.trigger_rule == "none_failed"  # an empty mapping (nothing left) is fine
    for task in (prepare, finalize):
        assert task.retries == 3 and task.on_failure_callback


@pytest.mark.parametrize(
    ("slots", "remaining", "expected"), [("4", 10, 4), ("4", 2, 2), ("4", 0, 0), ("6", 10, 6)]
)
def test_trial_slots_follow_the_remaining_trials_and_mlp_dag_sweep_slots(mlp_env, slots, remaining, expected):
    mlp_env.setenv("MLP_DAG_SWEEP_SLOTS", slots)
    dag = load_sweep_dag()
    function = dag.get_task("trial_slots").python_callable
    arguments = function({"run_id": RUN_ID, "remaining": remaining, "n_trials": 10})
    assert arguments == [
        ["sweep", "--stage", "worker", "--run-id", RUN_ID, "--slot", str(slot)] for slot in range(expected)
    ]


def test_a_malformed_slot_count_is_an_import_error(mlp_env):
    mlp_env.setenv("MLP_DAG_SWEEP_SLOTS", "many")
    bag = load_dagbag()
    (error,) = [e for path, e in bag.import_errors.items() if path.endswith("ml_pipeline_sweep.py")]
    assert "MLP_DAG_SWEEP_SLOTS='many' is not an integer" in error


def build_pod(dag, task, params: dict[str, Any]) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    ti = types.SimpleNamespace(
        dag_id=dag.dag_id, task_id=task.task_id, map_index=0, try_number=1, run_id=RUN_ID
    )
    ctx = {"ti": ti, "task_instance": ti, "run_id": RUN_ID, "dag": dag, "task": task, "params": params}
    task.render_template_fields(ctx)
    return ApiClient().sanitize_for_serialization(task.build_pod_request_obj(ctx, dry_run=True))


def test_pods_are_valid_and_trial_pods_are_shaped_like_the_train_step(mlp_env):
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate", "pip install kubernetes-validate")
    mlp_env.setenv("MLP_DAG_GPU_ENABLED", "true")
    mlp_env.setenv("MLP_DAG_NAMESPACE", "ml-pipeline")
    mlp_env.setenv("MLP_DAG_RESOURCES", '{"train": {"limits": {"memory": "6Gi"}}}')
    mlp_env.setenv("MLP_DAG_SWEEP_WORKER_TIMEOUT_S", "7200")
    dag = load_sweep_dag()
    params = {"source": None, "overrides": ["sweep.n_trials=40"]}
    worker_arguments = ["sweep", "--stage", "worker", "--run-id", RUN_ID, "--slot", "0"]
    tasks = {
        "sweep_prepare": dag.get_task("sweep_prepare"),
        "sweep_trials": dag.get_task("sweep_trials").unmap({"arguments": list(worker_arguments)}),
        "sweep_finalize": dag.get_task("sweep_finalize"),
    }
    pods = {name: build_pod(dag, task, dict(params)) for name, task in tasks.items()}
    for name, pod in pods.items():
        kubernetes_validate.validate(pod, "1.33.0", strict=True)
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
        assert container["args"][-2:] == ["--set", "sweep.n_trials=40"], name
        assert pod["metadata"]["labels"]["ml-pipeline/step"] == name
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    containers = {
        name: next(c for c in pod["spec"]["containers"] if c["name"] == "base") for name, pod in pods.items()
    }
    assert containers["sweep_trials"]["args"] == [*worker_arguments, "--set", "sweep.n_trials=40"]
    assert containers["sweep_prepare"]["args"][:5] == ["sweep", "--stage", "prepare", "--run-id", RUN_ID]
    # trials and the final training train: the train step's resources and GPU; prepare does not
    for name in ("sweep_trials", "sweep_finalize"):
        limits = containers[name]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1" and limits["memory"] == "6Gi", name
    assert "nvidia.com/gpu" not in containers["sweep_prepare"]["resources"].get("limits", {})
    assert tasks["sweep_trials"].execution_timeout >= timedelta(seconds=7200)


# --------------------------------------------------------------------------------------------
# A real run: airflow dags test, each stage a local subprocess, trials mapped over two slots
# --------------------------------------------------------------------------------------------


def query(db_url: str, sql: str, **params: Any) -> list[tuple]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.slow
def test_dags_test_runs_a_sweep_with_trials_mapped_over_slots(sqlite_airflow, tmp_path: Path):
    home, db_url = sqlite_airflow
    pipeline_home = tmp_path / "pipeline-home"
    env = airflow_env(
        home,
        db_url,
        PIPELINE_HOME=str(pipeline_home),
        PIPELINE_LOG_LEVEL="INFO",
        MLP_DAG_SWEEP_SLOTS="2",
    )
    conf = {
        "overrides": [
            "sweep.n_trials=4",
            "sweep.max_epochs=3",
            "sweep.pruner_warmup_epochs=1",
            "evaluate.permutation_repeats=1",
        ]
    }
    run_airflow(["dags", "test", SWEEP_DAG_ID, "--conf", json.dumps(conf)], env, cwd=tmp_path, timeout=900)
    ((run_id, state),) = query(
        db_url, "SELECT run_id, state FROM dag_run WHERE dag_id = :dag", dag=SWEEP_DAG_ID
    )
    assert state == "success"
    rows = query(
        db_url,
        "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = :dag AND run_id = :run",
        dag=SWEEP_DAG_ID,
        run=run_id,
    )
    assert sorted(rows) == [
        ("check_params", -1, "success"),  # the overrides are all in the default allow-list
        ("sweep_finalize", -1, "success"),
        ("sweep_prepare", -1, "success"),
        ("sweep_trials", 0, "success"),
        ("sweep_trials", 1, "success"),
        ("trial_slots", -1, "success"),
    ]
    xcoms = {
        (task_id, map_index): value if isinstance(value, dict) else json.loads(value)
        for task_id, map_index, value in query(
            db_url,
            "SELECT task_id, map_index, value FROM xcom WHERE dag_id = :dag AND run_id = :run "
            "AND key = 'return_value'",
            dag=SWEEP_DAG_ID,
            run=run_id,
        )
    }
    workers = [xcoms[("sweep_trials", i)] for i in (0, 1)]
    assert sum(w["trials_run"] for w in workers) == 4  # the two workers shared one budget
    assert {w["slot"] for w in workers} == {0, 1}
    final = xcoms[("sweep_finalize", -1)]
    assert final["run_id"] == run_id  # the Airflow run id names the study and the pipeline run
    assert final["study"] == f"sweep-{run_id}"
    assert final["trials_finished"] == 4
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{pipeline_home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    children = client.search_runs(
        [client.get_experiment_by_name("penguins").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{final['parent_run_id']}'",
    )
    assert len(children) == 4
    version = client.get_model_version(final["model_name"], final["version"])
    assert version.tags["pipeline.run_id"] == run_id
    # judged by the promotion gate (3 epochs may or may not clear gate.min_score)
    assert version.tags["gate.decision"] == ("promoted" if final["promoted"] else "rejected")
    assert version.tags["gate.reason"] == final["reason"]
