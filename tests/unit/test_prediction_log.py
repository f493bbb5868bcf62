"""The prediction log's writer: batched, bounded, never failing the caller, and honest on close."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline.errors import BadInputError
from pipeline.serve.predlog import (
    Entry,
    PredictionLogger,
    create_engine,
    feedback_table,
    log_table,
    now,
    read_feedback,
    write_feedback,
)


def entry(request_id: str, rows: int = 1, version: str = "1") -> Entry:
    inputs = [{"x": float(i), "c": "a"} for i in range(rows)]
    outputs = [{"prediction": "yes", "probability_yes": 0.5 + i / 100} for i in range(rows)]
    return Entry(request_id, now(), "m", version, inputs, outputs)


def stored(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(
                log_table.c.request_id, log_table.c.row, log_table.c.model_version, log_table.c.outputs
            ).order_by(log_table.c.request_id, log_table.c.row)
        ).all()


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return create_engine(f"sqlite:///{tmp_path / 'features.db'}")


def test_rows_reach_the_table_with_their_request_version_and_outputs(engine: sa.Engine) -> None:
    log = PredictionLogger(engine, batch_rows=1000, flush_s=60)
    assert log.submit(entry("r1", rows=2, version="3"))
    assert log.submit(entry("r2"))
    report = log.close()
    assert report["written_rows"] == 3 and report["unwritten_rows"] == 0
    rows = stored(engine)
    assert [(r[0], r[1], r[2]) for r in rows] == [("r1", 0, "3"), ("r1", 1, "3"), ("r2", 0, "1")]
    assert '"probability_yes": 0.51' in rows[1][3]


def test_a_full_batch_is_written_without_waiting_for_the_timer() -> None:
    batches: list[int] = []
    log = PredictionLogger(None, batch_rows=4, flush_s=3600, write=lambda rows: batches.append(len(rows)))
    for i in range(4):
        log.submit(entry(f"r{i}"))
    wait_for(lambda: batches == [4])
    log.close()


def test_the_timer_flushes_a_partial_batch() -> None:
    batches: list[int] = []
    log = PredictionLogger(None, batch_rows=1000, flush_s=0.1, write=lambda rows: batches.append(len(rows)))
    log.submit(entry("r1", rows=2))
    wait_for(lambda: batches == [2])
    assert log.close()["unwritten_rows"] == 0


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    release = threading.Event()
    written: list[int] = []

    def slow_store(rows):
        release.wait(30)
        written.append(len(rows))

    log = PredictionLogger(None, max_queue=2, batch_rows=1, flush_s=0.01, write=slow_store)
    results = [log.submit(entry(f"r{i}", rows=2)) for i in range(10)]
    assert results.count(False) >= 7  # the writer holds at most one, the queue two
    dropped = log.stats()["dropped_rows_queue_full"]
    assert dropped == 2 * results.count(False)
    release.set()
    report = log.close()
    assert report["submitted_rows"] == 20
    assert report["written_rows"] == sum(written) == 20 - dropped
    assert report["unwritten_rows"] == dropped


def test_a_failing_store_never_raises_and_every_lost_row_is_counted(caplog) -> None:
    def broken(rows):
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    log = PredictionLogger(None, batch_rows=1, flush_s=0.01, write=broken)
    for i in range(3):
        assert log.submit(entry(f"r{i}")) is True
    report = log.close()
    assert report["failed_rows_write_error"] == 3 and report["written_rows"] == 0
    assert report["unwritten_rows"] == 3
    assert "disk I/O error" in report["last_error"]
    assert "3 of 3 row(s) were not written" in caplog.text


def test_a_dropped_table_is_counted_once_then_recreated(engine: sa.Engine) -> None:
    log = PredictionLogger(engine, batch_rows=1, flush_s=0.01)
    log.submit(entry("before"))
    wait_for(lambda: log.stats()["written_rows"] == 1)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE prediction_log"))
    log.submit(entry("lost"))
    wait_for(lambda: log.stats()["failed_rows_write_error"] == 1)
    log.submit(entry("after"))
    report = log.close()
    assert report["written_rows"] == 2 and report["failed_rows_write_error"] == 1
    assert [r[0] for r in stored(engine)] == ["after"]


def test_close_writes_everything_still_queued(engine: sa.Engine) -> None:
    log = PredictionLogger(engine, batch_rows=10_000, flush_s=3600)
    for i in range(50):
        log.submit(entry(f"r{i:02d}"))
    report = log.close()
    assert report["written_rows"] == 50 and report["unwritten_rows"] == 0
    assert len(stored(engine)) == 50
    assert log.submit(entry("late")) is False  # closed: refused and counted, not lost silently
    assert log.stats()["dropped_rows_queue_full"] == 1


# ---- feedback -------------------------------------------------------------------------------


def test_feedback_joins_and_is_idempotent(engine: sa.Engine, tmp_path: Path) -> None:
    log = PredictionLogger(engine)
    log.submit(entry("r1", rows=2))
    log.close()
    path = tmp_path / "labels.csv"
    pd.DataFrame(
        {"request_id": ["r1", "r1", "unknown"], "row": [0, 1, 0], "species": ["a", "b", "c"]}
    ).to_csv(path, index=False)
    labels = read_feedback(path, "species")
    first = write_feedback(engine, labels)
    assert first == {"labels": 3, "matched_predictions": 2, "unmatched": 1}
    assert write_feedback(engine, read_feedback(path, "species")) == first
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(feedback_table.c.request_id, feedback_table.c.row, feedback_table.c.label).order_by(
                feedback_table.c.request_id, feedback_table.c.row
            )
        ).all()
    assert rows == [("r1", 0, '"a"'), ("r1", 1, '"b"'), ("unknown", 0, '"c"')]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"request_id": ["r1"]}), "missing column 'species'"),
        (pd.DataFrame({"species": ["a"]}), "missing column 'request_id'"),
        (
            pd.DataFrame({"request_id": ["r1", None], "species": ["a", "b"]}),
            "line 3: column 'request_id' is empty",
        ),
        (pd.DataFrame({"request_id": ["r1", "r2"], "species": ["a", None]}), "line 3: column 'species'"),
        (
            pd.DataFrame({"request_id": ["r1", "r1"], "species": ["a", "b"]}),
            "line 3: request 'r1' row 0 is labelled twice",
        ),
        (pd.DataFrame({"request_id": ["r1"], "row": [-1], "species": ["a"]}), "line 2: column 'row' must be"),
    ],
)
def test_bad_feedback_names_the_file_line_and_column(
    tmp_path: Path, frame: pd.DataFrame, message: str
) -> None:
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(BadInputError, match=r"labels\.csv") as caught:
        read_feedback(path, "species")
    assert message in str(caught.value)


def test_a_missing_feedback_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"feedback file '.*nope.csv' does not exist"):
        read_feedback(tmp_path / "nope.csv", "species")
