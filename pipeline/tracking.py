"""MLflow set-up: tracking URI, experiments, bounded client retries, and SQLite safe for concurrent
writers. Nothing here runs at import time; :func:`configure` is called by the steps that track.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import RetryableError
from pipeline.names import RUN_TAG
from pipeline.settings import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

    from pipeline.settings import Settings

logger = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "ml-pipeline",
    "torch",
    "mlflow",
    "great-expectations",
    "dvc",
    "pandas",
    "numpy",
    "pyarrow",
    "scikit-learn",
    "sqlalchemy",
    "pydantic",
)


def quiet_telemetry() -> None:
    """Telemetry of MLflow, DVC and Great Expectations is off unless the user turned it on."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def prepare_sqlite(uri: str) -> None:
    """WAL journal (readers never block the writer) on the embedded tracking database."""
    path = _sqlite_path(uri)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=60)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured store and return a client."""
    quiet_telemetry()
    # Bounded retries and timeouts: an unreachable server fails the step instead of hanging.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_http_timeout_s))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_http_max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")
    # Artifacts go through the tracking server only. A server with proxied artifacts on S3
    # advertises presigned multipart transfers; a client would then fetch from (or upload to) the
    # server's S3 endpoint directly, which the pipeline may not reach and has no credentials for.
    os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    # stdout carries the step's JSON summary only (MLflow prints run links there for a server).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # No download/upload progress bars in step logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Concurrent writers on SQLite wait for the lock instead of failing at once.
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    path = _sqlite_path(uri)
    if path is None:
        probe_database(uri, settings)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # Creating or migrating the schema (which the client does when it opens the store) is not safe
    # from two processes at once: serialise it.
    from filelock import FileLock

    prepare_sqlite(uri)
    with FileLock(str(path) + ".init.lock", timeout=300):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


def probe_database(uri: str, settings: Settings) -> None:
    """A database tracking store (``postgresql://``, ``mysql://``) reached directly: one bounded
    connection attempt first. MLflow itself retries an unreachable database for about 100 s
    before it says anything; this fails in ``mlflow_http_timeout_s`` with a clear, redacted error."""
    if "://" not in uri or uri.split(":", 1)[0].split("+", 1)[0] not in ("postgresql", "mysql", "mssql"):
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    args = {"connect_timeout": settings.mlflow_http_timeout_s} if uri.startswith("postgresql") else {}
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise RetryableError(f"MLflow tracking store {redact_url(uri)} unreachable: {reason}") from None
    finally:
        engine.dispose()


def tracking_uri(settings: Settings) -> str:
    uri = settings.resolved_tracking_uri
    if uri.startswith("sqlite:///") and "timeout=" not in uri:
        uri += ("&" if "?" in uri else "?") + "timeout=60"
    return uri


def ensure_experiment(client: MlflowClient, settings: Settings) -> str:
    """The experiment's id, creating it (race-safe) with an explicit artifact location locally."""
    from mlflow.exceptions import MlflowException

    name = settings.resolved_experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if settings.uses_embedded_tracking:
        folder = settings.home / "mlartifacts"
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created by a concurrent run in the meantime
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit(settings: Settings) -> str | None:
    if settings.git_commit:
        return settings.git_commit
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return f"{commit}-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else commit


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def environment_listing() -> str:
    """Every installed distribution, pinned: the full environment a run used."""
    names = sorted({(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}.items())
    return "\n".join(f"{n}=={v}" for n, v in names if n) + "\n"


def is_run_of(client: MlflowClient, mlflow_run_id: str, run_id: str) -> bool:
    """Whether an MLflow run exists and was started for this pipeline run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(mlflow_run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return run.data.tags.get(RUN_TAG) == run_id


def logged_through(client: MlflowClient, mlflow_run_id: str, key: str = "val_loss") -> int:
    """The last epoch (step) of ``key`` on the run: what an interrupted attempt logged. A resumed
    attempt retrains the epochs after its checkpoint from the same state and settings (the
    checkpoint's fingerprint), so the values already logged stand and are not logged twice."""
    return max((m.step for m in client.get_metric_history(mlflow_run_id, key)), default=0)


def runs_for_pipeline_run(client: MlflowClient, experiment_id: str, run_id: str) -> list[Any]:
    return client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=50)


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested settings -> flat ``a.b.c`` params for MLflow."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def wrap_unreachable(exc: Exception, settings: Settings) -> RetryableError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RetryableError(
        f"MLflow at {redact_url(settings.resolved_tracking_uri)} failed: {first_line[:500]}"
    )


def trigger_tags(settings: Settings) -> dict[str, str]:
    """What caused this training run (``settings.trigger``), as tags: the train step puts them on
    the MLflow run as it opens it (so a run that fails later still records its cause), the register
    step on the version it registers (and the run, where they differ). ``trigger.cause`` always,
    the monitor's evidence when a monitoring check decided the retrain."""
    from pipeline.names import (
        TRIGGER_CAUSE_TAG,
        TRIGGER_DRIFTED_COLUMNS_TAG,
        TRIGGER_MONITOR_RUN_TAG,
        TRIGGER_WINDOW_TAG,
    )

    trigger = settings.trigger
    tags = {TRIGGER_CAUSE_TAG: trigger.cause}
    for key, value in (
        (TRIGGER_MONITOR_RUN_TAG, trigger.monitor_run_id),
        (TRIGGER_DRIFTED_COLUMNS_TAG, trigger.drifted_columns),
        (TRIGGER_WINDOW_TAG, trigger.window),
    ):
        if value:
            tags[key] = value[:5000]  # MLflow's tag value limit is far above; bounded all the same
    return tags
