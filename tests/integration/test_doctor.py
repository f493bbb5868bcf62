"""``pipeline doctor`` against real backends: each misconfiguration gives exactly one problem line
that names it (and the others still pass), with the exit code saying whether a retry can help."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli
from tests.integration.conftest import MLFLOW_DESTINATION, Backends
from tests.services import MlflowServer, PostgresServer, postgres_server
from tests.support import free_port

pytestmark = pytest.mark.integration

NAME = "doctor"


def doctor(home: Path, env: dict[str, str]) -> tuple[CliResult, list[str]]:
    result = run_cli(["doctor"], home, timeout=300, **env)
    return result, [line for line in result.stdout.splitlines() if line.startswith("FAIL")]


def only_problem(result: CliResult, failures: list[str], check: str) -> str:
    assert len(failures) == 1, result.stdout
    line = failures[0]
    assert line.split()[1] == check, line
    # The same problem is the last line of stderr, for alerts and task logs.
    assert result.stderr.strip().splitlines()[-1].startswith("pipeline: error: doctor: 1 problem(s)")
    return line


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doctor") / "home"


def test_all_backends_configured_correctly(backends: Backends, home: Path) -> None:
    result, failures = doctor(home, backends.env(NAME))
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert failures == []
    as_json = run_cli(["doctor", "--json"], home, **backends.env(NAME))
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and {c["status"] for c in report["checks"]} == {"ok"}


def test_wrong_s3_endpoint(backends: Backends, home: Path) -> None:
    wrong = f"http://127.0.0.1:{free_port()}"
    result, failures = doctor(home, backends.env(NAME, PIPELINE_S3__ENDPOINT_URL=wrong))
    line = only_problem(result, failures, "s3")
    assert wrong in line and "does not answer" in line and "PIPELINE_S3__ENDPOINT_URL" in line
    assert result.returncode == 75, "an endpoint that does not answer may come back: retryable"


def test_wrong_credentials(backends: Backends, home: Path) -> None:
    env = backends.env(NAME, PIPELINE_S3__SECRET_ACCESS_KEY="not-the-secret-key")
    result, failures = doctor(home, env)
    line = only_problem(result, failures, "s3")
    assert "rejected" in line and "SignatureDoesNotMatch" in line and "PIPELINE_S3__SECRET_ACCESS_KEY" in line
    assert "not-the-secret-key" not in result.stdout + result.stderr
    assert result.returncode == 65
    unknown = backends.env(NAME, PIPELINE_S3__ACCESS_KEY_ID="AKIANOSUCHKEY0000000")
    result, failures = doctor(home, unknown)
    assert "InvalidAccessKeyId" in only_problem(result, failures, "s3")


def test_missing_bucket(backends: Backends, home: Path) -> None:
    env = backends.env(NAME, PIPELINE_ARTIFACT_ROOT="s3://no-such-bucket/artifacts")
    result, failures = doctor(home, env)
    line = only_problem(result, failures, "s3")
    assert "bucket 'no-such-bucket'" in line and "does not exist" in line and "artifact root" in line
    assert "skip " in result.stdout, "the artifact root probe is skipped, not reported twice"
    assert result.returncode == 65


@pytest.fixture
def stopped_postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        server.create_database("features")
        server.stop()
        yield server


def test_postgres_down(backends: Backends, home: Path, stopped_postgres: PostgresServer) -> None:
    env = backends.env(NAME, PIPELINE_FEATURE_STORE_URL=stopped_postgres.url("features"))
    result, failures = doctor(home, env)
    line = only_problem(result, failures, "feature")
    assert "cannot connect" in line and f"127.0.0.1:{stopped_postgres.port}" in line
    assert "check that PostgreSQL is running" in line
    assert result.returncode == 75


def test_postgres_reachable_but_database_missing(backends: Backends, home: Path) -> None:
    env = backends.env(NAME, PIPELINE_FEATURE_STORE_URL=backends.postgres.url("no_such_database"))
    result, failures = doctor(home, env)
    line = only_problem(result, failures, "feature")
    assert "does not exist" in line and "PIPELINE_FEATURE_STORE_URL" in line
    assert result.returncode == 65


@pytest.fixture
def other_store_mlflow(backends: Backends, logs: Path) -> Iterator[MlflowServer]:
    """A second MLflow server on the same database, storing artifacts in another bucket."""
    backends.s3.create_bucket("other-bucket")
    backend = backends.postgres.url("mlflow", driver="")
    server = MlflowServer(backend, "s3://other-bucket/mlflow", backends.s3, logs)
    server.start()
    yield server
    server.stop()


def test_mlflow_server_storing_artifacts_elsewhere(
    backends: Backends, home: Path, other_store_mlflow: MlflowServer
) -> None:
    env = backends.env(NAME, MLFLOW_TRACKING_URI=other_store_mlflow.url)
    result, failures = doctor(home, env)
    line = only_problem(result, failures, "mlflow")
    assert f"not from {MLFLOW_DESTINATION}" in line and "--artifacts-destination" in line
    assert result.returncode == 65
    # The probe went through the server into its own bucket and was removed again.
    assert backends.s3.keys("other-bucket", "mlflow/_doctor/") == []


def test_gpu_required_but_absent(backends: Backends, home: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result, failures = doctor(home, backends.env(NAME, PIPELINE_REQUIRE_GPU="true"))
    line = only_problem(result, failures, "gpu")
    assert "no CUDA device is visible" in line
    assert result.returncode == 65


def test_embedded_defaults_pass_with_no_services(tmp_path: Path) -> None:
    result, failures = doctor(tmp_path / "laptop", {})
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert failures == []
    assert "embedded store" in result.stdout
