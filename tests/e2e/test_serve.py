"""`pipeline serve` end to end: a model trained by the CLI, served by a `python -m pipeline serve`
subprocess, reached over real HTTP; the prediction log and the feedback in the real SQLite
feature store; the alias moved with the real MLflow registry.

One home per module: two versions are trained once (v2 with another seed), champion = v1. The
tests run in file order; the last ones change the registry (alias moves, v2's files tampered).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FAST, run_cli
from tests.e2e.served import (
    FEATURES,
    NAME,
    Load,
    Server,
    as_records,
    predict_in_process,
    registry,
    same,
    start,
)

pytestmark = pytest.mark.slow


@dataclass
class Home:
    path: Path

    def client(self):
        return registry(self.path)

    def champion(self, version: str) -> None:
        self.client().set_registered_model_alias(NAME, "champion", version)

    def files(self, version: str) -> Path:
        return Path(self.client().get_model_version_download_uri(NAME, version).removeprefix("file://"))

    def predict_in_process(self, version: str, frame: pd.DataFrame) -> list[dict]:
        return predict_in_process(self.path, version, frame)

    def log_rows(self) -> list[tuple]:
        with sqlite3.connect(self.path / "features.db") as connection:
            return connection.execute(
                "SELECT request_id, row, model_name, model_version, inputs, outputs FROM prediction_log "
                "ORDER BY logged_at, request_id, row"
            ).fetchall()


@pytest.fixture
def server(home_: Home):
    servers: list[Server] = []

    def make(*args: str) -> Server:
        servers.append(start(home_.path, *args))
        return servers[-1]

    yield make
    for s in servers:
        s.kill()


@pytest.fixture(scope="module")
def home_(tmp_path_factory: pytest.TempPathFactory) -> Home:
    path = tmp_path_factory.mktemp("serve") / "home"
    first = run_cli(["run", *FAST], path)
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.json["version"] == "1"
    second = run_cli(["run", *FAST, "--set", "seed=7"], path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.json["version"] == "2"
    home = Home(path)
    home.champion("1")
    return home


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    # Every species and island; row 3 has missing values.
    frame = load_penguins().iloc[[3, *range(0, 344, 17)]].reset_index(drop=True)
    assert frame[FEATURES].isna().any().any()
    return frame


def test_ping_version_and_both_payload_shapes_match_the_trusted_predictor(home_, server, rows) -> None:
    s = server()
    assert s.get("/ping").status_code == 200
    version = s.get("/version").json()
    assert (version["model_name"], version["model_version"], version["alias"]) == (NAME, "1", "champion")

    expected = home_.predict_in_process("1", rows)
    records = as_records(rows)
    by_records = s.post({"dataframe_records": records})
    split = {"columns": FEATURES, "data": [[r[c] for c in FEATURES] for r in records]}
    by_split = s.post({"dataframe_split": split})
    for response in (by_records, by_split):
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == "1"
        predictions = response.json()["predictions"]
        assert [p["prediction"] for p in predictions] == [e["prediction"] for e in expected]
        assert same(predictions, expected)
    assert by_records.headers["X-Request-ID"] != by_split.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"dataframe_records": [{"island": "Biscoe"}]}, "missing column(s) ['bill_length_mm'"),
        ({"dataframe_split": {"columns": ["island"], "data": [["Dream"]]}}, "'sex']: the model needs"),
        (
            {"dataframe_records": [{**dict.fromkeys(FEATURES, None), "body_mass_g": "heavy"}]},
            "column 'body_mass_g' row 0: 'heavy' is not a number",
        ),
        ({"instances": [[1, 2]]}, "exactly one of 'dataframe_split' or 'dataframe_records'"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}, "row 0 has 1 values for 2 columns"),
        (b"{not json", "the body is not valid JSON"),
        ({"dataframe_records": []}, "the request has no rows"),
    ],
)
def test_bad_payloads_are_400_naming_what_is_wrong(server, body, message) -> None:
    s = server("--set", "serve.log_predictions=false")
    response = s.post(body)
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert message in response.json()["message"]
    assert s.get("/ping").status_code == 200


def test_predictions_are_logged_with_request_ids_and_feedback_joins(home_, server, rows) -> None:
    s = server()
    records = as_records(rows)
    mine = s.post({"dataframe_records": records[:3]}, **{"X-Request-ID": "client-req-1"})
    generated = s.post({"dataframe_records": records[3:4]})
    assert mine.headers["X-Request-ID"] == "client-req-1"
    generated_id = generated.headers["X-Request-ID"]
    code, report, _ = s.stop()
    assert code == 0
    assert report["prediction_log"]["written_rows"] >= 4 and report["prediction_log"]["unwritten_rows"] == 0

    logged = {(r[0], r[1]): r for r in home_.log_rows()}
    for i in range(3):
        _request_id, _row, name, version, inputs, outputs = logged[("client-req-1", i)]
        assert (name, version) == (NAME, "1")
        assert json.loads(inputs)["island"] == records[i]["island"]
        assert same([json.loads(outputs)], [mine.json()["predictions"][i]])
    assert (generated_id, 0) in logged

    labels = home_.path / "labels.csv"
    pd.DataFrame(
        {
            "request_id": ["client-req-1"] * 3 + [generated_id],
            "row": [0, 1, 2, 0],
            "species": list(rows["species"][:4]),
        }
    ).to_csv(labels, index=False)
    for _ in range(2):  # idempotent
        result = run_cli(["feedback", str(labels)], home_.path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.json["labels"] == 4 and result.json["matched_predictions"] == 4
    with sqlite3.connect(home_.path / "features.db") as connection:
        joined = connection.execute(
            "SELECT l.request_id, l.row, f.label FROM prediction_log l JOIN prediction_feedback f "
            "USING (request_id, row) WHERE l.request_id = 'client-req-1' ORDER BY l.row"
        ).fetchall()
    assert joined == [("client-req-1", i, json.dumps(rows["species"][i])) for i in range(3)]

    bad = home_.path / "bad.csv"
    pd.DataFrame({"request_id": ["x"], "label": ["Adelie"]}).to_csv(bad, index=False)
    result = run_cli(["feedback", str(bad)], home_.path)
    assert result.returncode == 65
    assert "bad.csv" in result.stderr and "missing column 'species'" in result.stderr


def test_the_alias_switch_under_load_fails_no_request_and_mixes_no_version(home_, server, rows) -> None:
    s = server()
    load = Load(s, rows)
    load.resume()
    try:
        deadline = time.monotonic() + 120
        while len(load.versions()) < 5:
            assert time.monotonic() < deadline and not load.failures, load.failures
            time.sleep(0.05)
        home_.champion("2")
        while (seen := load.versions())[-1] != "2" or seen.count("2") < 5:
            assert time.monotonic() < deadline, f"the server never switched: {s.get('/version').text}"
            time.sleep(0.05)
    finally:
        load.stop()
    assert load.failures == []
    assert load.mismatches(home_.predict_in_process) == []
    seen = load.versions()
    assert set(seen) == {"1", "2"}
    switch = seen.index("2")
    assert set(seen[:switch]) == {"1"} and set(seen[switch:]) == {"2"}, "a request went back to v1"
    assert s.get("/version").json()["switches"] == 1
    code, _report, _ = s.stop()
    assert code == 0
    versions = {r[3] for r in home_.log_rows()}
    assert {"1", "2"} <= versions


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(home_, server, rows) -> None:
    home_.champion("1")
    weights = home_.files("2") / "artifacts" / "model.pt"
    assert weights.is_file()
    weights.write_bytes(weights.read_bytes() + b"tampered")
    s = server()
    assert s.get("/version").json()["model_version"] == "1"
    home_.champion("2")
    deadline = time.monotonic() + 120
    while s.get("/version").json()["refusals"] == 0:
        assert time.monotonic() < deadline, "the tampered version was never looked at"
        time.sleep(0.1)
    version = s.get("/version").json()
    assert version["model_version"] == "1"
    assert "artifacts/model.pt failed its digest check" in version["refused_versions"]["2"]
    response = s.post({"dataframe_records": as_records(rows)})
    assert response.status_code == 200 and response.headers["X-Model-Version"] == "1"
    assert s.get("/ping").status_code == 200
    code, _, err = s.stop()
    assert code == 0
    assert "refused penguins v2" in err and "still serving v1" in err


def test_a_failing_log_store_never_fails_a_prediction_and_the_loss_is_counted(home_, server, rows) -> None:
    home_.champion("1")
    unwritable = home_.path / "no-such-folder" / "sub" / "features.db"
    s = server("--set", f"feature_store_url=sqlite:///{unwritable}")
    body = {"dataframe_records": as_records(rows)}
    for _ in range(5):
        response = s.post(body)
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while s.get("/stats").json()["prediction_log"]["failed_rows_write_error"] < 5 * len(rows):
        assert time.monotonic() < deadline, s.get("/stats").text
        time.sleep(0.1)
    stats = s.get("/stats").json()["prediction_log"]
    assert stats["written_rows"] == 0 and "unable to open database file" in stats["last_error"]
    code, report, err = s.stop()
    assert code == 75  # the loss is reported by the exit code, too
    assert report["prediction_log"]["unwritten_rows"] == 5 * len(rows)
    assert f"{5 * len(rows)} of {5 * len(rows)} row(s) were not written" in err
