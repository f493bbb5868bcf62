"""Fixtures of the DAG tests: an isolated Airflow home, Airflow's CLI, a throwaway PostgreSQL.

Airflow reads ``AIRFLOW_HOME`` when it is first imported and writes ``airflow.cfg`` there, so this
module points it at a temporary folder before any test imports Airflow (never the user's
``~/airflow``). Commands such as ``airflow dags test`` run as subprocesses with an explicit
environment built by :func:`airflow_env`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import PostgresServer, postgres_server
from tests.support import need_executable, unavailable

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_ID = "ml_pipeline"
# The DAG's tasks: the trigger params check, the preflight check (pipeline doctor), then one task
# per registered step.
CHECK = "check_params"
PREFLIGHT = "preflight"

# Airflow puts the DAG folder (bundle) on sys.path; the tests import its helpers the same way.
if str(DAGS) not in sys.path:
    sys.path.append(str(DAGS))

if "airflow" not in sys.modules:
    _IMPORT_HOME = tempfile.mkdtemp(prefix="mlp-airflow-import-")
    atexit.register(shutil.rmtree, _IMPORT_HOME, True)
    os.environ["AIRFLOW_HOME"] = _IMPORT_HOME
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)


def require_airflow() -> None:
    try:
        import airflow.providers.cncf.kubernetes
        import airflow.sdk  # noqa: F401
    except ImportError as exc:
        unavailable(
            f"Apache Airflow with the cncf.kubernetes provider ({exc})", "pip install -e '.[airflow]'"
        )


@pytest.fixture(autouse=True)
def _airflow_installed() -> None:
    require_airflow()


@pytest.fixture
def mlp_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean slate of MLP_DAG_* variables for one test (defaults unless the test sets them)."""
    for name in list(os.environ):
        if name.startswith(("MLP_DAG_", "MLP_ALERT_", "MLP_MLFLOW_")):
            monkeypatch.delenv(name)
    return monkeypatch


def load_dagbag():
    """Parse ``dags/`` the way ``airflow dags list-import-errors --local`` does (a plain DagBag)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def load_dag():
    bag = load_dagbag()
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[DAG_ID]


# --------------------------------------------------------------------------------------------
# Airflow's CLI in a subprocess, against an isolated home and metadata database
# --------------------------------------------------------------------------------------------


def airflow_executable() -> str:
    """The ``airflow`` script of the interpreter running the tests (same venv as the pipeline)."""
    return need_executable("airflow", "pip install -e '.[airflow]'", path=str(Path(sys.executable).parent))


def airflow_env(home: Path, db_url: str, **extra: str) -> dict[str, str]:
    """Environment of an Airflow component or CLI call: one home, one DB, one-machine mode."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLP_", "PIPELINE_", "MLFLOW_"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API_AUTH__JWT_SECRET": "test-jwt-secret-shared-by-all-components",
            "AIRFLOW__API__SECRET_KEY": "test-api-secret-key",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "MLP_DAG_TASK_RUNNER": "local",
            "MLP_DAG_SCHEDULE": "none",
            "MLP_DAG_RETRY_DELAY_S": "1",
            "MLP_DAG_MAX_RETRY_DELAY_S": "2",
            "GX_ANALYTICS_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_airflow(
    args: list[str], env: dict[str, str], *, cwd: Path, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [airflow_executable(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"airflow {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def migrated_home(root: Path, db_url: str) -> Path:
    home = root / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    run_airflow(["db", "migrate"], airflow_env(home, db_url), cwd=root, timeout=180)
    return home


@pytest.fixture(scope="session")
def sqlite_airflow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An Airflow home whose metadata database is a migrated SQLite file."""
    require_airflow()
    root = tmp_path_factory.mktemp("airflow-sqlite")
    db_url = f"sqlite:///{root / 'airflow.db'}"
    return migrated_home(root, db_url), db_url


# --------------------------------------------------------------------------------------------
# A throwaway PostgreSQL server on a free loopback port (tests/services.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_airflow(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    """An Airflow home whose metadata database is a migrated database on the throwaway PostgreSQL."""
    require_airflow()
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        unavailable(
            "asyncpg (Airflow needs it on PostgreSQL)", "pip install apache-airflow-providers-postgres"
        )
    root = tmp_path_factory.mktemp("airflow-postgres")
    db_url = postgres.create_database("airflow")
    return migrated_home(root, db_url), db_url, "airflow"
