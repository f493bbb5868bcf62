"""The prediction log: one row per predicted input row, in the feature store's database.

Tables (declared once here):

* ``prediction_log`` — ``(request_id, row)`` key, ``logged_at`` (UTC), ``model_name``,
  ``model_version``, ``inputs`` and ``outputs`` (JSON objects of the row's columns).
* ``prediction_feedback`` — the late labels: ``(request_id, row)`` key, ``label`` (JSON),
  ``received_at``. :func:`write_feedback` replaces the labels of the keys it writes, so a re-run
  of the same file changes nothing.

:class:`PredictionLogger` never blocks or fails a prediction: :meth:`~PredictionLogger.submit`
puts the request's rows on a bounded queue (or counts them as dropped when it is full); a
background thread writes them in batches (every ``batch_rows`` rows or ``flush_s`` seconds). A
failed write is counted and logged, and the tables are re-created before the next one (a dropped
table heals). :meth:`~PredictionLogger.close` flushes what is queued and reports what could not be
written.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

logger = logging.getLogger("pipeline.serve")

LOG_TABLE = "prediction_log"
FEEDBACK_TABLE = "prediction_feedback"

metadata = sa.MetaData()
log_table = sa.Table(
    LOG_TABLE,
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
)
feedback_table = sa.Table(
    FEEDBACK_TABLE,
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


# A late label belongs to the logged row with its request id and row number.
LABEL_OF_ROW = sa.and_(
    feedback_table.c.request_id == log_table.c.request_id, feedback_table.c.row == log_table.c.row
)


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: numpy scalars unwrapped, NaN/inf as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(record: dict[str, Any]) -> str:
    return json.dumps({str(k): _plain(v) for k, v in record.items()}, sort_keys=True, default=str)


def json_rows(frame: Any) -> list[str]:
    """Each row of a DataFrame as a JSON object (pandas' C encoder: missing values are null)."""
    if frame.empty:
        return []
    return frame.to_json(orient="records", lines=True, double_precision=15).rstrip("\n").split("\n")


def create_engine(url: str) -> sa.Engine:
    from pipeline.featurestore import BACKENDS

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    backend = BACKENDS.get(sa.engine.make_url(url).get_backend_name())
    if backend is not None and backend.connect_args:
        kwargs["connect_args"] = dict(backend.connect_args)
    return sa.create_engine(url, **kwargs)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC, the zone the log's times are stored and compared in: SQLite keeps a
    datetime's wall time and drops its offset, so 14:00+02:00 would be stored, or compared, as
    14:00 UTC. A naive moment is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def migrate(engine: sa.Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


@dataclass
class Entry:
    """One request's rows, as the writer stores them."""

    request_id: str
    logged_at: datetime
    model_name: str
    model_version: str
    inputs: list[dict[str, Any]] | list[str]  # one object per row, or its JSON text
    outputs: list[dict[str, Any]] | list[str]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "request_id": self.request_id,
                "row": i,
                "logged_at": utc(self.logged_at),
                "model_name": self.model_name,
                "model_version": self.model_version,
                "inputs": x if isinstance(x, str) else to_json(x),
                "outputs": y if isinstance(y, str) else to_json(y),
            }
            for i, (x, y) in enumerate(zip(self.inputs, self.outputs, strict=True))
        ]


@dataclass
class Counters:
    submitted: int = 0  # rows handed to submit()
    written: int = 0  # rows stored
    dropped_queue_full: int = 0  # rows refused because the queue was full
    failed_write: int = 0  # rows whose batch failed to write
    write_errors: int = 0  # failed batch writes
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "submitted_rows": self.submitted,
                "written_rows": self.written,
                "dropped_rows_queue_full": self.dropped_queue_full,
                "failed_rows_write_error": self.failed_write,
                "write_errors": self.write_errors,
                "last_error": self.last_error,
            }


class PredictionLogger:
    """Bounded, batched, never-blocking writer of the prediction log.

    ``write`` (rows -> None) stores one batch; by default an insert into ``prediction_log`` through
    ``engine``. ``max_queue`` bounds the requests waiting in memory.
    """

    def __init__(
        self,
        engine: sa.Engine | None,
        *,
        max_queue: int = 1000,
        batch_rows: int = 500,
        flush_s: float = 1.0,
        write: Any = None,
    ):
        self.engine = engine
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.counters = Counters()
        self._queue: queue.Queue[Entry] = queue.Queue(maxsize=max_queue)
        self._write = write or self._insert
        self._migrated = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    # producer side ----------------------------------------------------------------------------

    def submit(self, entry: Entry) -> bool:
        """Queue ``entry``; False (and counted) when the queue is full or the logger is closed."""
        n = len(entry.inputs)
        with self.counters.lock:
            self.counters.submitted += n
        if self._stop.is_set():
            self._count_dropped(n, "the prediction log is closed")
            return False
        try:
            self._queue.put_nowait(entry)
            return True
        except queue.Full:
            self._count_dropped(n, f"the prediction log queue is full ({self._queue.maxsize} requests)")
            return False

    def _count_dropped(self, n: int, why: str) -> None:
        with self.counters.lock:
            first = self.counters.dropped_queue_full == 0
            self.counters.dropped_queue_full += n
            total = self.counters.dropped_queue_full
        if first or total % 1000 < n:
            logger.warning("prediction log: %d row(s) not logged: %s (%d so far)", n, why, total)

    # writer side ------------------------------------------------------------------------------

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        assert self.engine is not None
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True
        with self.engine.begin() as connection:
            connection.execute(log_table.insert(), rows)

    def _flush(self, batch: list[Entry]) -> None:
        rows = [row for entry in batch for row in entry.rows()]
        if not rows:
            return
        try:
            self._write(rows)
        except Exception as exc:  # a failing log store never fails a prediction: count and report
            self._migrated = False  # re-create the tables before the next write (a dropped table heals)
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            with self.counters.lock:
                self.counters.failed_write += len(rows)
                self.counters.write_errors += 1
                self.counters.last_error = message[:500]
                total = self.counters.failed_write
            logger.error(
                "prediction log: %d row(s) could not be written (%d so far): %s", len(rows), total, message
            )
            return
        with self.counters.lock:
            self.counters.written += len(rows)

    def _run(self) -> None:
        batch: list[Entry] = []
        rows = 0
        deadline = time.monotonic() + self.flush_s
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                entry = self._queue.get(timeout=timeout)
                batch.append(entry)
                rows += len(entry.inputs)
            except queue.Empty:
                pass
            stopping = self._stop.is_set() and self._queue.empty()
            if rows >= self.batch_rows or time.monotonic() >= deadline or stopping:
                self._flush(batch)
                batch, rows = [], 0
                deadline = time.monotonic() + self.flush_s
            if stopping:
                return

    def close(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop accepting, write what is queued (within ``timeout_s``), and report: the counters
        plus ``unwritten_rows`` (everything submitted and not stored, whatever the reason)."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("prediction log: the writer did not finish within %.0fs", timeout_s)
        report = self.counters.snapshot()
        report["unwritten_rows"] = report["submitted_rows"] - report["written_rows"]
        if report["unwritten_rows"]:
            logger.error(
                "prediction log: %d of %d row(s) were not written (%d dropped: queue full or closed, "
                "%d failed to write, %d still queued at shutdown)",
                report["unwritten_rows"],
                report["submitted_rows"],
                report["dropped_rows_queue_full"],
                report["failed_rows_write_error"],
                report["unwritten_rows"]
                - report["dropped_rows_queue_full"]
                - report["failed_rows_write_error"],
            )
        else:
            logger.info("prediction log: all %d row(s) written", report["submitted_rows"])
        if self.engine is not None:
            self.engine.dispose()
        return report

    def stats(self) -> dict[str, Any]:
        report = self.counters.snapshot()
        report["queued_requests"] = self._queue.qsize()
        return report


def now() -> datetime:
    return datetime.now(UTC)


# ---- late labels ----------------------------------------------------------------------------


def read_feedback(path: Any, target: str, key: str = "request_id") -> list[dict[str, Any]]:
    """The labels of a CSV or Parquet file: ``key`` (the request id), the ``target`` column and an
    optional ``row`` (the row within the request, default 0). Raises
    :class:`pipeline.errors.BadInputError` naming the file, row and column of what is wrong."""
    from pathlib import Path

    import pandas as pd

    from pipeline.errors import BadInputError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"feedback file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={key: str})
    except Exception as exc:
        raise BadInputError(
            f"feedback file {str(path)!r} cannot be read: {type(exc).__name__}: {exc}"
        ) from None
    for column in (key, target):
        if column not in frame.columns:
            raise BadInputError(
                f"feedback file {str(path)!r}: missing column {column!r} (columns: {list(frame.columns)})"
            )
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, int], int] = {}
    for i, record in enumerate(frame.to_dict(orient="records")):
        parquet = path.suffix.lower() in (".parquet", ".pq")
        line = i if parquet else i + 2  # a CSV row is named by its line (the header is line 1)
        where = f"feedback file {str(path)!r} " + (f"row {line}" if parquet else f"line {line}")
        request_id = record[key]
        if request_id is None or (isinstance(request_id, float) and math.isnan(request_id)):
            raise BadInputError(f"{where}: column {key!r} is empty")
        request_id = str(request_id).strip()
        if not request_id or len(request_id) > 128:
            raise BadInputError(f"{where}: column {key!r} must be 1 to 128 characters")
        row = 0
        if "row" in frame.columns:
            value = record["row"]
            try:
                row = int(value)
                if row != value or row < 0:
                    raise ValueError
            except (TypeError, ValueError):
                raise BadInputError(
                    f"{where}: column 'row' must be a non-negative integer, got {value!r}"
                ) from None
        label = _plain(record[target])
        if label is None or (isinstance(label, float) and math.isnan(label)):
            raise BadInputError(f"{where}: column {target!r} (the label) is empty")
        if (request_id, row) in seen:
            raise BadInputError(
                f"{where}: request {request_id!r} row {row} is labelled twice "
                f"(first at row {seen[(request_id, row)]})"
            )
        seen[(request_id, row)] = line
        rows.append({"request_id": request_id, "row": row, "label": json.dumps(label)})
    return rows


def write_feedback(engine: sa.Engine, labels: list[dict[str, Any]]) -> dict[str, int]:
    """Store ``labels`` in one transaction, replacing earlier labels of the same keys (so a re-run
    is idempotent). Returns how many rows were written and how many match a logged prediction."""
    migrate(engine)
    received = now()
    with engine.begin() as connection:
        for start in range(0, len(labels), 500):
            chunk = labels[start : start + 500]
            keys = [(r["request_id"], r["row"]) for r in chunk]
            connection.execute(
                feedback_table.delete().where(
                    sa.tuple_(feedback_table.c.request_id, feedback_table.c.row).in_(keys)
                )
            )
            connection.execute(feedback_table.insert(), [{**r, "received_at": received} for r in chunk])
        matched = (
            connection.execute(
                sa.select(sa.func.count())
                .select_from(
                    feedback_table.join(
                        log_table,
                        LABEL_OF_ROW,
                    )
                )
                .where(feedback_table.c.request_id.in_({r["request_id"] for r in labels}))
            ).scalar_one()
            if labels
            else 0
        )
    return {
        "labels": len(labels),
        "matched_predictions": int(matched),
        "unmatched": len(labels) - int(matched),
    }
