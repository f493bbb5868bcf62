"""Faults injected into real backends while the pipeline uses them. Each fault must fail the step
with the retryable exit code (75) and a clear message, leave nothing half-written, and let a
retry succeed once the backend is back.

* PostgreSQL stopped while a feature version is being published (its rows already copied into the
  staging table, the transaction waiting to attach it), and stopped in the middle of a COPY.
* The S3 endpoint answering 500 or refusing connections while a step publishes its outputs.
* The MLflow server stopped while the train step logs to it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST, clean_env, run_cli
from tests.integration.conftest import BUCKET, Backends
from tests.services import PostgresServer, postgres_server

pytestmark = pytest.mark.integration

NAME = "faults"
RUN_ID = "faults-run-1"


@pytest.fixture(scope="module")
def fault_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of the feature store's own: these tests stop it (MLflow's stays up)."""
    with postgres_server() as server:
        yield server


@dataclass
class Prepared:
    home: Path
    env: dict[str, str]
    url: str


@pytest.fixture(scope="module")
def prepared(backends: Backends, fault_pg: PostgresServer, tmp_path_factory) -> Prepared:
    """A run whose ingest, validate and preprocess steps are done (outputs on S3)."""
    home = tmp_path_factory.mktemp("faults") / "home"
    env = backends.env(NAME, postgres=fault_pg)
    for step in ("ingest", "validate", "preprocess"):
        result = run_cli(["step", step, "--run-id", RUN_ID, *FAST], home, **env)
        assert result.returncode == 0, result.stderr[-4000:]
    return Prepared(home, env, env["PIPELINE_FEATURE_STORE_URL"])


def manifest(backends: Backends, run_id: str, step: str) -> dict | None:
    key = f"{NAME}/artifacts/runs/{run_id}/{step}/manifest.json"
    if key not in backends.s3.keys(BUCKET, f"{NAME}/artifacts/runs/{run_id}/{step}/"):
        return None
    return json.loads(backends.s3.get(BUCKET, key))


def processed_features(backends: Backends) -> pd.DataFrame:
    import io

    uri = manifest(backends, RUN_ID, "preprocess")["outputs"]["features"]["uri"]
    return pd.read_parquet(io.BytesIO(backends.s3.get(BUCKET, uri[len(f"s3://{BUCKET}/") :])))


def tables_like(server: PostgresServer, database: str, pattern: str) -> list[str]:
    rows = server.query(
        database,
        "SELECT relname FROM pg_class WHERE relname LIKE %s AND relkind IN ('r', 'p') ORDER BY 1",
        (pattern,),
    )
    return [r[0] for r in rows]


def wait_for(condition, what: str, process: subprocess.Popen | None = None, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(f"process ended ({process.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def test_postgres_stopped_while_a_version_is_published(
    prepared: Prepared, backends: Backends, fault_pg: PostgresServer
) -> None:
    from pipeline.featurestore import FeatureStore

    database = prepared.url.rsplit("/", 1)[1]
    frame = processed_features(backends)
    store = FeatureStore(prepared.url)
    try:
        previous = store.write(frame, "penguins", content_hash="0" * 64, run_id="an-earlier-run")
        before = store.read("penguins", previous.version)
    finally:
        store.close()
    assert previous.version == 1

    # Another session holds the data table: the step copies its rows into the staging table and
    # then waits to attach it, inside its transaction. That is when PostgreSQL goes down.
    blocker = fault_pg.connect(database)
    blocker.cursor().execute(f'LOCK TABLE "{previous.table_name}" IN ACCESS EXCLUSIVE MODE')
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "step", "features", "--run-id", RUN_ID, *FAST],
        cwd=prepared.home,
        env=clean_env(prepared.home, **prepared.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def attaching() -> bool:
            rows = fault_pg.query(
                database,
                "SELECT query FROM pg_stat_activity WHERE application_name = 'ml-pipeline'"
                " AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%%ATTACH PARTITION%%'",
            )
            return bool(rows)

        wait_for(attaching, "the load to wait on ATTACH PARTITION", process)
        # The staging table holds the copied rows, but no other session can see it.
        assert tables_like(fault_pg, database, f"{previous.table_name}_v%") == [f"{previous.table_name}_v1"]
        fault_pg.stop("fast")
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        fault_pg.start()
    assert process.returncode == 75, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("pipeline: error: step features: feature store"), last
    assert "nothing was published" in last

    # The previous version is intact; no version row, partition or staging table was left.
    store = FeatureStore(prepared.url)
    try:
        assert [v.version for v in store.versions("penguins")] == [1]
        pd.testing.assert_frame_equal(store.read("penguins", 1), before)
    finally:
        store.close()
    assert tables_like(fault_pg, database, f"{previous.table_name}_v%") == [f"{previous.table_name}_v1"]
    assert manifest(backends, RUN_ID, "features") is None, "the failed step published nothing"

    # The retry (what Airflow does on exit code 75) publishes the next version.
    retry = run_cli(["step", "features", "--run-id", RUN_ID, *FAST], prepared.home, **prepared.env)
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert retry.json["feature_set_version"] == 2
    store = FeatureStore(prepared.url)
    try:
        pd.testing.assert_frame_equal(store.read("penguins", 2), frame, check_dtype=False)
    finally:
        store.close()


def wide_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """The benchmark's shape: 15 float, 3 int and 2 short text columns, plus row_id."""
    rng = np.random.default_rng(seed)
    data = {"row_id": np.arange(rows, dtype="int64")}
    for i in range(15):
        data[f"f{i}"] = rng.normal(size=rows)
    for i in range(3):
        data[f"i{i}"] = rng.integers(0, 1_000_000, size=rows)
    for i in range(2):
        data[f"t{i}"] = rng.choice(np.array(["alpha", "beta", "gamma", "delta"], dtype=object), size=rows)
    return pd.DataFrame(data)


def test_postgres_stopped_in_the_middle_of_a_copy(fault_pg: PostgresServer) -> None:
    from pipeline.errors import EXIT_RETRYABLE, RetryableError
    from pipeline.featurestore import FeatureStore

    url = fault_pg.create_database("midcopy")
    frame = wide_frame(600_000)
    store = FeatureStore(url)
    previous = store.write(frame.head(1000), "wide", content_hash="1" * 64, run_id="seed")
    before = store.read("wide", 1)
    store.close()

    outcome: dict[str, object] = {}

    def load() -> None:
        loader = FeatureStore(url)
        try:
            outcome["version"] = loader.write(frame, "wide", content_hash="2" * 64, run_id="big")
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            loader.close()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        monitor = fault_pg.connect("midcopy")
        monitor.autocommit = True  # a fresh view of the server's progress on every poll
        processed = 0
        deadline = time.monotonic() + 120
        with monitor.cursor() as cursor:
            while not processed and thread.is_alive() and time.monotonic() < deadline:
                cursor.execute(
                    "SELECT tuples_processed FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)"
                    " WHERE a.application_name = 'ml-pipeline'"
                )
                row = cursor.fetchone()
                processed = row[0] if row else 0
                time.sleep(0.002)
        monitor.close()
        assert 0 < processed < len(frame), f"the COPY was not observed under way: {outcome}"
        fault_pg.stop("fast")
        thread.join(timeout=120)
    finally:
        fault_pg.start()
    assert not thread.is_alive()
    error = outcome.get("error")
    assert isinstance(error, RetryableError), outcome
    assert error.exit_code == EXIT_RETRYABLE
    assert "nothing was published" in str(error)

    store = FeatureStore(url)
    try:
        assert [v.version for v in store.versions("wide")] == [1]
        pd.testing.assert_frame_equal(store.read("wide", 1), before)
    finally:
        store.close()
    assert tables_like(fault_pg, "midcopy", f"{previous.table_name}_v%") == [f"{previous.table_name}_v1"]


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http500", "down"])
def test_s3_endpoint_failing_when_a_step_runs_again(mode: str, backends: Backends, tmp_path: Path) -> None:
    """A step run again with S3 failing exits 75 at its first S3 read (the run's recorded
    settings, ``runs/<id>/settings.yaml``) or write, names the S3 location under the run's prefix
    and the endpoint's answer, and leaves the attempt already published untouched."""
    home = tmp_path / "home"
    run_id = f"s3-{mode}"
    env = backends.env(NAME, PIPELINE_S3__MAX_ATTEMPTS="2", PIPELINE_S3__CONNECT_TIMEOUT_S="2")
    first = run_cli(["step", "ingest", "--run-id", run_id], home, **env)
    assert first.returncode == 0, first.stderr[-3000:]
    published = manifest(backends, run_id, "ingest")
    proxy = backends.s3.proxy
    answered = proxy.answered_500
    with proxy.fault(mode):
        again = run_cli(["step", "ingest", "--run-id", run_id], home, timeout=300, **env)
    assert again.returncode == 75, again.stderr[-3000:]
    last = again.stderr.strip().splitlines()[-1]
    assert last.startswith("pipeline: error: step ingest:"), last
    assert f"s3://{BUCKET}/{NAME}/artifacts/runs/{run_id}/" in last, last
    assert backends.s3.proxy.url in last, last
    if mode == "http500":
        # botocore gave up after the configured attempts (PIPELINE_S3__MAX_ATTEMPTS=2).
        assert re.search(r"S3 answered 500( InternalError)? after 2 attempt\(s\)", last), last
        assert proxy.answered_500 > answered
    else:
        assert "Could not connect to the endpoint URL" in last, last
    assert env["PIPELINE_S3__SECRET_ACCESS_KEY"] not in again.stderr

    # The published attempt is untouched: same manifest, same bytes behind it.
    assert manifest(backends, run_id, "ingest") == published
    import hashlib

    for output in published["outputs"].values():
        if "sha256" in output:
            data = backends.s3.get(BUCKET, output["uri"][len(f"s3://{BUCKET}/") :])
            assert hashlib.sha256(data).hexdigest() == output["sha256"]
    retry = run_cli(["step", "ingest", "--run-id", run_id], home, **env)
    assert retry.returncode == 0, retry.stderr[-3000:]


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------


def test_mlflow_server_stopped_while_training(
    prepared: Prepared, backends: Backends, mlflow_client_env: str
) -> None:
    from mlflow import MlflowClient

    for step in ("features", "version"):
        done = run_cli(["step", step, "--run-id", RUN_ID, *FAST], prepared.home, **prepared.env)
        assert done.returncode == 0, done.stderr[-3000:]
    long_training = ["--set", "train.max_epochs=150", "--set", "train.patience=150"]
    client = MlflowClient(tracking_uri=mlflow_client_env)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "step", "train", "--run-id", RUN_ID, *long_training],
        cwd=prepared.home,
        env=clean_env(prepared.home, **prepared.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def runs():
        experiment = client.get_experiment_by_name(NAME)
        if experiment is None:
            return []
        return client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`pipeline.run_id` = '{RUN_ID}'"
        )

    def training_logged() -> bool:
        found = runs()
        return bool(found) and len(client.get_metric_history(found[0].info.run_id, "val_loss")) >= 2

    try:
        wait_for(training_logged, "two epochs logged to MLflow", process)
        backends.mlflow.stop()
        stopped = time.monotonic()
        _out, err = process.communicate(timeout=300)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
        backends.mlflow.start()
    assert process.returncode == 75, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("pipeline: error: step train:"), last
    assert backends.mlflow.url in last, last
    print(f"train step failed {took:.1f}s after the MLflow server stopped")
    assert manifest(backends, RUN_ID, "train") is None
    # The killed attempt could not close its MLflow run.
    assert [r.info.status for r in runs()] == ["RUNNING"]

    retry = run_cli(["step", "train", "--run-id", RUN_ID, *long_training], prepared.home, **prepared.env)
    assert retry.returncode == 0, retry.stderr[-3000:]
    statuses = {r.info.run_id: r.info.status for r in runs()}
    assert "RUNNING" not in statuses.values(), statuses
    assert statuses[retry.json["mlflow_run_id"]] == "FINISHED"
    assert set(statuses.values()) <= {"FINISHED", "KILLED"}
