"""`pipeline monitor` end to end on the embedded defaults: a model trained by the CLI, the real
SQLite feature store, MLflow store, DVC remote and training pipeline. One home for the module; the
tests run in file order. The first checks read prediction-log rows written by the real logger (the
champion's own predictions on real penguins rows); the last closes the loop: the drifted window is
sent to a real `pipeline serve` over HTTP, labelled late with `pipeline feedback`, judged by
`pipeline monitor --retrain`, and the server picks up the promoted retrain by itself.

A window too small to judge, persistent drift alerting once and the cool-down are decided by
pure functions, tested in tests/unit/test_monitor_episodes.py and test_monitor_drift.py (each check
here costs a process start, the reference fetch from DVC and the model load)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FAST, run_cli
from tests.e2e.served import (
    FEATURES,
    NAME,
    T0,
    Load,
    drifted_penguins,
    log_predictions,
    predict_in_process,
    start,
)
from tests.e2e.served import registry as client

pytestmark = pytest.mark.slow

# The champion is trained for 4 epochs (test macro_f1 about 0.96); the retrain, with FAST's 12, scores
# 1.0 on the same test snapshot and so beats it by more than the gate's margin: the gate promotes,
# deterministically (the seed and the data are the same). Two equal models would be a tie, refused.
UNDERTRAINED = [*FAST, "--set", "train.max_epochs=4"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("monitor") / "home"
    trained = run_cli(["run", *UNDERTRAINED], path)
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert trained.json["promoted"] is True, trained.json
    penguins = load_penguins()
    log_predictions(path, penguins.sample(150, random_state=1), T0)
    return path


@pytest.fixture(scope="module", autouse=True)
def served(home: Path):
    """`pipeline serve` on the home, for the last test: started with the module, it loads while
    the first tests run."""
    server = start(home, wait=False)
    yield server
    server.kill()


def monitor(home: Path, since: datetime, *args: str, until: datetime | None = None):
    until = until or since + timedelta(hours=1)
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


def test_the_loop_served_drifted_requests_and_late_labels_retrain_and_the_server_switches(
    home: Path, served, tmp_path: Path
) -> None:
    """The closed loop on one machine: `pipeline serve` follows @champion; client threads send the
    drifted window over HTTP (with request ids) and then keep sending through the feedback, the
    check, the retrain and the gate, until the server answers with the new champion by itself."""
    drifted = drifted_penguins().reset_index(drop=True)
    window = {f"drift-{i // 25}": drifted.iloc[i : i + 25] for i in range(0, len(drifted), 25)}
    server = served
    assert server.get("/version").json()["model_version"] == "1"  # the champion, loaded meanwhile
    load = None
    try:
        since = datetime.now(UTC)
        load = Load(server, drifted.iloc[:10], window=window, threads=2, pause_s=0.5)
        assert load.window_sent.wait(120) and not load.failures, load.failures
        until = datetime.now(UTC)  # after the window's answers, before any other request is sent
        sent = server.get("/stats").json()["prediction_log"]["submitted_rows"]
        load.resume()
        deadline = time.monotonic() + 60
        while server.get("/stats").json()["prediction_log"]["written_rows"] < sent:
            assert time.monotonic() < deadline, server.get("/stats").text
            time.sleep(0.1)

        # The labels of the first request have arrived: 25 rows, fewer than monitor.min_labelled
        # (30), so the live metric waits for more and the drift alone decides. (With all 150, the
        # live macro_f1 of the shifted window is degraded, and degradation, the stronger cause,
        # would be the retrain's cause.)
        first = next(iter(window))
        labels = tmp_path / "labels.csv"
        pd.DataFrame(
            {"request_id": first, "row": range(25), "species": window[first]["species"].to_numpy()}
        ).to_csv(labels, index=False)
        fed = run_cli(["feedback", str(labels)], home)
        assert fed.returncode == 0, fed.stderr[-3000:]
        assert fed.json["labels"] == fed.json["matched_predictions"] == 25

        result = monitor(home, since, "--retrain", *FAST, until=until)
        assert result.returncode == 0, result.stderr[-4000:]
        summary = result.json
        assert summary["retrain"]["version"] == "2" and summary["retrain"]["promoted"], summary["retrain"]
        assert "beats champion v1" in summary["retrain"]["reason"]
        deadline = time.monotonic() + 60
        while any(load.versions(t).count("2") < 3 for t in range(2)):  # the server switches by itself
            assert time.monotonic() < deadline, f"no switch: {server.get('/version').text}"
            time.sleep(0.05)
        load.stop()
        code, report, _ = server.stop()
    finally:
        if load is not None:
            load.stop()

    assert summary["window"]["rows"] == 150
    assert summary["live"]["labelled_rows"] == 25 and summary["live"]["judged"] is False
    assert "fewer than monitor.min_labelled=30" in summary["live"]["reason"]
    assert summary["drift_detected"] is True
    assert set(summary["drifted_columns"]) == {"bill_length_mm", "island"}
    assert summary["retrain_triggered"] is True and summary["retrain_cause"] == "drift"
    assert [a["kind"] for a in summary["alerts"]] == ["drift"]
    assert "ALERT Data drift on penguins v1: bill_length_mm" in result.stderr

    # No failed request over the whole loop; every answer is its version's own predictions; each
    # client saw v1 until the switch and v2 from then on; the log rows of a request name one version.
    assert load.failures == []
    assert load.mismatches(lambda version, frame: predict_in_process(home, version, frame)) == []
    assert {a.version for a in load.answers if a.frame != "body"} == {"1"}  # the window
    assert {a.version for a in load.answers if a.frame == "body"} == {"1", "2"}  # through the retrain
    for thread in range(2):
        seen = load.versions(thread)
        switch = seen.index("2")
        assert set(seen[:switch]) == {"1"} and set(seen[switch:]) == {"2"}, f"client {thread} went back"
    assert code == 0 and report["prediction_log"]["unwritten_rows"] == 0, report
    with sqlite3.connect(home / "features.db") as connection:
        logged = dict(
            connection.execute(
                "SELECT request_id, group_concat(DISTINCT model_version) FROM prediction_log "
                "WHERE request_id LIKE 'drift-%' OR request_id LIKE 'load-%' GROUP BY request_id"
            ).fetchall()
        )
    assert logged == {a.request_id: a.version for a in load.answers}

    mlflow = client(home)
    version = mlflow.get_model_version(NAME, "2")
    assert "champion" in version.aliases
    assert version.tags["trigger.cause"] == "drift"
    assert version.tags["trigger.monitor_run_id"] == summary["monitor_run_id"]
    assert set(json.loads(version.tags["trigger.drifted_columns"])) == {"bill_length_mm", "island"}
    assert json.loads(version.tags["trigger.window"])["rows"] == 150
    assert mlflow.get_run(version.run_id).data.tags["trigger.cause"] == "drift"
    assert mlflow.get_model_version(NAME, "1").tags["trigger.cause"] == "manual"

    shown = run_cli(["show", f"{NAME}/2", "--json"], home)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["trigger"]["cause"] == "drift"
