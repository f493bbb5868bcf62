"""Production backends for the integration tests: a PostgreSQL cluster, moto's S3 server (signed
requests only, behind a fault proxy) and an MLflow server on that PostgreSQL with artifacts proxied
to that S3. Started once per session on free loopback ports (see :mod:`tests.services`).

Each test takes its own names through :meth:`Backends.env` (a feature-store database, an S3
prefix, an experiment and a model), so tests share the services but never each other's state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.services import (
    MlflowServer,
    PostgresServer,
    S3Server,
    mlflow_server,
    postgres_server,
    s3_server,
)

BUCKET = "ml-pipeline"
MLFLOW_DESTINATION = f"s3://{BUCKET}/mlflow"


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3(logs: Path) -> Iterator[S3Server]:
    with s3_server(logs, buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture(scope="session")
def mlflow(postgres: PostgresServer, s3: S3Server, logs: Path) -> Iterator[MlflowServer]:
    with mlflow_server(postgres, s3, logs, "mlflow", MLFLOW_DESTINATION) as server:
        yield server


@dataclass
class Backends:
    postgres: PostgresServer
    s3: S3Server
    mlflow: MlflowServer

    def env(self, name: str, postgres: PostgresServer | None = None, **extra: str) -> dict[str, str]:
        """Pipeline environment with every production backend, namespaced by ``name``.

        ``name`` becomes the feature-store database, the S3 prefix of the artifact root and the
        DVC remote, the experiment and the model name. The pipeline gets S3 settings for its
        artifact root and DVC remote only; MLflow is reached through its URL alone.
        """
        server = postgres or self.postgres
        database = f"features_{name.replace('-', '_')}"
        existing = server.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if not existing:
            server.create_database(database)
        env = {
            "MLFLOW_TRACKING_URI": self.mlflow.url,
            "PIPELINE_FEATURE_STORE_URL": server.url(database),
            "PIPELINE_ARTIFACT_ROOT": f"s3://{BUCKET}/{name}/artifacts",
            "PIPELINE_DVC_REMOTE": f"s3://{BUCKET}/{name}/dvc",
            "PIPELINE_EXPERIMENT_NAME": name,
            "PIPELINE_MODEL_NAME": name,
            # Bounded, short waits so that a fault fails a step quickly.
            "PIPELINE_MLFLOW_HTTP_TIMEOUT_S": "10",
            "PIPELINE_MLFLOW_HTTP_MAX_RETRIES": "2",
            **self.s3.pipeline_env(),
        }
        env.update(extra)
        return env

    def process_env(self, home: Path, name: str, **extra: str) -> dict[str, str]:
        """A whole process environment (for ``subprocess``) for ``name``."""
        return clean_env(home, **self.env(name, **extra))


@pytest.fixture(scope="session")
def backends(postgres: PostgresServer, s3: S3Server, mlflow: MlflowServer) -> Backends:
    return Backends(postgres, s3, mlflow)


@pytest.fixture
def mlflow_client_env(monkeypatch: pytest.MonkeyPatch, mlflow: MlflowServer) -> str:
    """The test process as an MLflow client of the server: URL only, no S3 credentials, artifacts
    through the server (as the pipeline does, see ``pipeline.tracking.configure``)."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "MLFLOW_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.url)
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return mlflow.url
