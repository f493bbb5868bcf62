"""Killing a sweep (SIGKILL, mid-trial) and starting it again continues the same study.

The restart keeps every finished trial (same numbers, same values), fails the trial the dead
process left running and retries it with the same parameters, numbers new trials after the old
ones, reuses the data steps and the MLflow parent run, and stops at the study's budget.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.analysis.conftest import SWEEP_FAST, manifest
from tests.conftest import clean_env, run_cli

pytestmark = pytest.mark.slow

RUN_ID = "sweep-resume"
STUDY = f"sweep-{RUN_ID}"
N_TRIALS = 10
KILL_AFTER = 3  # finished trials before the kill


def command() -> list[str]:
    return ["sweep", "--run-id", RUN_ID, "--trials", str(N_TRIALS), *SWEEP_FAST]


def read_trials(db: Path) -> list[tuple[int, str, float | None, int]]:
    """(number, state, value, intermediate values) of each trial, read while the sweep writes."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(
            "SELECT t.number, t.state, v.value,"
            " (SELECT count(*) FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id)"
            " FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number"
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not created yet
        return []
    finally:
        connection.close()


def kill_mid_trial(
    home: Path, sig: int = signal.SIGKILL, kill_after: int = KILL_AFTER, timeout: float = 300
) -> list[tuple[int, str, float | None, int]]:
    """Start the sweep, send ``sig`` while a trial runs after ``kill_after`` finished ones."""
    db = home / "optuna.db"
    log = (home / "first-attempt.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *command()],
        cwd=home,
        env=clean_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert process.poll() is None, (home / "first-attempt.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the sweep never reached the kill point"
            trials = read_trials(db) if db.exists() else []
            finished = [t for t in trials if t[1] in ("COMPLETE", "PRUNED")]
            running = [t for t in trials if t[1] == "RUNNING" and t[3] >= 1]  # has trained an epoch
            if len(finished) >= kill_after and running:
                os.killpg(process.pid, sig)
                assert process.wait(timeout=120) == (75 if sig == signal.SIGTERM else -sig)
                return read_trials(db)
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_killing_a_sweep_and_restarting_it_continues_the_same_study(tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    home = tmp_path / "home"
    home.mkdir()
    before = kill_mid_trial(home)
    kept = {n: (state, value) for n, state, value, _ in before if state in ("COMPLETE", "PRUNED")}
    (zombie,) = [n for n, state, _, _ in before if state == "RUNNING"]
    assert len(kept) >= KILL_AFTER
    ingest_attempt = manifest(home, RUN_ID, "ingest")["attempt"]
    storage = f"sqlite:///{home / 'optuna.db'}"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    study_id = study._study_id
    parent_run_id = study.user_attrs["parent_run_id"]
    zombie_params = study.trials[zombie].params
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_run(parent_run_id).info.status == "RUNNING"  # the process died with it open

    result = run_cli(command(), home, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = result.json

    # the same study, not a new one
    summaries = optuna.study.get_all_study_summaries(storage)
    assert [s.study_name for s in summaries] == [STUDY]
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert study._study_id == study_id
    trials = study.trials
    # finished trials kept as they were; the trial count continues after them
    for number, (state, value) in kept.items():
        assert trials[number].state.name == state
        if value is not None:
            assert trials[number].value == pytest.approx(value)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == N_TRIALS == summary["trials_finished"]
    assert [t.number for t in trials] == list(range(N_TRIALS + 1))  # 10 finished + the interrupted one
    # the interrupted trial failed, and was retried with the same parameters
    assert trials[zombie].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == zombie]
    assert retry.number > max(kept)
    assert retry.params == zombie_params
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert "failed 1 trial(s) left running by an interrupted sweep" in result.stderr

    # the data steps were not run again; the MLflow parent run is the same, now finished
    assert manifest(home, RUN_ID, "ingest")["attempt"] == ingest_attempt
    assert summary["parent_run_id"] == parent_run_id
    assert client.get_run(parent_run_id).info.status == "FINISHED"
    children = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=100,
    )
    statuses = {c.data.tags["sweep.trial_number"]: c.info.status for c in children}
    assert len(children) == N_TRIALS + 1
    assert statuses[str(zombie)] == "KILLED"
    assert set(statuses.values()) == {"FINISHED", "KILLED"}
    retry_run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert retry_run.data.tags["sweep.retry_of_trial"] == str(zombie)
    parents = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id], filter_string="tags.`sweep.role` = 'parent'"
    )
    assert len(parents) == 1
    assert json.loads(json.dumps(summary["best_params"])) == study.best_params


def test_sigterm_closes_the_running_trial_and_queues_its_parameters_again(tmp_path):
    """A pod being stopped (SIGTERM): the trial ends as failed at once, its MLflow run as KILLED,
    and the same parameters wait for the next worker; the command exits with the retryable code."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    home = tmp_path / "home"
    home.mkdir()
    after = kill_mid_trial(home, sig=signal.SIGTERM, kill_after=1)
    assert "RUNNING" not in {state for _, state, _, _ in after}
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{home / 'optuna.db'}")
    (stopped,) = [t for t in study.trials if t.state == TrialState.FAIL]
    (queued,) = [t for t in study.trials if t.state == TrialState.WAITING]
    assert queued.params == stopped.params
    assert queued.system_attrs["failed_trial"] == stopped.number
    uri = f"sqlite:///{home / 'mlflow.db'}"
    run = MlflowClient(tracking_uri=uri).get_run(stopped.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert "Resume with: pipeline sweep --run-id" in (home / "first-attempt.log").read_text()
