"""The DAG runs for real on this machine (one-machine mode: each step a local subprocess).

* ``airflow dags test`` runs the whole DAG and registers a model (metadata database on
  PostgreSQL; the failing runs below, the monitor and the sweep DAG's run use SQLite), and a
  retryable failure (an HTTP source answering 503, the pipeline's own HTTP retries set to 0) is
  retried by Airflow and the run succeeds;
* bad input fails at ``validate`` with no retry, and a real HTTP server receives exactly one alert
  naming the step and the broken rule.

Airflow's own scheduler starting runs by itself (a cron time, the monitor's retrain asset) is
tests/dags/test_scheduler.py.

The pipeline is kept small and fast: an isolated ``PIPELINE_HOME`` and 3 training epochs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.steps import STEP_NAMES
from tests.dags.conftest import (
    CHECK,
    DAG_ID,
    PREFLIGHT,
    airflow_env,
    run_airflow,
)
from tests.dags.http_servers import FlakySource, WebhookReceiver

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]


def penguins_csv() -> Path:
    import palmerpenguins

    return Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


def pipeline_env(root: Path, **extra: str) -> dict[str, str]:
    home = root / "pipeline-home"
    return {
        "PIPELINE_HOME": str(home),
        "PIPELINE_TRAIN__MAX_EPOCHS": "3",
        "PIPELINE_EVALUATE__PERMUTATION_REPEATS": "1",
        "PIPELINE_LOG_LEVEL": "INFO",
        "MLP_MLFLOW_UI_URL": "http://mlflow.test:5000",
        **extra,
    }


def query(db_url: str, sql: str, **params: Any) -> list[tuple]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def latest_run(db_url: str) -> tuple[str, str, str]:
    rows = query(
        db_url,
        "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = :dag ORDER BY id DESC LIMIT 1",
        dag=DAG_ID,
    )
    assert rows, "no DAG run in the metadata database"
    return rows[0]


def task_states(db_url: str, run_id: str) -> dict[str, tuple[str, int]]:
    rows = query(
        db_url,
        "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = :dag AND run_id = :run",
        dag=DAG_ID,
        run=run_id,
    )
    return {task_id: (state, try_number) for task_id, state, try_number in rows}


def return_values(db_url: str, run_id: str) -> dict[str, Any]:
    rows = query(
        db_url,
        "SELECT task_id, key, value FROM xcom WHERE dag_id = :dag AND run_id = :run",
        dag=DAG_ID,
        run=run_id,
    )
    keys = {(task_id, key) for task_id, key, _ in rows}
    # One XCom per step, the whole JSON summary (multiple_outputs stays off).
    assert keys == {(task, "return_value") for task in (PREFLIGHT, *STEP_NAMES)}, keys
    return {task_id: value if isinstance(value, dict) else json.loads(value) for task_id, _, value in rows}


def registered_versions(pipeline_home: Path, model_name: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{pipeline_home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{model_name}'"))


def assert_succeeded_and_registered(db_url: str, root: Path, hook: WebhookReceiver) -> tuple[str, dict]:
    run_id, _, state = latest_run(db_url)
    assert state == "success"
    states = task_states(db_url, run_id)
    assert {task: s for task, (s, _) in states.items()} == dict.fromkeys(
        (CHECK, PREFLIGHT, *STEP_NAMES), "success"
    )
    summaries = return_values(db_url, run_id)
    register = summaries["register"]
    assert register["run_id"] == run_id  # the Airflow run id (with ':' and '+') reached the pipeline
    assert register["promoted"] is True  # the first model of a fresh registry is the champion
    assert registered_versions(root / "pipeline-home", register["model_name"]) == [str(register["version"])]
    # The promotion alert, with its links.
    (message,) = hook.messages()
    assert (
        f"promoted a new champion: *{register['model_name']}* version *{register['version']}*"
        in message["text"]
    )
    assert f"<http://mlflow.test:5000/#/runs/{register['mlflow_run_id']}|MLflow run>" in message["text"]
    return run_id, states


def test_a_refused_trigger_param_fails_the_run_before_any_step(sqlite_airflow, tmp_path):
    """gate.* is not in the default allow-list: the first task fails, not retried, and no step (no
    pod, no subprocess) runs; one alert names the refused keys and the setting that allows them."""
    home, db_url = sqlite_airflow
    conf = {"overrides": ["train.max_epochs=2", "gate.margin=-1", "tracking_uri=http://evil.example"]}
    with WebhookReceiver() as hook:
        env = airflow_env(
            home, db_url, MLP_ALERT_WEBHOOK_URL=hook.url, MLP_DAG_RETRIES="3", **pipeline_env(tmp_path)
        )
        proc = run_airflow(
            ["dags", "test", DAG_ID, "--conf", json.dumps(conf)], env, cwd=tmp_path, timeout=300, check=False
        )
    assert proc.returncode != 0
    run_id, _, state = latest_run(db_url)
    assert state == "failed"
    states = task_states(db_url, run_id)
    assert states[CHECK] == ("failed", 1)  # retries=3, but refused params are never retried
    assert {states[task][0] for task in (PREFLIGHT, *STEP_NAMES)} == {"upstream_failed"}
    assert not (tmp_path / "pipeline-home").exists()  # no step ever started
    (message,) = hook.messages()
    text = message["text"]
    assert f"failed at step *{CHECK}*" in text
    assert "bad input, not retried" in text
    assert "trigger params refused: gate.margin, tracking_uri may not be set from a trigger" in text
    assert "MLP_DAG_TRIGGER_ALLOWED_KEYS (chart value airflow.dag.triggerAllowedKeys)" in text
    assert "evil.example" not in text


def test_dags_test_on_postgres_runs_the_whole_dag_and_retries_a_retryable_failure(postgres_airflow, tmp_path):
    """The whole DAG on a PostgreSQL metadata database: the trigger's source and overrides reach the
    steps (train.max_epochs=3 beats the environment's 1), a retryable failure is retried by Airflow,
    and the run registers the champion and sends the promotion alert."""
    home, db_url, _ = postgres_airflow
    body = penguins_csv().read_bytes()
    # The source fails the first request; the pipeline's own HTTP retries are off for this run, so
    # the ingest step exits with the retryable code and Airflow's retry must rescue the run.
    with FlakySource(body, fail_first=1) as source, WebhookReceiver() as hook:
        conf = {
            "source": f"{source.base_url}/penguins.csv",
            "overrides": [
                "data.source.http.format=csv",
                "data.source.http.max_retries=0",
                "train.max_epochs=3",  # train.* is in the default allow-list too
            ],
        }
        env = airflow_env(
            home,
            db_url,
            MLP_ALERT_WEBHOOK_URL=hook.url,
            # an operator lets this DAG's triggers pick the source and its HTTP options
            MLP_DAG_TRIGGER_ALLOWED_KEYS="data.source.uri,data.source.http.*,train.*",
            **pipeline_env(tmp_path, PIPELINE_TRAIN__MAX_EPOCHS="1"),
        )
        proc = run_airflow(
            ["dags", "test", DAG_ID, "--conf", json.dumps(conf)], env, cwd=tmp_path, timeout=600
        )
        requests = source.requests
    assert "gave up after 1 attempts: HTTP 503" in proc.stdout + proc.stderr
    assert requests == 2
    run_id, states = assert_succeeded_and_registered(db_url, tmp_path, hook)
    assert states["ingest"] == ("success", 2)  # failed once, retried once
    assert all(try_number == 1 for task, (_, try_number) in states.items() if task != "ingest")
    assert return_values(db_url, run_id)["train"]["epochs_trained"] == 3


def test_bad_input_fails_at_validation_without_retry_and_alerts_once(sqlite_airflow, tmp_path):
    home, db_url = sqlite_airflow
    rows = list(csv.DictReader(penguins_csv().open()))
    rows[7]["flipper_length_mm"] = "999"  # the contract says 150..250
    bad = tmp_path / "penguins-bad.csv"
    with bad.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with WebhookReceiver() as hook:
        env = airflow_env(
            home,
            db_url,
            MLP_ALERT_WEBHOOK_URL=hook.url,
            MLP_DAG_RETRIES="3",
            MLP_DAG_TRIGGER_ALLOWED_KEYS="data.source.uri",
            **pipeline_env(tmp_path),
        )
        proc = run_airflow(
            ["dags", "test", DAG_ID, "--conf", json.dumps({"source": str(bad)})],
            env,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
    assert proc.returncode != 0, "a failed run must fail `airflow dags test`"
    run_id, _, state = latest_run(db_url)
    assert state == "failed"
    states = task_states(db_url, run_id)
    assert states["ingest"] == ("success", 1)
    assert states["validate"] == ("failed", 1)  # retries=3, but bad input is never retried
    assert {states[s][0] for s in STEP_NAMES[2:]} == {"upstream_failed"}
    messages = hook.messages()
    assert len(messages) == 1, messages
    text = messages[0]["text"]
    assert "failed at step *validate*" in text
    assert run_id in text
    assert "exit code 65: bad input or failed validation, not retried" in text
    assert "flipper_length_mm" in text
    assert "within [150.0, 250.0]" in text  # the broken rule
    assert "/dags/ml_pipeline/runs/" in text  # link to the task log


def processes_with_env(name: str, value: str) -> list[int]:
    """Processes whose environment has ``name=value`` (read from /proc)."""
    needle = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_a_step_over_its_timeout_is_stopped_and_alerted(sqlite_airflow, tmp_path):
    home, db_url = sqlite_airflow
    marker = str(tmp_path / "pipeline-home")
    with WebhookReceiver() as hook:
        env = airflow_env(
            home,
            db_url,
            MLP_ALERT_WEBHOOK_URL=hook.url,
            MLP_DAG_RETRIES="0",
            MLP_DAG_STEP_TIMEOUT_S='{"validate": 2}',  # validate needs more (it imports Great Expectations)
            **pipeline_env(tmp_path),
        )
        proc = run_airflow(["dags", "test", DAG_ID], env, cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode != 0
    run_id, _, state = latest_run(db_url)
    assert state == "failed"
    states = task_states(db_url, run_id)
    assert states["ingest"] == ("success", 1)
    assert states["validate"] == ("failed", 1)
    (message,) = hook.messages()
    assert "failed at step *validate*" in message["text"]
    assert "longer than its execution timeout (0:00:02)" in message["text"]
    # The step's process (and anything it started) was stopped with the task.
    assert processes_with_env("PIPELINE_HOME", marker) == []
