"""A snapshot read a batch of rows at a time: the frames :func:`pipeline.tabular.read_table_file`'s
DataFrame is made of, never holding the whole table.

``pd.concat(iter_table_frames(...), ignore_index=True)`` equals ``read_table_file(...)`` (names,
order, dtypes, values; each frame has a RangeIndex from 0, a stored pandas index is not kept) and
the files it refuses are refused with its errors, by the call, before any frame: a first pass
learns what the whole read knows of the file (its types, nulls, categories), a second yields.

CSV: pyarrow's streaming reader keeps the types it inferred from the first block where ``read_csv``
(the whole read's fallback) widens one a later block does not fit. A column that fails to convert
is typed by ``read_csv`` of that column alone (its values, verbatim, as a CSV text of their own),
pinned, and the pass starts again. That type is the first of Arrow's inference order (null,
integer, boolean, dates and times, float, text, bytes) that converts every value: where the blocks
end does not change it. The streams read blocks of ``SMALL_BLOCK`` (pyarrow reads up to 32 ahead),
the whole read's when a row does not fit one. An integer column with a null anywhere is float64 in
every frame, a boolean one object (pyarrow's conversion of the whole column); a Parquet dictionary
column has the whole read's categories (the batches' dictionaries unified in order).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import tabular
from pipeline.errors import BadInputError
from pipeline.tabular import _BadRows, _check_columns, _final_names, _parse_options, _read_options

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

    from pipeline.settings import CsvOptions

FAILED_COLUMN = re.compile(r"In CSV column #(\d+)")
SMALL_BLOCK = 1 << 20  # the streams' blocks, unless a row is longer
SCAN_BATCH_ROWS = 1 << 16


def iter_table_frames(
    path: Path, label: str, fmt: str, options: CsvOptions, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """``read_table_file(path, label, fmt, options, columns)``'s rows as DataFrames of at most
    ``batch_rows`` rows (at least one; one empty frame for a Parquet file without rows) with its
    column names and dtypes, each indexed from 0. A file it refuses is refused here (by the call)."""
    source = table_batches(path, label, fmt, options, batch_rows)
    return (to_frame(table, source.widen) for table in source.batches(columns))


@dataclass(frozen=True)
class TableBatches:
    """A snapshot whose first pass is done (its types, nulls and categories learned): its second
    pass on demand, as Arrow tables of at most ``batch_rows`` rows with every type pinned;
    :func:`to_frame` makes each the DataFrame the whole read holds for those rows. ``names``:
    the columns of the file, in its order."""

    names: list[str]
    widen: dict[str, str]
    stream: Callable[[list[str] | None], Iterator[pa.Table]]

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """One more pass over the rows (``columns``: only those, in the file's order)."""
        return self.stream(columns)


def table_batches(path: Path, label: str, fmt: str, options: CsvOptions, batch_rows: int) -> TableBatches:
    """The first pass over ``path`` (refusing what :func:`~pipeline.tabular.read_table_file`
    refuses, with its errors), ready for second passes."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    if fmt == "parquet":
        return _parquet_frames(path, label, batch_rows)
    return _csv_frames(path, label, options, batch_rows)


def to_frame(table: pa.Table, widen: dict[str, str]) -> pd.DataFrame:
    """The DataFrame the whole read holds for the rows of ``table`` (a batch of
    :meth:`TableBatches.batches`, or any selection of its columns and rows), indexed from 0."""
    return _frame(table, {name: dtype for name, dtype in widen.items() if name in table.column_names})


def _widened(types: dict[str, pa.DataType], nulls: dict[str, int]) -> dict[str, str]:
    import pyarrow as pa

    return {
        name: "float64" if pa.types.is_integer(kind) else "object"
        for name, kind in types.items()
        if nulls.get(name) and (pa.types.is_integer(kind) or pa.types.is_boolean(kind))
    }


def _frame(table: pa.Table, widen: dict[str, str]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    frame = table.to_pandas(split_blocks=True)
    for name, dtype in widen.items():
        if isinstance(frame[name].dtype, np.dtype) and frame[name].dtype != dtype:  # not Int64 & co.
            frame[name] = frame[name].astype(dtype)
    frame.index = pd.RangeIndex(len(frame))
    return frame


# -- CSV -----------------------------------------------------------------------------------------


def _convert(options: CsvOptions, **more):
    """The conversion options :func:`pipeline.tabular._parse_csv` reads with, and ``more``."""
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(
        null_values=options.na_values, strings_can_be_null=True, quoted_strings_can_be_null=True, **more
    )


@contextlib.contextmanager
def _open(path: Path, options: CsvOptions, block: int, bad: _BadRows, convert):
    """pyarrow's streaming reader of ``path``, in blocks of ``block`` bytes."""
    import pyarrow.csv as pacsv

    read = _read_options(options)
    read.block_size = block
    with pacsv.open_csv(str(path), read, _parse_options(options, bad.record), convert) as reader:
        yield reader


def _csv_type(path: Path, options: CsvOptions, block: int, bad: _BadRows, name: str) -> pa.DataType:
    """Column ``name``'s type as ``read_csv`` infers it: ``read_csv`` of that column alone (its
    values, verbatim, as a CSV text of their own), holding the column and one block of the file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    raw = _convert(options, include_columns=[name], column_types={name: pa.binary()})
    raw.null_values, raw.strings_can_be_null = [], False
    text = io.BytesIO()
    text.write(b'"v"\n')
    with _open(path, options, block, bad, raw) as reader:
        for values in (batch[0] for batch in reader if batch.num_rows):
            lines = pc.binary_join_element_wise(b'"', pc.replace_substring(values, b'"', b'""'), b'"\n', b"")
            start, end = np.frombuffer(lines.buffers()[1], np.int32)[
                [lines.offset, lines.offset + len(lines)]
            ]
            text.write(memoryview(lines.buffers()[2]).cast("B")[start:end])
    read = pacsv.ReadOptions(use_threads=False, block_size=tabular.CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    table = pacsv.read_csv(pa.BufferReader(text.getbuffer()), read, parse, _convert(options))
    return table.schema.types[0]


def _csv_scan(path: Path, label: str, options: CsvOptions):
    """``(block, schema, rows, nulls per column)`` of the whole read (the file's names in the
    schema), streaming; the whole read's blocks when ``SMALL_BLOCK`` fails (then its error)."""
    import pyarrow as pa

    pinned: dict[str, pa.DataType] = {}
    block = min(SMALL_BLOCK, tabular.CSV_BLOCK_BYTES)
    while True:
        bad, names = _BadRows(label, options), []
        try:
            with _open(path, options, block, bad, _convert(options, column_types=pinned)) as reader:
                names = list(reader.schema.names)
                if len(set(names)) < len(names) and not pinned:  # a repeated name cannot be pinned:
                    pinned = dict.fromkeys(names, pa.binary())  # bytes, to find a bad row (first)
                    continue
                rows, nulls = 0, [0] * len(names)
                for batch in reader:
                    rows += batch.num_rows
                    nulls = [n + column.null_count for n, column in zip(nulls, batch.columns, strict=True)]
                return block, reader.schema, rows, nulls
        except pa.ArrowInvalid as exc:
            error = exc
            found = FAILED_COLUMN.search(str(exc))
            if "conversion error" in str(exc).lower() and found and names:
                name = names[int(found[1])]
                try:
                    if name not in pinned:  # else no progress: refused below
                        pinned[name] = _csv_type(path, options, block, bad, name)
                        continue
                except pa.ArrowInvalid as side:  # a bad row later in the file
                    error = side
        if block < tabular.CSV_BLOCK_BYTES:
            block = tabular.CSV_BLOCK_BYTES
        else:
            raise bad.error(error, lambda: None) from None


def _csv_frames(path: Path, label: str, options: CsvOptions, batch_rows: int) -> TableBatches:
    import pyarrow as pa

    block, schema, rows, nulls = _csv_scan(path, label, options)
    names = _final_names(list(schema.names), rows, label, options)
    for name, kind in zip(names, schema.types, strict=True):
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise BadInputError(f"{label}: column {name!r} holds bytes that are not valid text")
    widen = _widened(dict(zip(names, schema.types, strict=True)), dict(zip(names, nulls, strict=True)))

    def stream(columns: list[str] | None) -> Iterator[pa.Table]:
        wanted = set(names if columns is None else columns)
        keep = [i for i, name in enumerate(names) if name in wanted]
        return _csv_stream(path, label, options, block, batch_rows, schema, keep, [names[i] for i in keep])

    return TableBatches(names, widen, stream)


def _csv_stream(path, label, options, block, batch_rows, schema, keep, names) -> Iterator[pa.Table]:
    """The second pass, every type pinned: the blocks' record batches cut into tables."""
    import pyarrow as pa

    read = [schema.names[i] for i in keep] or schema.names[:1]  # no column: one, for the rows
    convert = _convert(options, include_columns=read, column_types={n: schema.field(n).type for n in read})
    bad, pending, held = _BadRows(label, options), [], 0

    def frame(table: pa.Table) -> pa.Table:
        return table.select(list(range(len(keep)))).rename_columns(names)

    try:
        with _open(path, options, block, bad, convert) as reader:
            for batch in reader:
                pending.append(batch)
                held += batch.num_rows
                if held >= batch_rows:
                    table = pa.Table.from_batches(pending)
                    for start in range(0, held - batch_rows + 1, batch_rows):
                        yield frame(table.slice(start, batch_rows))
                    pending, held = table.slice(start + batch_rows).to_batches(), held - start - batch_rows
            if held:
                yield frame(pa.Table.from_batches(pending))
    except pa.ArrowInvalid as exc:  # the file changed since the first pass
        raise bad.error(exc, lambda: None) from None


# -- Parquet -------------------------------------------------------------------------------------


def _parquet_frames(path: Path, label: str, batch_rows: int) -> TableBatches:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            _check_columns(list(schema.names), label)
            index = (schema.pandas_metadata or {}).get("index_columns", [])
            names = [n for n in schema.names if n not in index]  # a stored pandas index is no column
            types = {name: schema.field(name).type for name in names}
            scanned = [n for n, t in types.items() if pa.types.is_dictionary(t) or pa.types.is_integer(t)
                       or pa.types.is_boolean(t)]  # fmt: skip
            nulls, categories = dict.fromkeys(scanned, 0), {}
            for batch in parquet.iter_batches(SCAN_BATCH_ROWS, columns=scanned) if scanned else ():
                for name, column in zip(scanned, batch.columns, strict=True):
                    nulls[name] += column.null_count
                    if pa.types.is_dictionary(column.type):  # unified in order, as the whole read does
                        known = categories.get(name, column.dictionary[:0])
                        new = column.dictionary.filter(pc.invert(pc.is_in(column.dictionary, known)))
                        categories[name] = pa.concat_arrays([known, new]) if len(new) else known
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{label}: not a readable Parquet file: {exc}") from None

    def stream(columns: list[str] | None) -> Iterator[pa.Table]:
        wanted = set(names if columns is None else columns)
        keep = [name for name in names if name in wanted]
        return _parquet_stream(
            path, label, batch_rows, keep, {n: categories[n] for n in keep if n in categories}
        )

    return TableBatches(names, _widened(types, nulls), stream)


def _parquet_stream(path, label, batch_rows, keep, categories) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            rows = 0
            for batch in parquet.iter_batches(batch_rows, columns=keep):
                table = pa.Table.from_batches([batch])
                for name, unified in categories.items():
                    i, column = table.schema.get_field_index(name), batch.column(name)
                    codes = pc.index_in(column.dictionary, value_set=unified).take(column.indices)
                    recoded = pa.DictionaryArray.from_arrays(codes, unified, ordered=column.type.ordered)
                    table = table.set_column(i, table.schema.field(i).with_type(recoded.type), recoded)
                if batch.num_rows:
                    rows += batch.num_rows
                    yield table
            if not rows:  # the columns, empty, with their dtypes
                yield parquet.schema_arrow.empty_table().select(keep)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{label}: not a readable Parquet file: {exc}") from None
