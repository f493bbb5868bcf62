"""iter_table_frames: frames of at most batch_rows rows that concatenate to read_table_file's
DataFrame (same names, order, dtypes, values), with the same errors for the same bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from pipeline import batches, tabular
from pipeline.batches import _csv_type, iter_table_frames
from pipeline.errors import BadInputError
from pipeline.settings import CsvOptions
from pipeline.tabular import _BadRows

BLOCK = 2048  # the whole read's CSV block in these tests: a few KiB of text spans many blocks


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "CSV_BLOCK_BYTES", BLOCK)  # _read_options reads it at each call
    monkeypatch.setattr(batches, "SMALL_BLOCK", BLOCK // 4)  # the streams' first try: smaller


def fmt_of(path: Path) -> str:
    return "parquet" if path.suffix == ".parquet" else "csv"


def check(path: Path, batch_rows: int, options: CsvOptions | None = None, columns=None) -> list[pd.DataFrame]:
    """The frames, checked against the whole read: sizes, indexes, dtypes of every frame, and the
    concatenation (its index aside, which is the whole read's pandas index for a stored one)."""
    options = options or CsvOptions()
    whole = tabular.read_table_file(path, path.name, fmt_of(path), options, columns)
    frames = list(iter_table_frames(path, path.name, fmt_of(path), options, batch_rows, columns))
    assert frames
    for frame in frames:
        assert 0 < len(frame) <= batch_rows or len(whole) == 0
        assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
        assert frame.index.equals(pd.RangeIndex(len(frame)))
        assert list(frame.columns) == list(whole.columns)
        assert frame.dtypes.to_dict() == whole.dtypes.to_dict()
    assert_frame_equal(pd.concat(frames, ignore_index=True), whole.reset_index(drop=True))
    return frames


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def widening_csv(path: Path, rows: int = 1200) -> Path:
    """Columns whose type the first block does not decide: int then a float or a text far later,
    empty then numbers or text, booleans (with a null late), 0/1 then 'true', a date then a time,
    quoted values with newlines and quotes."""
    late = rows * 5 // 6
    lines = ["i,f,ni,nt,b,ib,s,ts,it,e"]
    for i in range(rows):
        lines.append(
            ",".join(
                [
                    str(i),
                    "2.5" if i == rows - 3 else str(i),
                    str(i) if i > late else "",
                    "text" if i > late else "NA",
                    "" if i == rows - 1 else ("true" if i % 3 else "false"),
                    "true" if i == rows - 2 else str(i % 2),
                    f'"line {i}\nnext ""quoted"", done"' if i % 37 == 0 else f"plain{i}",
                    "2021-03-04 05:06:07" if i > late else "2021-03-04",
                    "abc" if i == rows - 5 else str(-i),
                    "",
                ]
            )
        )
    return write(path, "\n".join(lines) + "\n")


def test_widened_columns_match_the_whole_read(tmp_path: Path) -> None:
    path = widening_csv(tmp_path / "wide.csv")
    assert path.stat().st_size > 10 * BLOCK
    options = CsvOptions()
    stream = pacsv.open_csv(str(path), tabular._read_options(options), tabular._parse_options(options, None))
    with pytest.raises(pa.ArrowInvalid, match="conversion error"):  # the stream alone cannot read it
        stream.read_all()
    whole = tabular.read_table_file(path, "wide.csv", "csv", CsvOptions())
    assert whole.dtypes.astype(str).to_dict() == {
        "i": "int64", "f": "float64", "ni": "float64", "nt": "str", "b": "object", "ib": "bool",
        "s": "str", "ts": "datetime64[s]", "it": "str", "e": "object",
    }  # fmt: skip
    for batch_rows in (7, 1000):
        frames = check(path, batch_rows)
        assert [len(f) for f in frames[:-1]] == [batch_rows] * (len(frames) - 1)


@pytest.mark.parametrize("batch_rows", [1, 3, 50, 149, 150, 151, 10_000])
def test_batch_sizes(tmp_path: Path, batch_rows: int) -> None:
    path = widening_csv(tmp_path / "small.csv", rows=150)
    frames = check(path, batch_rows)
    assert len(frames) == -(-150 // batch_rows)
    table = pa.table({"a": pa.array([*range(149), None]), "b": [f"x{i}" for i in range(150)]})
    pq.write_table(table, tmp_path / "small.parquet", row_group_size=40)
    assert sum(len(f) for f in check(tmp_path / "small.parquet", batch_rows)) == 150


def test_quoted_newlines_spanning_blocks(tmp_path: Path) -> None:
    lines = ["k,note,n"]
    for i in range(60):
        note = "\n".join(f'para {i}.{j}, with a comma and ""quotes""' for j in range(i % 9 * 4))
        lines.append(f'{i},"{note}",{i if i < 50 else i + 0.5}')
    path = write(tmp_path / "notes.csv", "\n".join(lines) + "\n")
    assert path.stat().st_size > 5 * BLOCK
    check(path, 7)
    check(path, 1000)


def test_rows_longer_than_the_streams_block(tmp_path: Path) -> None:
    """A row longer than the first try's block is read in the whole read's blocks; one longer
    than those is refused as the whole read refuses it."""
    long = "x" * (BLOCK // 2)
    text = "a,b\n" + "".join(f"{i},{long if i % 5 == 0 else i}\n" for i in range(40))
    check(write(tmp_path / "long.csv", text), 6)
    assert_same_error(write(tmp_path / "longer.csv", text + f"1,{long * 5}\n"), match="straddl")


CELLS = {  # one column's values: the first rows (the first block) and then a late one
    "ints": ["1", "2", "3"],
    "int_then_float": ["1", "2", "2.5"],
    "int_then_bool": ["0", "1", "true"],
    "int_then_date": ["5", "6", "2021-01-01"],
    "bool_then_int": ["true", "false", "7"],
    "date_then_ts": ["2021-01-01", "2021-01-02", "2021-01-02 03:04:05"],
    "ts_then_ns": ["2021-01-01 00:00:00", "2021-01-01 00:00:01", "2021-01-01 00:00:01.123456789"],
    "tz": ["2021-01-01T00:00:00Z", "2021-01-01T00:00:01Z", "2021-01-01T00:00:02+01:00"],
    "tz_then_naive": ["2021-01-01T00:00:00Z", "2021-01-01T00:00:01Z", "2021-01-01T00:00:02"],
    "time": ["10:00:00", "11:00:00", "12:00"],
    "null_then_int": ["", "NA", "4"],
    "null_then_text": ["", "", "x"],
    "all_null": ["", "null", "NaN"],
    "float_then_text": ["1.5", "2", "nope"],
    "spaces": [" 1", "2 ", " 3 "],
    "quoted": ['"1"', '"2"', '"a ""b"",\nc"'],
    "quoted_null": ['"NA"', '"3"', '""'],
}


@pytest.mark.parametrize("na_values", [None, ["NA"]])
def test_one_column_alone_gets_the_whole_reads_type(tmp_path: Path, na_values) -> None:
    """The type the first pass pins (the column read alone, as a text of its own) is the type
    read_csv gives that column when it reads the whole file."""
    options = CsvOptions() if na_values is None else CsvOptions(na_values=na_values)
    rows = [",".join(cells[0 if i < 400 else 1] for cells in CELLS.values()) for i in range(800)]
    rows.append(",".join(cells[2] for cells in CELLS.values()))
    path = write(tmp_path / "types.csv", ",".join(CELLS) + "\n" + "\n".join(rows) + "\n")
    assert path.stat().st_size > 10 * BLOCK
    convert = pacsv.ConvertOptions(
        null_values=options.na_values, strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    read = tabular._read_options(options)
    parse = tabular._parse_options(options, None)
    whole = pacsv.read_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)
    for name in CELLS:
        alone = _csv_type(path, options, BLOCK // 4, _BadRows("types.csv", options), name)
        assert alone == whole.schema.field(name).type, name
        convert.include_columns = [name]  # read_csv of the file, that column only: the same
        one = pacsv.read_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)
        assert one.schema.types == [whole.schema.field(name).type], name
    assert whole.schema.field("int_then_bool").type == pa.bool_()  # read_csv re-reads the 0/1 too
    check(path, 100, options)


def test_bytes_that_are_not_text(tmp_path: Path) -> None:
    good = "".join(f"{i},word{i}\n" for i in range(600)).encode()
    path = write(tmp_path / "bytes.csv", b"n,w\n" + good + b"600,caf\xe9\n")
    assert_same_error(path, match="column 'w' holds bytes that are not valid text")
    latin = write(tmp_path / "latin.csv", b"n,w\n" + good + b"600,caf\xe9\n")
    check(latin, 100, CsvOptions(encoding="latin-1"))


def assert_same_error(path: Path, options: CsvOptions | None = None, match: str = "") -> None:
    options = options or CsvOptions()
    with pytest.raises(BadInputError, match=match) as whole:
        tabular.read_table_file(path, path.name, fmt_of(path), options)
    with pytest.raises(BadInputError) as frames:
        iter_table_frames(path, path.name, fmt_of(path), options, 10)  # refused before any frame
    assert type(frames.value) is type(whole.value)
    assert str(frames.value) == str(whole.value)


def test_errors_are_the_whole_reads(tmp_path: Path) -> None:
    body = "".join(f"{i},{i % 7},x{i}\n" for i in range(800))
    late_float = body + "800,0.5,y\n"
    cases = {
        "short.csv": ("a,b,c\n" + body + "1,2\n" + body, {}, "has 2 fields, expected 3"),
        "long.csv": ("a,b,c\n1,2,3,4\n" + body, {}, "has 4 fields, expected 3"),
        # a widened column first (the scan starts again), then the bad row, far later
        "late.csv": ("a,b,c\n" + late_float + body + "1,2,3,4\n", {}, "has 4 fields"),
        "empty.csv": ("", {}, "cannot be parsed as CSV"),
        "straddle.csv": ("a,b,c\n" + body + '1,"' + "long\n" * BLOCK + '",3\n', {}, "straddles"),
        "header.csv": ("a,b,c\n", {}, "no data rows"),
        "dup.csv": ("a,b,a\n" + late_float, {}, "duplicated column names"),
        # the repeated name is the widened column's: it cannot be pinned by name
        "dup_widened.csv": ("a,b,b\n" + late_float, {}, "duplicated column names"),
        "dup_bytes.csv": (b"a,b,a\n" + late_float.encode() + b"1,2,caf\xe9\n", {}, "duplicated"),
        "dup_bad.csv": ("a,b,a\n" + late_float + "1,2\n", {}, "has 2 fields"),
        "blank.csv": ("a, ,c\n" + late_float, {}, "have no name"),
        "names.csv": ("a,b,c\n" + body, {"column_names": ["x", "y"]}, "column_names has 2 names"),
        "names_dup.csv": ("a,b,c\n" + body, {"column_names": ["x", "y", "x"]}, "duplicated column"),
        "no_header.csv": (body + "1,2\n", {"header": False, "column_names": ["p", "q", "r"]}, "fields"),
    }
    for name, (text, settings, match) in cases.items():
        assert_same_error(write(tmp_path / name, text), CsvOptions(**settings), match)


def test_csv_options_and_columns(tmp_path: Path) -> None:
    path = widening_csv(tmp_path / "wide.csv", rows=600)
    check(path, 50, columns=["it", "f", "missing", "b"])  # the file's order, as the whole read
    assert [list(f.columns) for f in check(path, 1000, columns=["nt"])] == [["nt"]]
    assert [f.shape for f in check(path, 250, columns=[])] == [(250, 0), (250, 0), (100, 0)]
    renamed = CsvOptions(column_names=[f"c{i}" for i in range(10)])
    check(path, 77, renamed, columns=["c1", "c4", "f"])
    text = "# a comment line\n" + path.read_text().replace(",", ";")
    check(write(tmp_path / "semi.csv", text), 99, CsvOptions(delimiter=";", skip_rows=1))
    no_header = CsvOptions(header=False, skip_rows=1, column_names=list("abcdefghij"))
    check(path, 64, no_header)


def test_parquet_written_by_pandas(tmp_path: Path) -> None:
    n = 300
    frame = pd.DataFrame(
        {
            "nullable": pd.array([None if i % 50 == 7 else i for i in range(n)], dtype="Int64"),
            "text": [None if i % 9 == 0 else f"t{i}" for i in range(n)],
            "string": pd.array([f"s{i % 5}" for i in range(n)], dtype="string"),
            "category": pd.Categorical(
                [["b", "a", "c"][i % 3] for i in range(n)], categories=["c", "b", "a", "z"]
            ),
            "ordered": pd.Categorical([i % 4 for i in range(n)], categories=[3, 2, 1, 0], ordered=True),
            "flag": [i % 2 == 0 for i in range(n)],
            "boolean": pd.array([None if i == 250 else i % 3 == 0 for i in range(n)], dtype="boolean"),
            "when": pd.date_range("2021-01-01", periods=n, freq="min", tz="Europe/Paris"),
            "naive": pd.date_range("2021-01-01", periods=n, freq="s"),
            "number": np.arange(n, dtype="int32"),
            "real": np.linspace(0, 1, n),
        }
    )
    frame.to_parquet(tmp_path / "plain.parquet", row_group_size=64)
    frame.set_index(pd.Index([f"k{i}" for i in range(n)], name="key")).to_parquet(tmp_path / "index.parquet")
    frame.set_index(pd.RangeIndex(5, 5 + n)).to_parquet(tmp_path / "range.parquet", row_group_size=100)
    for name in ("plain", "index", "range"):
        path = tmp_path / f"{name}.parquet"
        for batch_rows in (7, 64, 1000):
            check(path, batch_rows)
        check(path, 30, columns=["real", "category", "nullable", "nope"])
    whole = tabular.read_table_file(tmp_path / "index.parquet", "i", "parquet", CsvOptions())
    assert list(whole.index[:2]) == ["k0", "k1"]  # the whole read's index: not a column, not a frame's
    assert "key" not in whole.columns and "__index_level_0__" not in whole.columns


def test_parquet_nulls_and_dictionaries_far_apart(tmp_path: Path) -> None:
    """An integer or boolean column with one null far away is float64 or object in every frame;
    a dictionary column whose row groups have different dictionaries gets one set of categories."""
    n = 400
    chunks = [
        pa.array([f"v{(i * 7 + g) % (5 + g)}" for i in range(100)]).dictionary_encode() for g in range(4)
    ]
    table = pa.table(
        {
            "ints": pa.array([None if i == n - 1 else i for i in range(n)], pa.int16()),
            "bools": pa.array([None if i == n - 2 else i % 2 == 0 for i in range(n)]),
            "big": pa.array([2**60 + i if i else None for i in range(n)], pa.uint64()),
            "dict": pa.chunked_array(chunks),
            "clean": pa.array(range(n)),
        }
    )
    pq.write_table(table, tmp_path / "arrow.parquet", row_group_size=100)
    pq.write_table(table, tmp_path / "spill.parquet", row_group_size=400, dictionary_pagesize_limit=16)
    for name in ("arrow", "spill"):
        frames = check(tmp_path / f"{name}.parquet", 9)
        assert frames[0]["ints"].dtype == "float64" and frames[0]["bools"].dtype == object
        check(tmp_path / f"{name}.parquet", 100, columns=["dict", "clean"])


def test_parquet_edges(tmp_path: Path) -> None:
    empty = pa.table({"a": pa.array([], pa.int64()), "d": pa.array([], pa.string()).dictionary_encode()})
    pq.write_table(empty, tmp_path / "empty.parquet")
    assert [len(f) for f in check(tmp_path / "empty.parquet", 5)] == [0]
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "cols.parquet")
    assert [f.shape for f in check(tmp_path / "cols.parquet", 2, columns=[])] == [(2, 0), (1, 0)]
    pq.write_table(
        pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"]), tmp_path / "dup.parquet"
    )
    assert_same_error(tmp_path / "dup.parquet", match="duplicated column names")
    assert_same_error(write(tmp_path / "junk.parquet", b"not parquet at all"), match="not a readable Parquet")


def test_batch_rows_must_be_positive(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a\n1\n")
    with pytest.raises(ValueError, match="at least 1"):
        iter_table_frames(path, "a.csv", "csv", CsvOptions(), 0)
