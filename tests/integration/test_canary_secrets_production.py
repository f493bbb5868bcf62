"""No secret is recorded or printed on the production backends: the whole pipeline against the
PostgreSQL feature store, the MLflow server (PostgreSQL store, artifacts proxied to S3) and the S3
artifact root and DVC remote, with a distinct canary in every secret-bearing setting (the S3 secret
key is the endpoint's real one). Then every byte the run wrote is searched: the pipeline home and
temporary folder, every object in the bucket (run artifacts, DVC remote, MLflow artifacts), a dump of
the feature-store and MLflow databases, the MLflow server's log, stdout and stderr."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.canary import Canaries, assert_no_leak, canary_source, every_credential_arrived, source_env
from tests.conftest import FAST, run_cli
from tests.integration.conftest import BUCKET, Backends
from tests.services import find_pg_bin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "canary"


def _dump(backends: Backends, database: str) -> bytes:
    pg_bin = find_pg_bin()
    assert pg_bin is not None
    dump = subprocess.run(
        [
            str(pg_bin / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(backends.postgres.port),
            "-U",
            "postgres",
            database,
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return dump.stdout


def test_a_full_production_run_records_and_prints_no_secret(
    backends: Backends, tmp_path: Path, logs: Path
) -> None:
    canaries = Canaries()
    canaries.values["s3.secret_access_key (the endpoint's real key)"] = backends.s3.secret_access_key
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    tracking_password = canaries.new("MLFLOW_TRACKING_URI (user-info password)")
    with canary_source(canaries) as source:
        env = backends.env(NAME)
        env.update(source_env(source, canaries))
        env["PIPELINE_FEATURE_STORE_PASSWORD"] = canaries.new("feature_store_password")
        env["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"].replace(
            "://", f"://pipeline:{tracking_password}@"
        )
        result = run_cli(["run", *FAST], home, cwd=tmp_path, TMPDIR=str(tmp), **env)
        assert result.returncode == 0, result.stderr[-5000:]
        assert every_credential_arrived(source)
        shown = run_cli(["show", f"{NAME}@champion"], home, cwd=tmp_path, TMPDIR=str(tmp), **env)
        assert shown.returncode == 0, shown.stderr[-3000:]
        # A DVC workspace the user keeps: the data arrives, the S3 secret is not written there.
        fetched = run_cli(
            ["fetch-data", f"{NAME}/1", "--dest", str(tmp_path / "fetched")], home, TMPDIR=str(tmp), **env
        )
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        assert (tmp_path / "fetched" / ".dvc" / "config").is_file()
    assert result.json["promoted"] is True

    found = canaries.leaks_in_tree(home, tmp, tmp_path / "fetched")
    for name, cli in (("run", result), ("show", shown), ("fetch-data", fetched)):
        found += canaries.leaks_in(cli.stdout.encode(), f"stdout of pipeline {name}")
        found += canaries.leaks_in(cli.stderr.encode(), f"stderr of pipeline {name}")
    keys = backends.s3.keys(BUCKET)
    assert any(k.startswith(f"{NAME}/artifacts/runs/") for k in keys)
    assert any(k.startswith(f"{NAME}/dvc/") for k in keys)
    for key in keys:
        found += canaries.leaks_in(backends.s3.get(BUCKET, key), f"s3://{BUCKET}/{key}")
    for database in (f"features_{NAME}", "mlflow"):
        found += canaries.leaks_in(_dump(backends, database), f"pg_dump of {database}")
    found += canaries.leaks_in_tree(logs)
    assert_no_leak(found)
