"""The whole pipeline with every production backend at once: PostgreSQL feature store, an MLflow
server on PostgreSQL with artifacts proxied to S3, the artifact root and the DVC remote on S3.
Its results are read back with the tools a user would use: the ``mlflow`` client (through the
server's URL only) and the ``dvc`` command (pulling from the S3 remote)."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FAST, CliResult, clean_env, run_cli
from tests.integration.conftest import BUCKET, Backends

pytestmark = pytest.mark.integration

NAME = "e2e"


@dataclass
class ProductionRun:
    home: Path
    env: dict[str, str]
    result: CliResult


@pytest.fixture(scope="module")
def production_run(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> ProductionRun:
    home = tmp_path_factory.mktemp("production") / "home"
    env = backends.env(NAME)
    result = run_cli(["run", *FAST], home, **env)
    assert result.returncode == 0, result.stderr[-5000:]
    return ProductionRun(home, env, result)


def test_run_registers_the_first_version_as_champion(production_run: ProductionRun) -> None:
    summary = production_run.result.json
    assert summary["model_name"] == NAME
    assert summary["version"] == "1"
    assert set(summary["aliases"]) == {"challenger", "champion"}
    # stdout carries the JSON summary and nothing else (no MLflow run links).
    assert "View run" not in production_run.result.stdout
    # Nothing secret reaches the logs.
    secret = production_run.env["PIPELINE_S3__SECRET_ACCESS_KEY"]
    assert secret not in production_run.result.stderr + production_run.result.stdout


def test_every_output_lives_in_the_production_backends(
    production_run: ProductionRun, backends: Backends
) -> None:
    run_id = production_run.result.json["run_id"]
    keys = backends.s3.keys(BUCKET, f"{NAME}/artifacts/runs/{run_id}/")
    for step in ("ingest", "validate", "preprocess", "features", "version", "train", "evaluate", "register"):
        assert f"{NAME}/artifacts/runs/{run_id}/{step}/manifest.json" in keys, step
    assert backends.s3.keys(BUCKET, f"{NAME}/dvc/"), "DVC pushed to the S3 remote"
    # Nothing was written to the embedded defaults.
    home = production_run.home
    assert not (home / "mlflow.db").exists()
    assert not (home / "features.db").exists()
    assert not (home / "artifacts").exists()
    assert not (home / "dvc-remote").exists()
    # The feature set is a typed, partitioned table in PostgreSQL.
    database = f"features_{NAME}"
    rows = backends.postgres.query(
        database, "SELECT feature_set, version, table_name, row_count FROM feature_set_versions"
    )
    assert [(r[0], r[1]) for r in rows] == [("penguins", 1)]
    table = rows[0][2]
    types = dict(
        backends.postgres.query(
            database,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (f"{table}_v1",),
        )
    )
    assert types["_version"] == "integer"
    assert "double precision" in types.values()
    assert types["row_id"] == "bigint"
    attached = backends.postgres.query(
        database, "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass", (table,)
    )
    assert attached == [(f"{table}_v1",)]


def test_mlflow_client_reads_the_run_model_and_lineage_through_the_server(
    production_run: ProductionRun, backends: Backends, mlflow_client_env: str, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_client_env, registry_uri=mlflow_client_env)
    version = client.get_model_version_by_alias(NAME, "champion")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["pipeline.run_id"] == production_run.result.json["run_id"]
    assert run.data.tags["feature_set.version"] == "1"
    assert run.data.params["train.max_epochs"] == "12"
    assert "test_macro_f1" in run.data.metrics
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), "artifacts are proxied"

    files = {item.path for item in client.list_artifacts(run.info.run_id, "lineage/dvc")}
    assert {"lineage/dvc/raw.dvc", "lineage/dvc/processed.dvc"} <= files
    # The artifacts really are in the S3 bucket behind the server.
    stored = backends.s3.keys(BUCKET, f"mlflow/{run.info.experiment_id}/")
    assert any(key.endswith("lineage/dvc/raw.dvc") for key in stored)

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    rows = pd.DataFrame(
        {
            "island": ["Biscoe", "Dream"],
            "bill_length_mm": [47.5, 39.0],
            "bill_depth_mm": [14.8, 18.5],
            "flipper_length_mm": [215.0, 190.0],
            "body_mass_g": [5200.0, 3700.0],
            "sex": ["male", "female"],
        }
    ).astype({"island": object, "sex": object})
    assert list(model.predict(rows)["prediction"]) == ["Gentoo", "Adelie"]


def test_dvc_command_pulls_the_exact_raw_data_from_the_s3_remote(
    production_run: ProductionRun, backends: Backends, mlflow_client_env: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_client_env, registry_uri=mlflow_client_env)
    version = client.get_model_version_by_alias(NAME, "champion")
    run = client.get_run(version.run_id)
    dvc_file = Path(
        mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path="lineage/dvc/raw.dvc", dst_path=str(tmp_path)
        )
    )
    dvc = shutil.which("dvc", path=os.path.dirname(sys.executable)) or shutil.which("dvc")
    assert dvc, "the dvc command ships with the package's dependencies"
    target = tmp_path / "fetch"
    target.mkdir()
    env = clean_env(production_run.home, DVC_NO_ANALYTICS="1")

    def dvc_run(*args: str) -> None:
        proc = subprocess.run([dvc, *args], cwd=target, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr

    s3 = backends.s3
    dvc_run("init", "--no-scm")
    dvc_run("remote", "add", "-d", "store", f"s3://{BUCKET}/{NAME}/dvc")
    dvc_run("remote", "modify", "store", "endpointurl", s3.url)
    dvc_run("remote", "modify", "--local", "store", "access_key_id", s3.access_key_id)
    dvc_run("remote", "modify", "--local", "store", "secret_access_key", s3.secret_access_key)
    shutil.copyfile(dvc_file, target / "penguins.csv.dvc")
    dvc_run("pull", "penguins.csv.dvc")

    pulled = target / "penguins.csv"
    assert hashlib.sha256(pulled.read_bytes()).hexdigest() == run.data.tags["data.raw.sha256"]
    # Byte-identical to the raw snapshot the ingest step published on S3.
    run_id = run.data.tags["pipeline.run_id"]
    manifest = json.loads(s3.get(BUCKET, f"{NAME}/artifacts/runs/{run_id}/ingest/manifest.json"))
    uri = next(o["uri"] for o in manifest["outputs"].values() if o["uri"].endswith("penguins.csv"))
    snapshot = tmp_path / "snapshot.csv"
    snapshot.write_bytes(s3.get(BUCKET, uri[len(f"s3://{BUCKET}/") :]))
    assert filecmp.cmp(pulled, snapshot, shallow=False)


def test_lineage_commands_work_against_the_server(production_run: ProductionRun, tmp_path: Path) -> None:
    shown = run_cli(["show", f"{NAME}@champion", "--json"], production_run.home, **production_run.env)
    assert shown.returncode == 0, shown.stderr[-3000:]
    lineage = json.loads(shown.stdout)
    assert lineage["model"]["version"] == "1"
    assert lineage["run"]["status"] == "FINISHED"
    fetched = run_cli(
        ["fetch-data", f"{NAME}/1", "--dest", str(tmp_path / "v1")], production_run.home, **production_run.env
    )
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    assert Path(fetched.stdout.strip().splitlines()[-1]).read_bytes().startswith(b"species,island")


def test_doctor_passes_against_the_production_backends(production_run: ProductionRun) -> None:
    result = run_cli(["doctor"], production_run.home, **production_run.env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * len(lines)
    names = {line.split()[1] for line in lines}
    assert {"s3", "artifact", "dvc", "feature", "mlflow", "gpu"} <= names
