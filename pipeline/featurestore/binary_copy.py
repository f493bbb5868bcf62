"""Frames in PostgreSQL's binary COPY format, encoded from Arrow chunk by chunk (pgpq)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pipeline.featurestore.rows import FeatureRows
from pipeline.featurestore.schema import COLUMN_TYPES, TEXT

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COPY_CHUNK_ROWS = 65_536


def arrow_chunk(frame: pd.DataFrame, schema: dict[str, str]):
    """Rows of ``frame`` as an Arrow table whose types match the SQL columns exactly (binary COPY
    has no implicit casts): float -> float64, int -> int64, bool, anything else -> text. NaN and
    None become NULL."""
    import pyarrow as pa

    arrays = []
    for name, kind in schema.items():
        series = frame[name]
        if kind == TEXT and series.dtype.kind not in "OSU" and str(series.dtype) not in ("str", "string"):
            series = series.astype("str").where(series.notna(), None)
        elif kind == "double precision" and series.dtype.kind in "iu":
            series = series.astype("float64")  # a chunk without the nulls of a column read as floats
        try:
            arrays.append(pa.array(series, type=COLUMN_TYPES[kind].arrow_type(), from_pandas=True))
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            if kind != TEXT:
                raise
            # objects that are not all strings (booleans with a missing value): their text
            text = series.map(lambda v: v if v is None or isinstance(v, str) else str(v))
            arrays.append(
                pa.array(text.where(series.notna()), type=COLUMN_TYPES[kind].arrow_type(), from_pandas=True)
            )
    return pa.Table.from_arrays(arrays, names=list(schema))


class _CopyStream(io.RawIOBase):
    """A file-like object yielding the rows (a frame, or :class:`FeatureRows` read a chunk at a
    time) in PostgreSQL's binary COPY format, chunk by chunk; ``rows_sent`` counts them.

    ``copy_expert`` pulls from it, so memory stays bounded by a few chunks instead of the whole
    table's encoding. A background thread converts each chunk to Arrow and encodes it (pgpq, an
    Arrow-to-PostgreSQL binary encoder) while PostgreSQL ingests the previous one; binary COPY
    spares the server the parsing of numbers from text, its main cost with CSV.
    """

    def __init__(
        self,
        frame: pd.DataFrame | FeatureRows,
        schema: dict[str, str],
        chunk_rows: int = COPY_CHUNK_ROWS,
        prefetch: int = 2,
    ):
        import queue

        super().__init__()
        self._rows = FeatureRows.of(frame)
        self.rows_sent = 0
        self._schema = schema
        self._chunk_rows = chunk_rows
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._chunk = b""
        self._offset = 0
        self._done = False
        self._thread = threading.Thread(target=self._produce, name="copy-encoder", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        import pyarrow as pa
        from pgpq import ArrowToPostgresBinaryEncoder

        columns = [pa.field(name, COLUMN_TYPES[kind].arrow_type()) for name, kind in self._schema.items()]
        encoder = ArrowToPostgresBinaryEncoder(pa.schema(columns))
        yield bytes(encoder.write_header())
        for part in self._rows.chunks(self._chunk_rows):
            table = arrow_chunk(part, self._schema)
            yield b"".join(bytes(encoder.write_batch(batch)) for batch in table.to_batches())
            self.rows_sent += len(part)
        yield bytes(encoder.finish())

    def _put(self, item: bytes | BaseException | None) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for chunk in self._chunks():
                if not self._put(chunk):
                    return  # the reader gave up (the COPY failed)
            self._put(None)
        except BaseException as exc:  # surfaced to the reader
            self._put(exc)

    def close(self) -> None:
        """Stop the encoder thread (also when the COPY failed half-way)."""
        self._stop.set()
        self._thread.join(timeout=10)
        super().close()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes of the current chunk (fewer is fine: empty means the end)."""
        while self._offset >= len(self._chunk):
            if self._done:
                return b""
            item = self._queue.get()
            if item is None:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                raise item
            self._chunk, self._offset = item, 0
        end = len(self._chunk) if size is None or size < 0 else min(len(self._chunk), self._offset + size)
        data = self._chunk[self._offset : end]
        self._offset = end
        return data
