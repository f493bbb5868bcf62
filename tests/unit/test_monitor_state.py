"""The episode state travels from check to check on the monitoring runs of a real (SQLite) MLflow
store: the last *finished* check of the same model wins."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline import names
from pipeline.monitor.check import previous_state
from pipeline.monitor.episodes import State


def test_the_last_finished_check_of_the_model_hands_over_its_state(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("penguins-monitoring", artifact_location=(tmp_path / "a").as_uri())
    assert previous_state(client, experiment, "penguins") == State()

    def check(model: str, state: State | None, status: str = "FINISHED") -> None:
        tags = {names.MONITOR_MODEL_TAG: model}
        if state is not None:
            tags[names.MONITOR_STATE_TAG] = state.dump()
        run = client.create_run(experiment, tags=tags)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        time.sleep(0.01)  # distinct start times

    older = State(open={"drift": {"since": "2026-01-01T00:00:00+00:00", "monitor_run_id": "a"}})
    newer = State(open={}, last_retrain_at="2026-01-01T01:00:00+00:00")
    check("penguins", older)
    check("penguins", newer)
    check("penguins", State(open={"degradation": {}}), status="FAILED")  # a failed check hands nothing
    check("penguins", None, status="RUNNING")  # the check now running
    check("wine", older)  # another model's episodes are its own
    assert previous_state(client, experiment, "penguins") == newer
    assert previous_state(client, experiment, "wine") == older


def test_a_window_is_validated_against_the_features_contract_only(home: Path) -> None:
    """The guard before a retrain: the model's features against the data contract (Great
    Expectations), with no target in the window and no row-count floor of the training source."""
    from palmerpenguins import load_penguins

    from pipeline.monitor.check import validate_window
    from pipeline.settings import Settings

    settings = Settings.load()
    window = load_penguins().sample(40, random_state=0).drop(columns=["species"])
    assert validate_window(settings, window) == {"success": True, "failures": []}
    window.loc[window.index[:3], "flipper_length_mm"] = 999.0
    window.loc[window.index[3], "island"] = "Atlantis"
    outcome = validate_window(settings, window)
    assert not outcome["success"]
    failures = " ".join(outcome["failures"])
    assert "flipper_length_mm" in failures and "island" in failures and "species" not in failures
