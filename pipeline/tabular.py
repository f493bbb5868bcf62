"""Strict reading of tabular files: every malformed input gets an error naming the file, row and rule.

pandas and pyarrow are forgiving by default (a short row is padded with nulls, duplicated column
names are renamed, undecodable bytes become binary values). A training pipeline must not be: each
of those silently changes the data a model learns from.

Why one module of this size: CSV and Parquet reading share the limits, the header checks and the
messages; split by format, each half would need the other's.
"""

from __future__ import annotations

import csv
import io
import logging
import unicodedata
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
MAX_COLUMN_NAME_CHARS = 1024  # a longer header cell is not a name (and would flood every message)
DELIMITER_CANDIDATES = (",", ";", "\t", "|")
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 50
CSV_BLOCK_BYTES = 1 << 24  # pyarrow's CSV block: type inference starts from the first one


@dataclass(frozen=True)
class TableLimits:
    """Row and column ceilings of a source, checked while it is read, before the table is built."""

    max_rows: int | None = None
    max_columns: int | None = None

    @classmethod
    def of(cls, data: DataSettings) -> TableLimits:
        return cls(max_rows=data.max_rows, max_columns=data.max_columns)

    def columns_problem(self, count: int) -> str | None:
        if self.max_columns is not None and count > self.max_columns:
            return (
                f"{count} columns, more than data.max_columns={self.max_columns} "
                "(rule: a source has at most data.max_columns columns, checked from its header before "
                "any row is parsed; raise it if the data is right)"
            )
        return None

    def check_columns(self, count: int, label: str) -> None:
        problem = self.columns_problem(count)
        if problem:
            raise BadInputError(f"{label}: {problem}")

    def check_rows(self, count: int, label: str, so_far: bool = False) -> None:
        if self.max_rows is not None and count > self.max_rows:
            observed = f"at least {count}" if so_far else str(count)
            raise BadInputError(
                f"{label}: {observed} rows, more than data.max_rows={self.max_rows} (rule: a source has "
                "at most data.max_rows rows, checked before the table is loaded; raise it if the data "
                "is right)"
            )


NO_LIMITS = TableLimits()


def visible(text: str, limit: int = 80) -> str:
    """``text`` quoted, with every invisible or control character written as its escape
    (``'species\\u200b'``), cut to ``limit`` characters: safe to print, and shows what differs."""
    shown = "".join(
        ch if ch.isprintable() else f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}"
        for ch in text[:limit]
    )
    more = f"... ({len(text)} characters)" if len(text) > limit else ""
    return f"'{shown}'{more}"


def name_problems(names: list[str], limits: TableLimits = NO_LIMITS) -> list[str]:
    """Every problem of a header that makes the table unreadable as a table, each with its rule:
    too many columns, duplicated or blank names, over-long names, control characters."""
    problems: list[str] = []
    width = limits.columns_problem(len(names))
    if width:
        problems.append(width)
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        shown = ", ".join(visible(str(name)) for name in duplicated[:10])
        more = f" and {len(duplicated) - 10} more" if len(duplicated) > 10 else ""
        problems.append(f"duplicated column names [{shown}]{more} (rule: every column name must be unique)")
    blank = [i + 1 for i, name in enumerate(names) if not str(name).strip()]
    if blank:
        problems.append(f"column(s) at position {blank[:20]} have no name (rule: header names required)")
    for i, name in enumerate(names):
        name = str(name)
        if len(name) > MAX_COLUMN_NAME_CHARS:
            problems.append(
                f"header cell {i + 1} {visible(name, 40)} is a name of {len(name)} characters (rule: a "
                f"column name has at most {MAX_COLUMN_NAME_CHARS} characters)"
            )
        control = [(j, ch) for j, ch in enumerate(name) if unicodedata.category(ch) == "Cc"]
        if control:
            j, ch = control[0]
            problems.append(
                f"header cell {i + 1} {visible(name, 40)} has a control character (U+{ord(ch):04X}) at "
                f"position {j + 1} (rule: column names hold no control characters such as newlines, "
                "tabs or terminal escapes)"
            )
    return problems


def _several(label: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{label}: {problems[0]}"
    return f"{label}: {len(problems)} problems with its header:\n  - " + "\n  - ".join(problems)


def _text_reader(data: bytes, options: CsvOptions, delimiter: str):
    encoding = options.encoding
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="replace", newline="")
    return csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)


class HeaderCellTooLongError(Exception):
    """A header cell longer than the csv module reads (far beyond any column name)."""


def csv_header(data: bytes, options: CsvOptions, delimiter: str | None = None) -> list[str] | None:
    """The column names of CSV ``data``, read from its header alone (the rows are not parsed); the
    configured names when it has no header. None when the header cannot be read this way."""
    if not options.header and options.column_names:
        return list(options.column_names)
    try:
        reader = _text_reader(data, options, delimiter or options.delimiter)
        for _ in range(options.skip_rows):
            next(reader)
        first = next(reader)
    except csv.Error as exc:
        if "field limit" in str(exc):  # a cell over csv.field_size_limit() (131,072 characters)
            raise HeaderCellTooLongError(csv.field_size_limit()) from None
        return None
    except (StopIteration, LookupError, ValueError):
        return None
    if not options.header:
        return [f"f{i}" for i in range(len(first))]
    return first


def _delimiter_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else delimiter


def sniff_delimiter(data: bytes, options: CsvOptions) -> tuple[str, int, int] | None:
    """Another delimiter that splits the first lines of ``data`` consistently into more fields than
    the configured one: ``(delimiter, fields, lines)``, or None. Each candidate (``, ; tab |``) must
    give every sampled line (a quoted value may span lines) the same count of at least 2 fields."""
    sample = data[:SNIFF_BYTES]
    if len(data) > SNIFF_BYTES and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n") + 1]  # whole lines only

    def counts(delimiter: str) -> list[int]:
        found: list[int] = []
        try:
            reader = _text_reader(sample, options, delimiter)
            for _ in range(options.skip_rows):
                next(reader, None)
            for row in reader:
                if row:
                    found.append(len(row))
                if len(found) >= SNIFF_LINES:
                    break
        except (csv.Error, LookupError, ValueError):
            return []
        return found

    current = counts(options.delimiter)
    current_consistent = bool(current) and current[0] >= 2 and len(set(current)) == 1
    best: tuple[str, int, int] | None = None
    for candidate in DELIMITER_CANDIDATES:
        if candidate == options.delimiter:
            continue
        found = counts(candidate)
        if len(found) < 2 or found[0] < 2 or len(set(found)) != 1:
            continue
        if current_consistent and found[0] <= current[0]:
            continue
        if best is None or found[0] > best[1]:
            best = (candidate, found[0], len(found))
    return best


def delimiter_hint(data: bytes, label: str, options: CsvOptions) -> str | None:
    """What to say when the configured delimiter seems wrong: "the file looks ;-delimited ..."."""
    sniffed = sniff_delimiter(data, options)
    if sniffed is None:
        return None
    delimiter, fields, lines = sniffed
    try:
        current = csv_header(data, options) or []
    except HeaderCellTooLongError:
        current = []
    return (
        f"the file {label} looks {_delimiter_name(delimiter)}-delimited: its first {lines} lines each "
        f"split into {fields} fields on {delimiter!r}, its header into {len(current)} on the configured "
        f"{options.delimiter!r}: set data.source.csv.delimiter={delimiter!r}"
    )


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


DECODE_CHUNK = 1 << 20


def _check_utf8(data: bytes, label: str, encoding: str) -> None:
    """Refuse text that is not valid ``encoding``, naming the line and column of the first bad
    bytes. Decoded a chunk at a time (never the whole text as one string); a failure is located
    by decoding the whole text once, which only bad input pays for."""
    import codecs

    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise BadInputError(f"{label}: unknown encoding {encoding!r} in data.source.csv.encoding") from None
    view = memoryview(data)
    try:
        for start in range(0, len(view), DECODE_CHUNK):
            decoder.decode(view[start : start + DECODE_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        pass
    else:
        return
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
    parse_options = _parse_options(options, lambda row: "skip")
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


def _check_header(
    names: list[str] | None, label: str, limits: TableLimits, contract: DataSettings | None
) -> None:
    """Refuse a header that cannot make a table (too wide, duplicated, blank or over-long names,
    control characters) before any row is parsed, listing every problem found, with the contract's
    own header findings (missing columns and what looks like them, columns a strict contract
    refuses) alongside: one error says all that is wrong with the header."""
    if names is None:
        return
    problems = name_problems([str(n) for n in names], limits)
    if not problems:
        return
    if contract is not None:
        from pipeline.findings import header_findings

        problems += header_findings([str(n) for n in names], contract).errors
    raise BadInputError(_several(label, problems))


def _check_delimiter(data: bytes, names: list[str] | None, label: str, options: CsvOptions, contract) -> None:
    """Refuse a CSV file whose contract columns appear only when it is split on another delimiter
    (a ;-delimited file read as ,-delimited is one column named 'species;island;...')."""
    if contract is None or not contract.columns or names is None or not options.header:
        return
    missing = [c for c in contract.columns if c not in names]
    if not missing:
        return
    found = len(contract.columns) - len(missing)
    sniffed = sniff_delimiter(data, options)
    if sniffed is None:
        return
    try:
        other = csv_header(data, options, sniffed[0]) or []
    except HeaderCellTooLongError:
        return
    if sum(name in contract.columns for name in other) > found:
        hint = delimiter_hint(data, label, options)
        raise BadInputError(
            f"{hint} (rule: the file's delimiter is data.source.csv.delimiter; read with "
            f"{options.delimiter!r}, the contract's columns {missing[:10]} are missing)"
        )


def read_csv_bytes(
    data: bytes,
    label: str,
    options: CsvOptions,
    limits: TableLimits = NO_LIMITS,
    contract: DataSettings | None = None,
    scan: bool = False,
):
    """Parse CSV bytes strictly into a DataFrame (``scan``: only check them, streaming, and return
    their :class:`TableShape`: what ingest needs, without the table). The header is checked
    first, from its own line (refused when over ``limits``, with every problem it has, and, given
    the ``contract``, when the contract's columns appear only under another delimiter); then the
    rows are parsed."""
    if not data or data.isspace():  # (data.strip() would copy it)
        raise BadInputError(f"{label}: the file is empty (rule: a header and at least one data row)")
    _check_utf8(data, label, options.encoding)
    # The names the table will have: the configured ones replace the file's header.
    try:
        names = list(options.column_names) if options.column_names else csv_header(data, options)
    except HeaderCellTooLongError as exc:
        raise BadInputError(
            f"{label}: a header cell is longer than {exc.args[0]} characters (rule: a column name has at "
            f"most {MAX_COLUMN_NAME_CHARS} characters)"
        ) from None
    _check_delimiter(data, names, label, options, contract)
    _check_header(names, label, limits, contract)

    _check_csv_size(data, label, options, _read_options(options), limits)
    hint = lambda: delimiter_hint(data, label, options)  # noqa: E731
    if scan:
        return _scan_csv(io.BytesIO(data), label, options, limits, hint)
    return _parse_csv(io.BytesIO(data), label, options, hint=hint).to_pandas()


def _stream_csv(source, read_options, parse_options, convert_options):
    """The table ``pyarrow.csv.read_csv`` gives, read block by block, or None when the streaming
    reader cannot give the same one. read_csv infers each column's type from the first block and
    widens it when a later block does not fit (int64 to double, say), which means keeping every
    parsed block until the end: about three times the table at its peak. The streaming reader
    keeps the first block's types: when every block fits them, read_csv would never have widened
    them and the tables are the same, at about half the peak. When one does not fit (a conversion
    error), None: the caller reads the whole file as read_csv does."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            source, read_options=read_options, parse_options=parse_options, convert_options=convert_options
        )
        batches = list(reader)
        schema = reader.schema
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc).lower():
            raise  # a malformed row: read_csv refuses it the same way
        if hasattr(source, "seek"):
            source.seek(0)
        return None
    if any(pa.types.is_null(field.type) for field in schema):
        # a column empty in the first block: read_csv would type it from the later ones
        if hasattr(source, "seek"):
            source.seek(0)
        return None
    return pa.Table.from_batches(batches, schema=schema)


@dataclass(frozen=True)
class TableShape:
    """What a strict scan of a source found: its rows and its column names."""

    rows: int
    columns: list[str]


def _scan_csv(source, label: str, options: CsvOptions, limits: TableLimits, hint) -> TableShape:
    """Everything :func:`_parse_csv` refuses, found in one streaming pass that holds one block of
    rows at a time: every column is read as text, so the pass refuses exactly what the typed read
    refuses (its type inference falls back to text, it never fails on a value), and the row
    ceiling is checked as the rows are counted."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    bad = _BadRows(label, options)
    parse_options = _parse_options(options, bad.record)
    try:
        names = list(
            pacsv.open_csv(
                source, read_options=_read_options(options), parse_options=parse_options
            ).schema.names
        )
    except pa.ArrowInvalid as exc:
        raise bad.error(exc, hint) from None
    except StopIteration:
        names = []
    _check_columns(names, label)
    source.seek(0)
    text = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        null_values=options.na_values,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    rows = 0
    try:
        reader = pacsv.open_csv(
            source, read_options=_read_options(options), parse_options=parse_options, convert_options=text
        )
        for batch in reader:
            rows += batch.num_rows
            limits.check_rows(rows, label, so_far=True)
    except pa.ArrowInvalid as exc:
        raise bad.error(exc, hint) from None
    except StopIteration:
        pass
    return TableShape(rows, _final_names(names, rows, label, options))


class _BadRows:
    """The first row with more or fewer fields than the header (pyarrow's invalid-row handler),
    and the error a failed parse becomes: that row, else pyarrow's own message."""

    def __init__(self, label: str, options: CsvOptions):
        self.label, self.options, self.rows = label, options, []

    def record(self, row) -> str:
        where = f"line {row.number + self.options.skip_rows}" if row.number is not None else "a row"
        self.rows.append(
            f"{self.label}: {where} has {row.actual_columns} fields, expected {row.expected_columns} "
            f"(rule: every row has as many fields as the header): {row.text[:120]!r}"
        )
        return "error"

    def error(self, exc: Exception, hint) -> BadInputError:
        extra = hint()
        suffix = f"; {extra}" if extra else ""
        if self.rows:
            return BadInputError(self.rows[0] + suffix)
        return BadInputError(f"{self.label}: cannot be parsed as CSV: {exc}{suffix}")


def _final_names(names: list[str], rows: int, label: str, options: CsvOptions) -> list[str]:
    """The parsed table's column names after the checks every read makes: unique and named, the
    configured ``column_names`` in place of the header (as many), and at least one data row."""
    _check_columns(names, label)
    if options.header and options.column_names:
        if len(options.column_names) != len(names):
            raise BadInputError(
                f"{label}: data.source.csv.column_names has {len(options.column_names)} names but the "
                f"file has {len(names)} columns"
            )
        _check_columns(list(options.column_names), "data.source.csv.column_names")
        names = list(options.column_names)
    if rows == 0:
        raise BadInputError(f"{label}: the file has a header but no data rows (rule: at least one row)")
    return names


def _read_options(options: CsvOptions):
    import pyarrow.csv as pacsv

    encoding = options.encoding.lower().replace("_", "-")
    return pacsv.ReadOptions(
        use_threads=False,  # single-threaded parsing is what reports the line number of a bad row
        block_size=CSV_BLOCK_BYTES,
        skip_rows=options.skip_rows,
        encoding="utf8" if encoding in ("utf-8", "utf8") else options.encoding,
        column_names=options.column_names if not options.header else None,
        autogenerate_column_names=False,
    )


def _parse_options(options: CsvOptions, on_invalid_row):
    """How the rows are split: the configured delimiter, and a quoted value may hold newlines
    wherever it falls (without ``newlines_in_values`` one spanning two of pyarrow's blocks makes
    the parser lose track of the rows)."""
    import pyarrow.csv as pacsv

    return pacsv.ParseOptions(
        delimiter=options.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid_row
    )


def _parse_csv(source, label: str, options: CsvOptions, hint=lambda: None, stream: bool = False):
    """The rows of CSV ``source`` (a file object or a path) as an Arrow table, strictly: a row with
    more or fewer fields than the header, duplicated or blank names, no data rows or bytes that
    are not text are refused; ``hint`` says what to add to a parse error (a delimiter hint).
    ``stream``: try :func:`_stream_csv` first (less memory, the same table when it succeeds)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    bad = _BadRows(label, options)
    parse_options = _parse_options(options, bad.record)
    convert_options = pacsv.ConvertOptions(
        null_values=options.na_values, strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    try:
        table = None
        if stream:
            table = _stream_csv(source, _read_options(options), parse_options, convert_options)
        if table is None:
            table = pacsv.read_csv(
                source,
                read_options=_read_options(options),
                parse_options=parse_options,
                convert_options=convert_options,
            )
    except pa.ArrowInvalid as exc:
        raise bad.error(exc, hint) from None
    names = _final_names(list(table.column_names), table.num_rows, label, options)
    if names != list(table.column_names):
        table = table.rename_columns(names)
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raise BadInputError(f"{label}: column {name!r} holds bytes that are not valid text")
    return table


def read_parquet_bytes(
    data: bytes,
    label: str,
    limits: TableLimits = NO_LIMITS,
    contract: DataSettings | None = None,
    scan: bool = False,
):
    """Read Parquet bytes (``scan``: decode them a batch at a time and return their
    :class:`TableShape`); the row and column counts in the footer are checked against ``limits``
    before any row is decoded (a few KiB of run-length-encoded data can hold billions of rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise BadInputError(f"{label}: the file is empty (rule: a Parquet file with at least one row)")
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        _check_header(list(parquet.schema_arrow.names), label, limits, contract)
        limits.check_rows(parquet.metadata.num_rows, label)
        if scan:  # every row decoded, one batch at a time
            names = list(parquet.schema_arrow.names)
            rows = sum(batch.num_rows for batch in parquet.iter_batches(batch_size=1 << 16))
        else:
            table = parquet.read()
            names, rows = list(table.column_names), table.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{label}: not a readable Parquet file: {exc}") from None
    _check_columns(names, label)
    if rows == 0:
        raise BadInputError(f"{label}: the file has columns but no rows (rule: at least one row)")
    return TableShape(rows, names) if scan else table.to_pandas()


def read_table_bytes(
    data: bytes,
    label: str,
    fmt: str,
    options: CsvOptions,
    limits: TableLimits = NO_LIMITS,
    contract: DataSettings | None = None,
    scan: bool = False,
):
    """Read a CSV or Parquet source strictly, as a DataFrame (``scan``: check it in one streaming
    pass and return its :class:`TableShape`); with
    ``contract``, its header problems are refused together, before the rows are read (see
    :func:`read_csv_bytes`)."""
    if fmt == "parquet":
        return read_parquet_bytes(data, label, limits, contract, scan)
    return read_csv_bytes(data, label, options, limits, contract, scan)


def read_table_file(
    path: Path, label: str, fmt: str, options: CsvOptions, columns: list[str] | None = None
) -> pd.DataFrame:
    """A snapshot the ingest step took (and read strictly, with the same options) as a DataFrame,
    with the same columns, types and values that strict read gave, at less memory: the file is
    parsed from disk (its bytes are never one Python object) and the Arrow table becomes the
    DataFrame column by column, each column's Arrow memory freed once converted. ``columns``:
    only those (the others are dropped before the conversion)."""
    import pyarrow.parquet as pq

    if fmt == "parquet":
        try:
            table = pq.ParquetFile(path).read()
        except (OSError, ValueError) as exc:
            raise BadInputError(f"{label}: not a readable Parquet file: {exc}") from None
        _check_columns(list(table.column_names), label)
    else:
        table = _parse_csv(str(path), label, options, stream=True)
    if columns is not None:
        wanted = set(columns)
        table = table.select([c for c in table.column_names if c in wanted])
    return table.to_pandas(self_destruct=True, split_blocks=True)
