"""`pipeline monitor` end to end on the embedded defaults: a model trained by the CLI, prediction-log
rows written by the real logger into the real SQLite feature store (the champion's own predictions
on real penguins rows, shifted for the drifted window), the real MLflow store, DVC remote and
training pipeline. One home for the module; the tests run in file order (the last retrains).

A window too small to judge, persistent drift alerting once and the cool-down are decided by
pure functions, tested in tests/unit/test_monitor_episodes.py and test_monitor_drift.py (each check
here costs a process start, the reference fetch from DVC and the model load)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

NAME = "penguins"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the undrifted hour; the drifted one is T0 + 2h


def client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def log_predictions(home: Path, frame: pd.DataFrame, start: datetime) -> None:
    """The champion's predictions on ``frame``, logged as the server logs them, at ``start`` + i s."""
    from pipeline.serve.predlog import Entry, PredictionLogger, create_engine, json_rows
    from pipeline.serving import load_trusted_predictor

    predictor = load_trusted_predictor(client(home), f"models:/{NAME}@champion")
    logger = PredictionLogger(create_engine(f"sqlite:///{home / 'features.db'}"), flush_s=0.1)
    for i, chunk in enumerate(range(0, len(frame), 25)):
        rows = frame.iloc[chunk : chunk + 25][FEATURES]
        outputs = predictor.predict(rows)
        entry = Entry(
            f"req-{start:%H}-{i}",
            start + timedelta(seconds=i),
            NAME,
            "1",
            json_rows(rows),
            json_rows(outputs),
        )
        assert logger.submit(entry)
    report = logger.close()
    assert report["unwritten_rows"] == 0, report


def drifted_penguins() -> pd.DataFrame:
    """150 penguins with one numeric feature shifted (bill_length_mm) and one category's mix
    changed (island): the drift the monitor must find on exactly those two columns."""
    from palmerpenguins import load_penguins

    drifted = load_penguins().sample(150, random_state=2).copy()
    drifted["bill_length_mm"] += 8.0
    drifted["island"] = drifted["island"].where(drifted.index % 5 == 0, "Dream")
    return drifted


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("monitor") / "home"
    trained = run_cli(["run", *FAST], path)
    assert trained.returncode == 0, trained.stderr[-4000:]
    penguins = load_penguins()
    log_predictions(path, penguins.sample(150, random_state=1), T0)
    log_predictions(path, drifted_penguins(), T0 + timedelta(hours=2))
    return path


def monitor(home: Path, since: datetime, *args: str):
    until = since + timedelta(hours=1)
    return run_cli(["monitor", "--since", since.isoformat(), "--until", until.isoformat(), *args], home)


def test_an_undrifted_window_no_drift_no_retrain_and_a_monitoring_run_with_its_report(home: Path) -> None:
    result = monitor(home, T0, "--retrain")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = result.json
    assert summary["judged"] and summary["window"]["rows"] == 150
    assert summary["drift_detected"] is False and summary["drifted_columns"] == {}
    assert summary["degraded"] is False and summary["live"]["judged"] is False  # no labels yet
    assert summary["retrain_triggered"] is False and "retrain" not in summary
    assert summary["alerts"] == []
    assert {c["column"] for c in summary["columns"]} == set(FEATURES)
    assert all(c["judged"] and not c["drifted"] for c in summary["columns"])
    assert summary["prediction_drift"]["drifted"] is False
    report = Path(summary["report"]["path"])
    assert report.is_file() and report.is_relative_to(home)
    assert "<h1>Drift report: penguins</h1>" in report.read_text()

    mlflow = client(home)
    run = mlflow.get_run(summary["monitor_run_id"])
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == "penguins-monitoring" and run.info.status == "FINISHED"
    assert run.data.tags["monitor.drift_detected"] == "false"
    assert run.data.metrics["drift.share"] == 0 and run.data.metrics["window.rows"] == 150
    artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
    assert {"drift_report.html", "monitor_summary.json"} <= artifacts


def test_a_labelled_batch_file_judges_the_live_metric(home: Path, tmp_path: Path) -> None:
    from palmerpenguins import load_penguins

    batch = tmp_path / "batch.csv"
    load_penguins().sample(120, random_state=3).to_csv(batch, index=False)  # with the target column
    result = run_cli(["monitor", "--current", str(batch)], home)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = result.json
    assert summary["window"] == {"source": str(batch), "since": None, "until": None, "rows": 120}
    assert summary["drift_detected"] is False and summary["retrain_triggered"] is False
    live = summary["live"]
    assert live["judged"] and live["labelled_rows"] == 120 and live["metric"] == "macro_f1"
    assert live["degraded"] is False and live["live"] >= live["test"] - 0.05, live


def test_its_own_failures_follow_the_exit_code_contract(home: Path, tmp_path: Path) -> None:
    missing = run_cli(["monitor", "--current", str(tmp_path / "nope.csv")], home)
    assert missing.returncode == 65 and "nope.csv' does not exist" in missing.stderr
    empty = run_cli(["monitor"], tmp_path / "empty-home")
    assert empty.returncode == 65 and "has no @champion" in empty.stderr.splitlines()[-1]
    down = ["--set", "tracking_uri=http://127.0.0.1:9", "--set", "mlflow_http_max_retries=0"]
    unreachable = run_cli(["monitor", *down], home)
    assert unreachable.returncode == 75, unreachable.stderr[-2000:]
    assert "MLflow at http://127.0.0.1:9 failed" in unreachable.stderr.splitlines()[-1]


def test_a_drifted_window_retrains_and_the_new_version_records_why(home: Path) -> None:
    result = monitor(home, T0 + timedelta(hours=2), "--retrain", *FAST)  # FAST: the retrain's settings
    assert result.returncode == 0, result.stderr[-4000:]
    summary = result.json
    assert summary["drift_detected"] is True
    assert set(summary["drifted_columns"]) == {"bill_length_mm", "island"}
    assert summary["retrain_triggered"] is True and summary["retrain_cause"] == "drift"
    assert [a["kind"] for a in summary["alerts"]] == ["drift"]
    assert "ALERT Data drift on penguins v1: bill_length_mm" in result.stderr
    assert summary["retrain"]["version"] == "2", summary["retrain"]

    mlflow = client(home)
    version = mlflow.get_model_version(NAME, "2")
    assert version.tags["trigger.cause"] == "drift"
    assert version.tags["trigger.monitor_run_id"] == summary["monitor_run_id"]
    assert set(json.loads(version.tags["trigger.drifted_columns"])) == {"bill_length_mm", "island"}
    assert json.loads(version.tags["trigger.window"])["rows"] == 150
    assert mlflow.get_run(version.run_id).data.tags["trigger.cause"] == "drift"
    assert mlflow.get_model_version(NAME, "1").tags["trigger.cause"] == "manual"

    shown = run_cli(["show", f"{NAME}/2", "--json"], home)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["trigger"]["cause"] == "drift"
