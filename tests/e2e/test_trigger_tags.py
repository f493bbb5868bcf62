"""Why a training run exists (``trigger.*``) is on its MLflow run from the moment the train step opens
it, not only once the register step has a version to tag: a retrain the monitor decided on drift that
fails before it registers still records its cause; the retry of its register step records it on the
version it registers too, and leaves the run's tags as they are.

One home, one training (the real CLI): the retrain's register step cannot get the registry lock (this
test holds it, as another run promoting would) and fails retryable (exit 75) after train and
evaluate, before any version exists; then ``pipeline step register`` retries it with the same
``PIPELINE_TRIGGER__*`` the DAG gives every try. A run started by hand records ``manual``:
tests/unit/test_step_functions.py (its chain's run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import EXIT_RETRYABLE
from pipeline.names import RUN_TAG, TRIGGER_CAUSE_TAG, TRIGGER_DRIFTED_COLUMNS_TAG, TRIGGER_MONITOR_RUN_TAG
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

NAME = "penguins"
DRIFTED = {"bill_length_mm": 1e-12, "island": 3e-09}
DRIFT = {
    "PIPELINE_TRIGGER__CAUSE": "drift",
    "PIPELINE_TRIGGER__MONITOR_RUN_ID": "0123abcd",
    "PIPELINE_TRIGGER__DRIFTED_COLUMNS": json.dumps(DRIFTED),
}


def client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def mlflow_run(home: Path, run_id: str):
    """The one MLflow run of pipeline run ``run_id``."""
    mlflow = client(home)
    experiment = mlflow.get_experiment_by_name(NAME)
    (found,) = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'")
    return found


def test_a_retrain_that_fails_before_register_records_its_cause_and_the_retry_tags_the_version(
    home: Path,
) -> None:
    from pipeline.registry import registry_lock
    from pipeline.settings import Settings

    with registry_lock(Settings.load(), NAME):  # held here: the retrain's register waits, then gives up
        retrain = run_cli(
            ["run", "--run-id", "drift-1", *FAST], home, PIPELINE_REGISTRY_LOCK_TIMEOUT_S="1", **DRIFT
        )
    assert retrain.returncode == EXIT_RETRYABLE, retrain.stderr[-4000:]
    assert "step register" in retrain.stderr and "registry lock" in retrain.stderr, retrain.stderr[-4000:]
    assert client(home).search_model_versions(f"name = '{NAME}'") == []  # nothing registered
    run = mlflow_run(home, "drift-1")
    assert run.data.tags[TRIGGER_CAUSE_TAG] == "drift"  # the train step put it there
    assert run.data.tags[TRIGGER_MONITOR_RUN_TAG] == "0123abcd"
    assert json.loads(run.data.tags[TRIGGER_DRIFTED_COLUMNS_TAG]) == DRIFTED

    retry = run_cli(["step", "register", "--run-id", "drift-1"], home, **DRIFT)
    assert retry.returncode == 0, retry.stderr[-4000:]
    assert retry.json["mlflow_run_id"] == run.info.run_id
    version = client(home).get_model_version(NAME, retry.json["version"])
    assert version.run_id == run.info.run_id and version.tags[RUN_TAG] == "drift-1"
    assert version.tags[TRIGGER_CAUSE_TAG] == "drift" and version.tags[TRIGGER_MONITOR_RUN_TAG] == "0123abcd"
    assert json.loads(version.tags[TRIGGER_DRIFTED_COLUMNS_TAG]) == DRIFTED
    after = mlflow_run(home, "drift-1").data.tags
    trigger = {k: v for k, v in after.items() if k.startswith("trigger.")}
    assert trigger == {k: v for k, v in run.data.tags.items() if k.startswith("trigger.")}
