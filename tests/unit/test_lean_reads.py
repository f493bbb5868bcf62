"""The memory-lean ways the data steps read and check a table give exactly what the plain ways
give: ingest's streaming scan refuses and accepts what the strict read does; validate's and
preprocess's snapshot read (:func:`pipeline.tabular.read_table_file`) gives the strict read's
DataFrame, whichever way it gets there; the duplicate check gives ``DataFrame.duplicated``.

The lean path streams the file block by block and keeps the first block's column types; it gives
way to pyarrow's whole-file read (which widens a type when a later block needs it) whenever a
block does not fit. Blocks are made small here (``CSV_BLOCK_BYTES``) so that the cases where
they differ happen in a small file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import tabular
from pipeline.errors import BadInputError
from pipeline.settings import CsvOptions
from pipeline.tabular import TableLimits, read_table_bytes, read_table_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(tabular, "CSV_BLOCK_BYTES", 4096)


def rows(n: int, later: str = "") -> str:
    body = "".join(f"{i},{i % 7},{'abc'[i % 3]},{i * 0.5}\n" for i in range(n))
    return "a,b,c,d\n" + body + later


CASES = {
    "one type throughout": rows(3000),
    "an int column with a decimal past the first block": rows(3000, "1.5,2,a,3.0\n"),
    "an int column with text past the first block": rows(3000, "x,2,a,3.0\n"),
    "a column empty in the first block, filled later": "a,b\n"
    + "".join(f"{i},\n" for i in range(2000))
    + "".join(f"{i},{i}\n" for i in range(2000)),
    # (a quoted value spanning two blocks stopped the strict read itself before newlines_in_values)
    "quoted newlines across blocks": "a,b\n" + "".join(f'{i},"line\nnext {i}"\n' for i in range(2000)),
    "missing values": "a,b\n" + "".join(f"{i},{'' if i % 5 else i}\n" for i in range(3000)),
}


@pytest.mark.parametrize("text", list(CASES.values()), ids=list(CASES))
def test_the_lean_read_gives_the_strict_reads_frame(tmp_path, text):
    path = tmp_path / "snapshot.csv"
    path.write_text(text)
    strict = read_table_bytes(path.read_bytes(), "snapshot.csv", "csv", CsvOptions())
    lean = read_table_file(path, "snapshot.csv", "csv", CsvOptions())
    pd.testing.assert_frame_equal(lean, strict)
    assert list(lean.dtypes) == list(strict.dtypes)


def test_the_fallback_is_taken_only_when_a_block_does_not_fit(tmp_path, monkeypatch):
    calls = []
    original = tabular._stream_csv

    def spy(*args):
        table = original(*args)
        calls.append(table is not None)
        return table

    monkeypatch.setattr(tabular, "_stream_csv", spy)
    for name, expected in (
        ("one type throughout", True),
        ("an int column with a decimal past the first block", False),
    ):
        path = tmp_path / "s.csv"
        path.write_text(CASES[name])
        read_table_file(path, "s.csv", "csv", CsvOptions())
        assert calls[-1] is expected, name


def test_penguins_and_parquet(tmp_path):
    import palmerpenguins

    csv = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
    strict = read_table_bytes(csv.read_bytes(), "penguins.csv", "csv", CsvOptions())
    pd.testing.assert_frame_equal(read_table_file(csv, "penguins.csv", "csv", CsvOptions()), strict)
    parquet = tmp_path / "p.parquet"
    strict.to_parquet(parquet)
    from_parquet = read_table_bytes(parquet.read_bytes(), "p.parquet", "parquet", CsvOptions())
    pd.testing.assert_frame_equal(
        read_table_file(parquet, "p.parquet", "parquet", CsvOptions()), from_parquet
    )
    some = read_table_file(csv, "penguins.csv", "csv", CsvOptions(), columns=["species", "year"])
    assert list(some.columns) == ["species", "year"]
    assert np.array_equal(some["year"].to_numpy(), strict["year"].to_numpy())


def test_a_malformed_row_is_refused_the_same_way(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(rows(3000, "1,2,3\n"))
    with pytest.raises(BadInputError) as strict:
        read_table_bytes(path.read_bytes(), "bad.csv", "csv", CsvOptions())
    with pytest.raises(BadInputError) as lean:
        read_table_file(path, "bad.csv", "csv", CsvOptions())
    assert str(lean.value).split(";")[0] == str(strict.value).split(";")[0]


SCAN_CASES = [
    b"a,b\n1,2\n",
    b"a,b\n1,2\n3\n",
    b"a,b\n",
    b"",
    b"  \n",
    b"a,a\n1,2\n",
    b"a,\n1,2\n",
    b"a,b\n1,\xff\n",
    b'a,b\n"1\n2",3\n',
    b"a;b;c\n1;2;3\n",
    b"a,b\n1,2,3\n",
    b"x\n" + b"1\n" * 100,
    "a,b\n\u00e9,2\n".encode(),
    rows(3000, "1.5,2,a,3.0\n").encode(),
    rows(3000, "1,2\n").encode(),
]


@pytest.mark.parametrize("data", SCAN_CASES)
@pytest.mark.parametrize("limits", [TableLimits(), TableLimits(max_rows=1), TableLimits(max_columns=1)])
def test_the_streaming_scan_refuses_and_accepts_what_the_strict_read_does(data, limits):
    def outcome(scan: bool):
        try:
            found = read_table_bytes(data, "f.csv", "csv", CsvOptions(), limits, scan=scan)
        except BadInputError as exc:
            return ("refused", str(exc))
        return ("read", found.rows if scan else len(found), list(map(str, found.columns)))

    assert outcome(scan=True) == outcome(scan=False)


def test_the_duplicate_check_is_dataframe_duplicated():
    from pipeline.findings import duplicated_rows

    rng = np.random.default_rng(1)
    n = 20_000
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, 5, n),
            "b": rng.choice([0.0, -0.0, np.nan, 1.5], n),
            "c": pd.array(rng.choice(["x", "y", None], n), dtype="str"),
            "d": pd.Series(rng.choice(["p", None, np.nan, 3], n), dtype=object),
            "e": pd.Categorical(rng.choice(["u", "v"], n)),
            "f": pd.array(rng.choice([1, 2, None], n), dtype="Int64"),
            "g": rng.choice([True, False], n),
            "h": pd.to_datetime(rng.choice(["2026-01-01", "2026-01-02", None], n)),
            "i": rng.integers(0, 3, n).astype(np.uint8),
        }
    )
    for columns in (["a"], ["a", "b"], ["b", "c", "d"], ["f", "g", "h", "i"], list(frame.columns)):
        expected = frame[columns].duplicated(keep="first").to_numpy()
        assert np.array_equal(duplicated_rows(frame[columns]), expected), columns
    # many columns of many values: the group ids are renumbered before they overflow
    wide = pd.DataFrame({f"k{i}": rng.integers(0, 1000, n) for i in range(12)})
    wide.iloc[n // 2 :] = wide.iloc[: n - n // 2].to_numpy()
    assert np.array_equal(duplicated_rows(wide), wide.duplicated().to_numpy())
    assert duplicated_rows(wide).sum() == n - n // 2
