"""``shared_lock``: the one cross-process lock behind the registry's compare-and-set on
``champion`` and the sweep's trial reservation (count the study's trials, then start one).

A lock held here must keep a second *process* (another run, another sweep worker, as a pod would
be) out until it is released, on both backends: a file lock on one machine and a PostgreSQL
advisory lock across a cluster; a lock on another key must not wait; a wait past the timeout is
a retryable error naming the lock.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from pipeline.errors import RetryableError
from pipeline.locks import shared_lock
from pipeline.settings import Settings
from pipeline.sweep import trial_reservation
from tests.services import postgres_server
from tests.support import free_port

CONTEXT = multiprocessing.get_context("spawn")
WAIT = 120  # generous bounds for a loaded machine; a broken lock fails the checks, not the clock


def _take(url: str, key: str, lock_file: str, started, taken, errors) -> None:
    started.set()
    try:
        with shared_lock(url, key, Path(lock_file), timeout=1.0, what=f"the lock {key!r}"):
            taken.set()
    except RetryableError as exc:
        errors.put(str(exc))


def _other_process(url: str, key: str, lock_file: Path):
    started, taken, errors = CONTEXT.Event(), CONTEXT.Event(), CONTEXT.Queue()
    process = CONTEXT.Process(target=_take, args=(url, key, str(lock_file), started, taken, errors))
    process.start()
    assert started.wait(WAIT), "the second process did not start"
    return process, taken, errors


def _assert_exclusive_across_processes(url: str, lock_file: Path) -> None:
    with shared_lock(url, "k", lock_file, timeout=5, what="the lock 'k'"):
        process, taken, errors = _other_process(url, "k", lock_file)
        process.join(WAIT)
        assert not taken.is_set(), "a second process took the lock while it was held"
        assert errors.get(timeout=WAIT) == "timed out after 1s waiting for the lock 'k'"

        other, taken_other, _ = _other_process(url, "another-key", lock_file.with_name("another.lock"))
        assert taken_other.wait(WAIT), "a lock on another key waited on this one"
        other.join(WAIT)

    process, taken, errors = _other_process(url, "k", lock_file)
    assert taken.wait(WAIT), "the second process never got the released lock"
    process.join(WAIT)
    assert process.exitcode == 0 and errors.empty()


def test_file_lock_excludes_a_second_process(tmp_path: Path) -> None:
    _assert_exclusive_across_processes(f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "locks" / "k.lock")
    assert (tmp_path / "locks" / "k.lock").exists()


@pytest.mark.integration
def test_advisory_lock_excludes_a_second_process() -> None:
    with postgres_server() as server:
        url = server.create_database("locks")
        _assert_exclusive_across_processes(url, Path("/nonexistent/unused.lock"))
        # released on the server: no advisory lock is left behind
        assert server.query("locks", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]


def test_advisory_lock_on_an_unreachable_server_is_a_retryable_error(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"
    lock = shared_lock(url, "k", tmp_path / "k.lock", timeout=5, what="the lock 'k'")
    with pytest.raises(RetryableError, match="the lock 'k': PostgreSQL unreachable"), lock:
        pass


def test_trial_reservation_is_per_study_beside_the_sqlite_study(home: Path) -> None:
    settings = Settings.load()
    with trial_reservation(settings, "sweep-a"):
        # the same study is taken; another study's sweep does not wait
        study_file = home / "optuna.db"
        lock_file = Path(f"{study_file}.sweep-a.lock")
        process, taken, errors = _other_process(f"sqlite:///{study_file}", "x", lock_file)
        process.join(WAIT)
        assert not taken.is_set() and "timed out" in errors.get(timeout=WAIT)
        with trial_reservation(settings, "sweep-b"):
            pass
