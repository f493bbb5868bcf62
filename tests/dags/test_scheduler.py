"""Airflow's own scheduler, not ``airflow dags test``: one deployment (API server, DAG processor,
scheduler, each a separate process on a throwaway PostgreSQL) starts both kinds of run by itself.

* **A cron time arrives.** ``ml_pipeline`` is scheduled at the first minute boundary at least 70 s
  after the test starts; nothing triggers it, so a run at that time can only come from the
  scheduler acting on the timetable. Its steps record ``trigger.cause=schedule`` on the version.
* **The loop closes.** A champion is trained and drifted predictions are logged; a triggered
  ``ml_pipeline_monitor`` run finds the drift and emits the retrain asset; the scheduler starts
  ``ml_pipeline`` on that event (run type ``asset_triggered``), and its register step records the
  event's cause, monitor run and drifted columns on the version it registers.

The two share one deployment because starting and migrating Airflow is most of what each costs.
The monitor is triggered once the cron run has started, so the order is fixed (``max_active_runs=1``
queues the retrain behind it): the cron run trains (its settings differ from the champion's run)
and the drift retrain trains again although nothing it reads changed, because a retrain decided
on evidence never reuses the model steps. (The other order would make the cron run a full step-
cache hit of the retrain that registers nothing, which is the step cache's documented behaviour.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.steps import STEP_NAMES
from tests.conftest import FAST, run_cli
from tests.dags.conftest import (
    CHECK,
    DAG_ID,
    PREFLIGHT,
    airflow_env,
    airflow_executable,
    migrated_home,
    run_airflow,
)
from tests.dags.test_dag_runs import pipeline_env, query, return_values, task_states
from tests.e2e.served import drifted_penguins, log_predictions
from tests.e2e.served import registry as client
from tests.support import free_port

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]

MONITOR_DAG = "ml_pipeline_monitor"


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> tuple[subprocess.Popen, Any]:
    log = (logs / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [airflow_executable(), *args],
        env=env,
        cwd=logs,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped with everything it started
    )
    return proc, log


def start_components(env: dict[str, str], logs: Path, port: int, components: list) -> None:
    """Start Airflow's API server (execution API on ``port``), DAG processor and scheduler, each
    appended to ``components`` as ``(name, process, log)`` as soon as it runs, so that a ``finally``
    stops whatever started."""
    for name, args in (
        ("api-server", ["api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", str(port), "-w", "1"]),
        ("dag-processor", ["dag-processor"]),
        ("scheduler", ["scheduler"]),
    ):
        components.append((name, *_start(name, args, env, logs)))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # separately started components stop cleanly on SIGTERM
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def version_of_run(pipeline_home: Path, run_id: str):
    """The model version a DAG run registered (its pipeline.run_id tag is the Airflow run id)."""
    versions = [
        v
        for v in client(pipeline_home).search_model_versions("name = 'penguins'")
        if v.tags.get("pipeline.run_id") == run_id
    ]
    assert len(versions) == 1, f"{len(versions)} versions registered by {run_id}"
    return versions[0]


def test_the_scheduler_starts_a_cron_run_and_an_asset_triggered_retrain_by_itself(postgres, tmp_path):
    pipeline_home = tmp_path / "pipeline-home"
    trained = run_cli(["run", *FAST], pipeline_home)
    assert trained.returncode == 0, trained.stderr[-3000:]
    log_predictions(pipeline_home, drifted_penguins(), datetime.now(UTC) - timedelta(minutes=30))

    db_url = postgres.create_database("airflow_scheduler")
    home = migrated_home(tmp_path, db_url)
    # A daily cron whose next time is the first minute boundary at least 70 s from now (the
    # components start and parse the DAGs well before it; the wait overlaps the monitor's run).
    earliest = datetime.now(UTC) + timedelta(seconds=70)
    fire_at = earliest.replace(second=0, microsecond=0)
    if fire_at < earliest:
        fire_at += timedelta(minutes=1)
    port = free_port()
    logs = tmp_path / "component-logs"
    logs.mkdir()
    env = airflow_env(
        home,
        db_url,
        MLP_DAG_SCHEDULE=f"{fire_at.minute} {fire_at.hour} * * *",
        MLP_DAG_MONITOR_SCHEDULE="none",  # the one monitor run is the triggered one
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        **pipeline_env(tmp_path),
    )
    components: list = []

    def runs(dag_id: str) -> list[tuple]:
        return query(
            db_url,
            "SELECT run_id, run_type, state, run_after, triggered_by FROM dag_run WHERE dag_id = :d",
            d=dag_id,
        )

    def finished(dag_id: str) -> list[tuple]:
        return [r for r in runs(dag_id) if r[2] in ("success", "failed")]

    def wait(what: str, condition, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc, _ in components:
                assert proc.poll() is None, f"{name} exited:\n{(logs / f'{name}.log').read_text()[-4000:]}"
            if condition():
                return
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}\n{tails()}")

    def tails() -> str:
        return "\n".join(f"--- {n}\n{(logs / f'{n}.log').read_text()[-3000:]}" for n, _, _ in components)

    try:
        start_components(env, logs, port, components)
        parsed = (
            "SELECT dag_id FROM dag WHERE dag_id IN ('ml_pipeline', 'ml_pipeline_monitor') AND NOT is_paused"
        )
        wait("both DAGs parsed and unpaused", lambda: len(query(db_url, parsed)) == 2, 180)
        wait("the cron run", lambda: any(r[1] == "scheduled" for r in runs(DAG_ID)), 300)
        run_airflow(["dags", "trigger", MONITOR_DAG], env, cwd=tmp_path, timeout=120)
        wait("the monitor run", lambda: finished(MONITOR_DAG), 300)
        wait("the scheduled and the asset-triggered training runs", lambda: len(finished(DAG_ID)) >= 2, 900)
    finally:
        for _, proc, log in reversed(components):
            stop(proc)
            log.close()
    for name, proc, _ in components:
        assert proc.returncode is not None, f"{name} did not stop"

    ((_, monitor_type, monitor_state, _, _),) = runs(MONITOR_DAG)
    assert (monitor_type, monitor_state) == ("manual", "success"), tails()
    training_runs = runs(DAG_ID)
    training = {run_type: (run_id, state, after, by) for run_id, run_type, state, after, by in training_runs}
    assert len(training_runs) == 2 and set(training) == {"scheduled", "asset_triggered"}, (
        f"{training_runs}\n{tails()}"
    )
    for run_type, (run_id, state, _, _) in training.items():
        assert state == "success", f"{run_type}\n{tails()}"
        assert {task: s for task, (s, _) in task_states(db_url, run_id).items()} == dict.fromkeys(
            (CHECK, PREFLIGHT, *STEP_NAMES), "success"
        )
        register = return_values(db_url, run_id)["register"]
        assert str(register["version"]) == str(version_of_run(pipeline_home, run_id).version)

    # The cron run: at the cron time, from the timetable, recorded as a scheduled retrain.
    run_id, _, run_after, triggered_by = training["scheduled"]
    assert str(triggered_by).lower().endswith("timetable")
    assert (run_after if run_after.tzinfo else run_after.replace(tzinfo=UTC)) == fire_at
    scheduled = version_of_run(pipeline_home, run_id)
    assert scheduled.tags["trigger.cause"] == "schedule"
    assert "trigger.monitor_run_id" not in scheduled.tags

    # The asset-triggered run: the monitor's event, its cause on the version.
    ((extra,),) = query(db_url, "SELECT extra FROM asset_event WHERE source_dag_id = :d", d=MONITOR_DAG)
    extra = extra if isinstance(extra, dict) else json.loads(extra)
    retrained = version_of_run(pipeline_home, training["asset_triggered"][0])
    assert retrained.tags["trigger.cause"] == "drift"
    assert int(retrained.version) > int(scheduled.version)  # queued behind the cron run, trained anew
    assert retrained.tags["trigger.monitor_run_id"] == extra["monitor_run_id"]
    assert set(json.loads(retrained.tags["trigger.drifted_columns"])) == {"bill_length_mm", "island"}
