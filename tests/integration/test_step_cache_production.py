"""The step cache on the production backends (artifact root and DVC remote on S3, PostgreSQL feature
store, an MLflow server): the keys live in the S3 artifact root, where every pod reads them; a
second `pipeline run` reuses every step and registers nothing; a step run alone for a new run id,
as an Airflow pod runs it, reuses the first run's outputs from S3 and says so in its JSON."""

from __future__ import annotations

import json

import pytest

from pipeline import steps
from tests.conftest import FAST, run_cli
from tests.integration.conftest import BUCKET, Backends

pytestmark = pytest.mark.integration

NAME = "cached"


def test_a_rerun_on_production_backends_reuses_every_step_from_s3(backends: Backends, tmp_path) -> None:
    home = tmp_path / "home"
    env = backends.env(NAME)
    first = run_cli(["run", *FAST], home, **env)
    assert first.returncode == 0, first.stderr[-5000:]
    first_id = first.json["run_id"]
    entries = backends.s3.keys(BUCKET, f"{NAME}/artifacts/cache/")
    assert sorted(key.split("/")[-2] for key in entries) == sorted(steps.STEP_NAMES)
    for key in entries:
        assert json.loads(backends.s3.get(BUCKET, key))["run_id"] == first_id

    again = run_cli(["run", *FAST], home, **env)
    assert again.returncode == 0, again.stderr[-5000:]
    summary = again.json
    assert summary["cached"] is True and summary["reused_from"] == first_id
    assert f"nothing changed since run {first_id}; champion v1 stands" in again.stderr
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    assert [v.version for v in client.search_model_versions(f"name = '{NAME}'")] == ["1"]
    # The new run's manifests name the first run's objects: nothing was copied on S3.
    run_prefix = f"{NAME}/artifacts/runs/{summary['run_id']}/"
    assert all(
        key.endswith("/manifest.json") or key.endswith("settings.yaml")
        for key in backends.s3.keys(BUCKET, run_prefix)
    )
    manifest = json.loads(backends.s3.get(BUCKET, f"{run_prefix}preprocess/manifest.json"))
    assert manifest["reused_from"] == {"run_id": first_id, "step": "preprocess"}
    assert manifest["outputs"]["features"]["uri"].startswith(
        f"s3://{BUCKET}/{NAME}/artifacts/runs/{first_id}/"
    )

    # One step alone, as a pod runs it, for a new run id.
    pod = run_cli(["step", "ingest", "--run-id", "pod-run", *FAST], home, **env)
    assert pod.returncode == 0, pod.stderr[-3000:]
    assert pod.json["reused_from"] == {"run_id": first_id, "step": "ingest"}
    forced = run_cli(["step", "validate", "--run-id", "pod-run", "--no-cache", *FAST], home, **env)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "reused_from" not in forced.json
