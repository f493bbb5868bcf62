"""Strict reading of tabular files: every malformed input gets an error naming the file, row and rule.

pandas and pyarrow are forgiving by default (a short row is padded with nulls, duplicated column
names are renamed, undecodable bytes become binary values). A training pipeline must not be: each
of those silently changes the data a model learns from.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import CsvOptions, DataSettings

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class TableLimits:
    """Row and column ceilings of a source, checked while it is read, before the table is built."""

    max_rows: int | None = None
    max_columns: int | None = None

    @classmethod
    def of(cls, data: DataSettings) -> TableLimits:
        return cls(max_rows=data.max_rows, max_columns=data.max_columns)

    def check_columns(self, count: int, label: str) -> None:
        if self.max_columns is not None and count > self.max_columns:
            raise BadInputError(
                f"{label}: {count} columns, more than data.max_columns={self.max_columns} "
                "(rule: a source has at most data.max_columns columns; raise it if the data is right)"
            )

    def check_rows(self, count: int, label: str, so_far: bool = False) -> None:
        if self.max_rows is not None and count > self.max_rows:
            observed = f"at least {count}" if so_far else str(count)
            raise BadInputError(
                f"{label}: {observed} rows, more than data.max_rows={self.max_rows} (rule: a source has "
                "at most data.max_rows rows, checked before the table is loaded; raise it if the data "
                "is right)"
            )


NO_LIMITS = TableLimits()


def detect_format(name: str, declared: str = "auto") -> str:
    """The format a file's name says; a compression suffix is looked through (``a.csv.gz``: csv)."""
    from pipeline.compression import strip_suffix

    if declared != "auto":
        return declared
    lowered = strip_suffix(name).lower()
    if lowered.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lowered.endswith(CSV_SUFFIXES):
        return "csv"
    raise BadInputError(
        f"cannot tell the format of {name!r} from its name: set data.source.format to 'csv' or 'parquet' "
        "(a compressed file is named like data.csv.gz, .bz2, .xz or .zst)"
    )


def _check_utf8(data: bytes, label: str, encoding: str) -> None:
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.end]
        raise BadInputError(
            f"{label}: line {line}, column {column}: bytes {bad!r} are not valid {encoding} "
            f"(rule: text must be {encoding}-encoded; set data.source.csv.encoding if the file uses "
            "another encoding)"
        ) from None
    except LookupError:
        raise BadInputError(f"{label}: unknown encoding {encoding!r} in data.source.csv.encoding") from None


def _check_columns(names: list[str], label: str) -> None:
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise BadInputError(
            f"{label}: duplicated column names {duplicated} (rule: every column name must be unique)"
        )
    blank = [i + 1 for i, name in enumerate(names) if not str(name).strip()]
    if blank:
        raise BadInputError(
            f"{label}: column(s) at position {blank} have no name (rule: header names required)"
        )


def _check_csv_size(data: bytes, label: str, options: CsvOptions, read_options, limits: TableLimits) -> None:
    """Refuse a CSV text over the column or row ceiling before it is parsed into a table: the
    columns are counted from the first block alone, the rows by streaming one column as text,
    block by block, holding one block at a time (only when the count of newlines, an upper bound
    of the rows, says the ceiling could be exceeded)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if limits.max_rows is None and limits.max_columns is None:
        return
    parse_options = pacsv.ParseOptions(delimiter=options.delimiter, invalid_row_handler=lambda row: "skip")
    try:
        reader = pacsv.open_csv(
            io.BytesIO(data),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=pacsv.ConvertOptions(include_columns=None),
        )
        names = list(reader.schema.names)
    except (pa.ArrowInvalid, StopIteration):
        return  # the strict read reports what is wrong with it
    limits.check_columns(len(names), label)
    if limits.max_rows is None or not names or data.count(b"\n") + 1 <= limits.max_rows:
        return
    counter = pacsv.open_csv(
        io.BytesIO(data),
        read_options=read_options,
        parse_options=parse_options,
        convert_options=pacsv.ConvertOptions(
            include_columns=[names[0]], column_types={names[0]: pa.string()}
        ),
    )
    rows = 0
    try:
        for batch in counter:
            rows += batch.num_rows
            limits.check_rows(rows, label, so_far=True)
    except pa.ArrowInvalid:
        return  # the strict read reports it, with its line


def read_csv_bytes(
    data: bytes, label: str, options: CsvOptions, limits: TableLimits = NO_LIMITS
) -> pd.DataFrame:
    """Parse CSV bytes strictly into a DataFrame (refused before parsing when over ``limits``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not data.strip():
        raise BadInputError(f"{label}: the file is empty (rule: a header and at least one data row)")
    encoding = options.encoding.lower().replace("_", "-")
    _check_utf8(data, label, options.encoding)

    bad_rows: list[str] = []

    def on_invalid_row(row) -> str:
        where = f"line {row.number + options.skip_rows}" if row.number is not None else "a row"
        bad_rows.append(
            f"{label}: {where} has {row.actual_columns} fields, expected {row.expected_columns} "
            f"(rule: every row has as many fields as the header): {row.text[:120]!r}"
        )
        return "error"

    read_options = pacsv.ReadOptions(
        use_threads=False,  # single-threaded parsing is what reports the line number of a bad row
        block_size=1 << 24,
        skip_rows=options.skip_rows,
        encoding="utf8" if encoding in ("utf-8", "utf8") else options.encoding,
        column_names=options.column_names if not options.header else None,
        autogenerate_column_names=False,
    )
    _check_csv_size(data, label, options, read_options, limits)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=read_options,
            parse_options=pacsv.ParseOptions(delimiter=options.delimiter, invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                null_values=options.na_values, strings_can_be_null=True, quoted_strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        if bad_rows:
            raise BadInputError(bad_rows[0]) from None
        raise BadInputError(f"{label}: cannot be parsed as CSV: {exc}") from None
    names = list(table.column_names)
    _check_columns(names, label)
    if options.header and options.column_names:
        if len(options.column_names) != len(names):
            raise BadInputError(
                f"{label}: data.source.csv.column_names has {len(options.column_names)} names but the "
                f"file has {len(names)} columns"
            )
        table = table.rename_columns(options.column_names)
        _check_columns(list(options.column_names), "data.source.csv.column_names")
    if table.num_rows == 0:
        raise BadInputError(f"{label}: the file has a header but no data rows (rule: at least one row)")
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raise BadInputError(f"{label}: column {name!r} holds bytes that are not valid text")
    return table.to_pandas()


def read_parquet_bytes(data: bytes, label: str, limits: TableLimits = NO_LIMITS) -> pd.DataFrame:
    """Read Parquet bytes; the row and column counts in the footer are checked against ``limits``
    before any row is decoded (a few KiB of run-length-encoded data can hold billions of rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise BadInputError(f"{label}: the file is empty (rule: a Parquet file with at least one row)")
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        limits.check_columns(len(parquet.schema_arrow.names), label)
        limits.check_rows(parquet.metadata.num_rows, label)
        table = parquet.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{label}: not a readable Parquet file: {exc}") from None
    _check_columns(list(table.column_names), label)
    if table.num_rows == 0:
        raise BadInputError(f"{label}: the file has columns but no rows (rule: at least one row)")
    return table.to_pandas()


def read_table_bytes(
    data: bytes, label: str, fmt: str, options: CsvOptions, limits: TableLimits = NO_LIMITS
) -> pd.DataFrame:
    if fmt == "parquet":
        return read_parquet_bytes(data, label, limits)
    return read_csv_bytes(data, label, options, limits)


def read_table_file(path: Path, label: str, fmt: str, options: CsvOptions) -> pd.DataFrame:
    return read_table_bytes(path.read_bytes(), label, fmt, options)
