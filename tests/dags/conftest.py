"""Fixtures of the DAG tests: an isolated Airflow home, Airflow's CLI, a throwaway PostgreSQL.

Airflow reads ``AIRFLOW_HOME`` when it is first imported and writes ``airflow.cfg`` there, so this
module points it at a temporary folder before any test imports Airflow (never the user's
``~/airflow``). Commands such as ``airflow dags test`` run as subprocesses with an explicit
environment built by :func:`airflow_env`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, in_ci, need_executable, unavailable

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_ID = "ml_pipeline"
PG_BIN = Path("/usr/lib/postgresql/15/bin")

# Airflow puts the DAG folder (bundle) on sys.path; the tests import its helpers the same way.
if str(DAGS) not in sys.path:
    sys.path.append(str(DAGS))

if "airflow" not in sys.modules:
    _IMPORT_HOME = tempfile.mkdtemp(prefix="mlp-airflow-import-")
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
# A throwaway PostgreSQL server on a free loopback port
# --------------------------------------------------------------------------------------------


class PostgresServer:
    def __init__(self, port: int):
        self.port = port

    def url(self, database: str, driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


def _server_user() -> dict[str, Any]:
    """``initdb`` refuses to run as root: as root, run the server as the ``postgres`` user."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        unavailable("the `postgres` system user", "apt-get install postgresql")
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        found = shutil.which("initdb") or shutil.which("pg_ctl")
        if not found:
            unavailable("PostgreSQL server binaries (initdb, postgres)", "apt-get install postgresql")
        initdb = Path(found).with_name("initdb")
    postgres_bin = initdb.with_name("postgres")
    try:
        import psycopg2
    except ImportError:
        unavailable("psycopg2", "pip install psycopg2-binary")
    root = Path(tempfile.mkdtemp(prefix="mlp-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    os.chmod(root, 0o755)  # noqa: S103 - the server user must reach its data folder
    subprocess.run(
        [str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        **_server_user(),
    )
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(
        [
            str(postgres_bin),
            "-D", str(data),
            "-h", "127.0.0.1",
            "-p", str(port),
            "-k", str(sockets),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        **_server_user(),
    )  # fmt: skip
    try:
        import psycopg2

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"PostgreSQL did not start:\n{(root / 'server.log').read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield PostgresServer(port)
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop cleanly
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


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


def ci_or_skip(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
