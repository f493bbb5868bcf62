"""The registry lock is keyed to the registry and checked before every write it protects.

Processes here are separate OS processes (as pods are) that share one real MLflow tracking server
(on PostgreSQL) and nothing else: each has its own pipeline home and its own feature store.

* Two processes with different feature stores but one tracking server exclude each other, and
  a restart of the tracking server while one holds the lock takes nothing from it.
* A holder that lost the lock (frozen past its lease: SIGSTOP, as a stalled node does) is refused
  at its next alias write with a retryable error, after a second process took the lock over and
  wrote; the second process's write stands.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Backends
from tests.services import unique

pytestmark = pytest.mark.integration

CONTEXT = multiprocessing.get_context("spawn")
WAIT = 180  # generous bound for a loaded machine; a broken lock fails the checks, not the clock


def _hold(env: dict[str, str], model: str, lease_s: float | None, events: dict[str, Any], out) -> None:
    """Take the registry lock of ``model``; on ``go``, check it and set ``champion`` to version 1."""
    os.environ.update(env)
    from pipeline.errors import RetryableError
    from pipeline.registry import registry_lock
    from pipeline.settings import Settings
    from pipeline.tracking import configure

    settings = Settings.load()
    kwargs = {} if lease_s is None else {"lease_s": lease_s}
    try:
        with registry_lock(settings, model, **kwargs) as lease:
            events["taken"].set()
            if not events["go"].wait(WAIT):
                out.put("never told to go")
                return
            lease.check()
            configure(settings).set_registered_model_alias(model, "champion", env["VERSION"])
            out.put("written")
    except RetryableError as exc:
        out.put(f"refused: {exc}")
    except Exception as exc:  # reported to the test, which fails on it
        out.put(f"error: {type(exc).__name__}: {exc}")


def _process(backends: Backends, home: Path, model: str, version: str, lease_s=None, **env: str):
    home.mkdir(parents=True, exist_ok=True)
    environment = {
        "PIPELINE_HOME": str(home),
        "MLFLOW_TRACKING_URI": backends.mlflow.url,
        "PIPELINE_MLFLOW_HTTP_MAX_RETRIES": "2",
        "VERSION": version,
        **env,
    }
    events = {"taken": CONTEXT.Event(), "go": CONTEXT.Event()}
    out = CONTEXT.Queue()
    process = CONTEXT.Process(target=_hold, args=(environment, model, lease_s, events, out))
    process.start()
    return process, events, out


@pytest.fixture
def model(mlflow_client_env: str) -> str:
    """A registered model with two versions, on the shared tracking server."""
    from mlflow import MlflowClient

    name = unique("lock-")
    client = MlflowClient(tracking_uri=mlflow_client_env, registry_uri=mlflow_client_env)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=f"s3://ml-pipeline/{name}/model")
    return name


def _taken(process, events: dict[str, Any], out) -> bool:
    """Whether the process took the lock (False, with what it reported, if it ended without)."""
    while not events["taken"].wait(1):
        if not process.is_alive():
            raise AssertionError(f"the process ended without the lock: {out.get(timeout=5)}")
    return True


def _champion(url: str, model: str) -> str:
    from mlflow import MlflowClient

    return str(
        MlflowClient(tracking_uri=url, registry_uri=url).get_model_version_by_alias(model, "champion").version
    )


def test_two_feature_stores_one_tracking_server_exclude_each_other(
    backends: Backends, tmp_path: Path, model: str, mlflow_client_env: str
) -> None:
    features = backends.postgres.create_database(unique("features_a_"))
    # A lease longer than a slow server restart: what is tested is that the lock is kept in the
    # registry's database, not in a connection or a process of the server.
    first, first_events, first_out = _process(
        backends, tmp_path / "a", model, "1", lease_s=900.0, PIPELINE_FEATURE_STORE_URL=features
    )
    try:
        assert _taken(first, first_events, first_out)
        # Another pipeline home, another feature store (SQLite in that home), the same registry.
        second, second_events, second_out = _process(
            backends, tmp_path / "b", model, "2", PIPELINE_REGISTRY_LOCK_TIMEOUT_S="2"
        )
        second.join(WAIT)
        assert not second_events["taken"].is_set(), "a second process took the lock while it was held"
        assert second_out.get(timeout=WAIT).startswith(
            f"refused: timed out after 2s waiting for the registry lock of {model!r}"
        )

        with backends.mlflow.stopped():  # the tracking server restarts while the lock is held
            pass
        first_events["go"].set()
        assert first_out.get(timeout=WAIT) == "written", "the lock did not survive a server restart"
        first.join(WAIT)
    finally:
        first_events["go"].set()
        first.join(WAIT)

    third, third_events, third_out = _process(backends, tmp_path / "b", model, "2")
    assert _taken(third, third_events, third_out), "the lock was not free once released"
    third_events["go"].set()
    assert third_out.get(timeout=WAIT) == "written"
    third.join(WAIT)
    assert _champion(mlflow_client_env, model) == "2"


def test_a_holder_that_lost_the_lock_is_refused_before_its_alias_write(
    backends: Backends, tmp_path: Path, model: str, mlflow_client_env: str
) -> None:
    lease_s = 4.0
    stale, stale_events, stale_out = _process(backends, tmp_path / "a", model, "1", lease_s=lease_s)
    try:
        assert _taken(stale, stale_events, stale_out)
        os.kill(stale.pid, signal.SIGSTOP)  # frozen: its heartbeat stops, its lease runs out
        taker, taker_events, taker_out = _process(backends, tmp_path / "b", model, "2", lease_s=lease_s)
        assert _taken(taker, taker_events, taker_out), "no second process took over the expired lease"
        taker_events["go"].set()
        assert taker_out.get(timeout=WAIT) == "written"
        taker.join(WAIT)
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    stale_events["go"].set()
    outcome = stale_out.get(timeout=WAIT)
    assert outcome.startswith(f"refused: the registry lock of {model!r} was lost before a write"), outcome
    stale.join(WAIT)
    assert stale.exitcode == 0
    assert _champion(mlflow_client_env, model) == "2", "the holder that lost the lock wrote anyway"


def test_a_killed_advisory_lock_session_is_detected_before_the_next_write(backends: Backends) -> None:
    """The same check on :func:`pipeline.locks.shared_lock` (the sweep's trial reservation): a
    PostgreSQL session lock vanishes with its session; the holder's next ``check()`` says so."""
    from pipeline.locks import LockLostError, shared_lock

    database = unique("locks_")
    url = backends.postgres.create_database(database)
    unused = Path("/nonexistent/unused.lock")
    with shared_lock(url, "k", unused, timeout=5, what="the lock 'k'") as held:
        held.check()  # held: passes
        killed = backends.postgres.query(
            database, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
        )
        assert killed == [(True,)]
        with shared_lock(url, "k", unused, timeout=5, what="the lock 'k'"):
            pass  # another process may take it now
        with pytest.raises(LockLostError, match="the lock 'k' was lost: the PostgreSQL session"):
            held.check()
