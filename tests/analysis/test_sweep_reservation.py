"""Shared workers never start more trials than the budget: "count, then start a trial" is atomic.

``TrialReservation`` is held by one worker from counting the study's trials until Optuna has
created the new trial as RUNNING. These tests hold it in this process and show that a second
process (another worker, as a pod would be) cannot take it until it is released, on SQLite (a file
lock beside the study file) and on PostgreSQL (a session advisory lock).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tests.services import postgres_server


def _take(url: str, name: str, started, taken) -> None:
    import optuna

    from pipeline.sweep import TrialReservation

    reservation = TrialReservation(optuna.storages.RDBStorage(url), name)
    started.set()
    reservation.acquire()
    taken.set()
    reservation.release()


def _assert_exclusive(url: str) -> None:
    import optuna

    from pipeline.sweep import TrialReservation

    reservation = TrialReservation(optuna.storages.RDBStorage(url), "sweep-reservation")
    context = multiprocessing.get_context("spawn")
    started, taken = context.Event(), context.Event()
    reservation.acquire()
    reservation.acquire()  # idempotent: a second acquire by the holder does not deadlock it
    other = context.Process(target=_take, args=(url, "sweep-reservation", started, taken))
    other.start()
    try:
        assert started.wait(120), "the second worker process did not start"
        # Not a speed check: a working lock keeps the other process waiting however long we look.
        assert not taken.wait(2), "a second worker took the reservation while it was held"
        reservation.release()
        assert taken.wait(120), "the second worker never got the released reservation"
        other.join(60)
        assert other.exitcode == 0
    finally:
        reservation.release()
        if other.is_alive():
            other.kill()


def _assert_other_studies_do_not_wait(url: str) -> None:
    """On PostgreSQL the lock is per study: sweeps of different runs do not wait on each other.
    (On SQLite it is per study file, and held only while a trial is created.)"""
    import optuna

    from pipeline.sweep import TrialReservation

    reservation = TrialReservation(optuna.storages.RDBStorage(url), "sweep-reservation")
    context = multiprocessing.get_context("spawn")
    started, taken = context.Event(), context.Event()
    reservation.acquire()
    try:
        unrelated = context.Process(target=_take, args=(url, "sweep-other-run", started, taken))
        unrelated.start()
        assert taken.wait(120), "a sweep of another run waited on this one's reservation"
        unrelated.join(60)
        assert unrelated.exitcode == 0
    finally:
        reservation.release()


def test_the_reservation_excludes_a_second_worker_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _assert_exclusive(url)
    assert (tmp_path / "optuna.db.trials.lock").exists()


@pytest.mark.integration
def test_the_reservation_excludes_a_second_worker_on_postgresql() -> None:
    with postgres_server() as server:
        url = server.create_database("study")
        _assert_exclusive(url)
        _assert_other_studies_do_not_wait(url)
        # released on the server too: no advisory lock is left behind
        assert server.query("study", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
