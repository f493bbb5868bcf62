"""Contract messages that say the real cause (issue 13): another delimiter, a header cell with an
invisible character, every header problem at once, distinct offending values with their rows,
formula-like text, duplicate rows, columns outside the contract, rule names printed whole."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contract import validate_frame
from pipeline.errors import BadInputError
from pipeline.findings import data_rows, distinct_values, formula_like, header_findings
from pipeline.settings import CsvOptions, Settings
from pipeline.sources import resolve_package_uri
from pipeline.tabular import (
    TableLimits,
    read_csv_bytes,
    read_parquet_bytes,
    read_table_bytes,
    sniff_delimiter,
)

PENGUINS = resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes()
DATA = Settings.load().data
LIMITS = TableLimits.of(DATA)


def table() -> list[list[str]]:
    return list(csv.reader(io.StringIO(PENGUINS.decode())))


def to_csv(rows: list[list[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def penguins() -> pd.DataFrame:
    return read_csv_bytes(PENGUINS, "penguins.csv", CsvOptions())


# -- another delimiter -----------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "said"), [(";", ";-delimited"), ("\t", "tab-delimited"), ("|", "|-")])
def test_a_file_with_another_delimiter_names_the_delimiter_to_set(delimiter: str, said: str) -> None:
    data = to_csv(table(), delimiter)
    with pytest.raises(BadInputError) as info:
        read_csv_bytes(data, "in.csv", CsvOptions(), LIMITS, contract=DATA)
    message = str(info.value)
    assert f"the file in.csv looks {said}" in message
    assert f"set data.source.csv.delimiter={delimiter!r}" in message
    assert "split into 8 fields" in message and "its header into 1 on the configured ','" in message


def test_a_ragged_row_from_another_delimiter_says_so() -> None:
    data = b"species;island\nAdelie;Biscoe\nGentoo;Dre,am\nAdelie;Dream\n"
    with pytest.raises(BadInputError) as info:
        read_csv_bytes(data, "in.csv", CsvOptions())
    message = str(info.value)
    assert message.startswith("in.csv: line 3 has 2 fields, expected 1")
    assert "looks ;-delimited" in message and "data.source.csv.delimiter=';'" in message


def test_configured_column_names_are_what_the_contract_checks() -> None:
    data = b"a,b,c,d,e,f,g,h\n" + PENGUINS.split(b"\n", 1)[1]
    frame = read_csv_bytes(
        data, "named.csv", CsvOptions(column_names=list(DATA.columns)), LIMITS, contract=DATA
    )
    assert list(frame.columns) == list(DATA.columns)


def test_a_right_delimiter_is_not_second_guessed() -> None:
    assert sniff_delimiter(b"a,b\nx;y,1\nz;w,2\n", CsvOptions()) is None
    assert sniff_delimiter(PENGUINS, CsvOptions()) is None
    assert sniff_delimiter(b"a;b\n1;2\n", CsvOptions(delimiter=";")) is None
    # one column, nothing else consistent: no hint (a ragged row keeps its plain message)
    with pytest.raises(BadInputError) as info:
        read_csv_bytes(b"a,b\n1,2\n3\n", "f.csv", CsvOptions())
    assert "delimited" not in str(info.value)


# -- invisible header characters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "said"),
    [
        (
            "species\u200b",
            r"header cell 1 'species\u200b' looks like contract column 'species': it has a "
            "trailing zero-width space (U+200B) at position 8",
        ),
        (
            "spe\u00a0cies",
            r"'spe\xa0cies' looks like contract column 'species': it has a non-breaking space "
            "(U+00A0) at position 4",
        ),
        ("spe\ufeffcies", "a byte-order mark (zero-width no-break space) (U+FEFF) at position 4"),
        (" species", "it has a leading space (U+0020) at position 1"),
        ("species ", "it has a trailing space (U+0020) at position 8"),
        ("Species", "it has 'S' where the contract has 's' (case) at position 1"),
        ("bill length_mm", "a space (U+0020) where the contract has '_' at position 5"),
        ("billlength_mm", "it has no '_' before position 5"),
    ],
)
def test_a_header_cell_that_looks_like_a_missing_column_is_named(cell: str, said: str) -> None:
    column = "bill_length_mm" if cell.startswith("bill") else "species"
    names = [cell if c == column else c for c in DATA.columns]
    findings = header_findings(names, DATA)
    (error,) = findings.errors
    assert error.startswith(f"column {column!r}: missing (rule: required column present)")
    assert said in error
    assert findings.extra == []  # the look-alike is not also reported as an undeclared column


def test_a_zero_width_space_in_the_file_header_reaches_the_validation_message() -> None:
    data = PENGUINS.replace(b"species", "species\u200b".encode(), 1)
    frame = read_csv_bytes(data, "in.csv", CsvOptions(), LIMITS, contract=DATA)
    assert frame.columns[0] == "species\u200b"  # nothing is renamed silently
    outcome = validate_frame(frame, DATA, "in.csv")
    assert not outcome.success
    assert any(
        r"header cell 1 'species\u200b' looks like contract column 'species'" in f for f in outcome.failures
    )


def test_an_optional_column_that_looks_absent_is_a_warning() -> None:
    data = DATA.model_copy(deep=True)
    data.columns["sex"].required = False
    findings = header_findings([("Sex" if c == "sex" else c) for c in data.columns], data)
    assert findings.errors == []
    assert any(
        "optional column 'sex' is absent, but header cell 7 'Sex' looks like it" in w
        for w in findings.warnings
    )


# -- every header problem at once ------------------------------------------------------------


def test_every_header_problem_is_reported_in_one_error_before_rows_are_parsed() -> None:
    long_name = "x" * 2000
    header = (
        [c for c in DATA.columns if c != "species"] + [long_name, "bad\x1bname"] + [f"e{i}" for i in range(5)]
    )
    data = ",".join(header).encode() + b"\n" + b"\n".join(b"1," * (len(header) - 1) + b"1" for _ in range(3))
    limits = TableLimits(max_rows=DATA.max_rows, max_columns=10)
    with pytest.raises(BadInputError) as info:
        read_csv_bytes(data, "wide.csv", CsvOptions(), limits, contract=DATA)
    message = str(info.value)
    assert message.startswith("wide.csv: 4 problems with its header:")
    assert "14 columns, more than data.max_columns=10" in message
    assert "header cell 8 'xxxxxxxx" in message and "a name of 2000 characters" in message
    assert r"header cell 9 'bad\x1bname' has a control character (U+001B) at position 4" in message
    assert "column 'species': missing (rule: required column present)" in message
    assert long_name not in message  # an over-long name is shown cut


def test_a_header_cell_beyond_what_csv_reads_is_refused_before_the_rows() -> None:
    data = b"species," + b"y" * 200_000 + b"\nAdelie,1\n"
    with pytest.raises(BadInputError, match=r"^huge\.csv: a header cell is longer than 131072 characters"):
        read_csv_bytes(data, "huge.csv", CsvOptions(), LIMITS, contract=DATA)


def test_a_parquet_header_is_checked_the_same_way() -> None:
    frame = penguins().drop(columns=["species"]).rename(columns={"island": "island\u200b"})
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    with pytest.raises(BadInputError) as info:
        read_parquet_bytes(buffer.getvalue(), "in.parquet", TableLimits(max_columns=5), contract=DATA)
    message = str(info.value)
    assert "in.parquet: 3 problems with its header" in message
    assert "7 columns, more than data.max_columns=5" in message
    assert "column 'species': missing" in message
    assert r"'island\u200b' looks like contract column 'island'" in message


def test_a_single_width_problem_keeps_its_one_line_message() -> None:
    with pytest.raises(BadInputError, match=r"^f\.csv: 3 columns, more than data\.max_columns=2 \(rule"):
        read_table_bytes(b"a,b,c\n1,2,3\n", "f.csv", "csv", CsvOptions(), TableLimits(max_columns=2))


# -- columns outside the contract ------------------------------------------------------------


def test_columns_outside_the_contract_are_named_and_counted() -> None:
    names = [*DATA.columns, *(f"extra{i}" for i in range(25))]
    findings = header_findings(names, DATA)
    assert findings.errors == []
    (warning,) = findings.warnings
    assert warning.startswith("table: 25 column(s) outside the contract are ignored: ['extra0', 'extra1',")
    assert "'extra9'] and 15 more" in warning and "'extra10'" not in warning
    assert "data.strict=true" in warning


@pytest.mark.parametrize("update", [{"strict": True}, {"allow_extra_columns": False}])
def test_a_strict_contract_refuses_them(update: dict) -> None:
    data = Settings.load(data=update).data
    findings = header_findings([*data.columns, "extra0", "extra1"], data)
    (error,) = findings.errors
    assert error.startswith(
        "table: 2 column(s) outside the contract: ['extra0', 'extra1'] (rule: data.strict"
    )


def test_a_strict_contract_fails_validation_naming_the_columns_once() -> None:
    frame = penguins()
    for i in range(30):
        frame[f"u{i}"] = 1.0
    outcome = validate_frame(frame, Settings.load(data={"strict": True}).data, "wide.csv")
    assert not outcome.success
    assert outcome.failures == [
        "table: 30 column(s) outside the contract: ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', "
        "'u9'] and 20 more (rule: data.strict=true: only the columns declared in data.columns; declare "
        "them with role 'ignore', or set data.strict=false to drop them with a warning)"
    ]
    assert outcome.statistics["undeclared_columns"] == 30


# -- values: distinct offenders with rows, formulas, duplicates --------------------------------


@pytest.fixture(scope="module")
def several() -> tuple:
    """One frame breaking several value rules, validated once."""
    frame = penguins()
    frame.loc[[3, 8], "island"] = "Atlantis"
    frame.loc[11, "island"] = "Mars"
    frame.loc[[5, 6], "body_mass_g"] = 99999.0
    frame.loc[20, "sex"] = '=HYPERLINK("http://x")'
    frame.loc[21, "sex"] = "-3.5"  # a number, not a formula
    frame.loc[22, "sex"] = "@SUM(A1)"
    data = Settings.load(data={"columns": {"sex": {"allowed": None}}}).data
    return frame, data, validate_frame(frame, data, "values.csv")


def test_allowed_list_failures_give_each_distinct_value_with_its_count_and_rows(several) -> None:
    _, _, outcome = several
    (island,) = [f for f in outcome.failures if f.startswith("column 'island'")]
    assert island == (
        "column 'island': 3 of 344 rows hold values outside the allowed list: 'Atlantis' (2 rows: data "
        "rows [4, 9]), 'Mars' (1 row: data row [12]) (rule: values in ['Biscoe', 'Dream', 'Torgersen']; "
        "GX check expect_column_values_to_be_in_set)"
    )


def test_range_failures_give_values_and_rows_too(several) -> None:
    _, _, outcome = several
    (mass,) = [f for f in outcome.failures if f.startswith("column 'body_mass_g'")]
    assert "2 of 344 rows violate it" in mass and "99999.0 (2 rows: data rows [6, 7])" in mass


def test_formula_values_are_a_warning_with_their_rows(several) -> None:
    _, _, outcome = several
    (warning,) = outcome.warnings
    assert warning.startswith("column 'sex': 2 value(s) start like a spreadsheet formula:")
    assert "'=HYPERLINK(\"http://x\")' (1 row: data row [21])" in warning
    assert "'@SUM(A1)' (1 row: data row [23])" in warning and "-3.5" not in warning
    assert "data.formula_values=warn" in warning
    assert not any("formula" in f for f in outcome.failures)


@pytest.mark.parametrize(("mode", "refused", "warned"), [("fail", True, False), ("ignore", False, False)])
def test_formula_values_can_be_refused_or_ignored(several, mode: str, refused: bool, warned: bool) -> None:
    frame, data, _ = several
    frame = frame.copy()
    frame.loc[:, "island"] = penguins()["island"]
    frame.loc[:, "body_mass_g"] = penguins()["body_mass_g"]
    outcome = validate_frame(frame, data.model_copy(update={"formula_values": mode}), "values.csv")
    assert outcome.success is not refused
    assert any("spreadsheet formula" in f for f in outcome.failures) is refused
    assert any("spreadsheet formula" in w for w in outcome.warnings) is warned


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", True),
        ("+cmd|' /C calc'!A0", True),
        ("-2+3+cmd", True),
        ("@SUM(A1)", True),
        ("= A1", True),
        ("-3.5", False),
        ("+1", False),
        ("-inf", False),
        ("-", False),
        ("a=b", False),
        ("", False),
        (3, False),
    ],
)
def test_what_looks_like_a_formula(value, expected: bool) -> None:
    assert formula_like(value) is expected


def test_all_identical_rows_are_named_as_duplicates() -> None:
    frame = penguins()
    frame.loc[:] = frame.iloc[[0] * len(frame)].to_numpy()
    outcome = validate_frame(frame, DATA, "same.csv")
    assert not outcome.success
    first = outcome.failures[0]
    assert first.startswith("table: 343 of 344 data rows (99.7%) repeat an earlier row over the columns [")
    assert "the row {island='Torgersen', bill_length_mm=39.1," in first
    assert "appears 344 times (data rows [1, 2, 3, 4, 5, ...])" in first
    assert "data.max_duplicate_fraction=0.5" in first
    assert outcome.statistics["duplicate_rows"] == 343


def test_a_few_duplicates_pass_and_are_counted() -> None:
    frame = penguins()
    frame.loc[1] = frame.loc[0]
    outcome = validate_frame(frame, DATA, "few.csv")
    assert outcome.success, outcome.failures
    assert outcome.statistics["duplicate_rows"] == 1


def test_rule_names_are_whole_and_not_console_markup() -> None:
    frame = penguins()
    frame["species"] = "Adelie"
    outcome = validate_frame(frame, DATA, "one.csv")
    assert any(
        f.endswith(
            "(rule: at least 2 distinct classes; GX check expect_column_unique_value_count_to_be_between)"
        )
        for f in outcome.failures
    ), outcome.failures
    assert not any("[expect_" in f for f in outcome.failures)


def test_missing_columns_and_value_failures_are_reported_together() -> None:
    frame = penguins().drop(columns=["sex"])
    frame.loc[0, "island"] = "Atlantis"
    outcome = validate_frame(frame, DATA, "both.csv")
    assert [f.split(":")[0] for f in outcome.failures] == ["column 'sex'", "column 'island'"]


def test_row_helpers_count_from_one_and_cut_long_lists() -> None:
    assert data_rows([False, True, False, True]) == "data rows [2, 4]"
    assert data_rows([True] * 7) == "data rows [1, 2, 3, 4, 5, ...]"
    series = pd.Series(["a", "b\u200b", "a", None, 2.5])
    mask = [True, True, True, False, True]
    assert distinct_values(series, mask) == (
        r"'a' (2 rows: data rows [1, 3]), 'b\u200b' (1 row: data row [2]), 2.5 (1 row: data row [5])"
    )


def test_duplicates_with_missing_values_are_named_too() -> None:
    """pandas keeps a missing value missing under astype(str): the duplicate message's row keys
    must still be text (this raised TypeError instead of naming the rows)."""
    frame = penguins()
    frame.iloc[:300] = frame.iloc[[3] * 300].to_numpy()  # row 4 has missing measurements
    outcome = validate_frame(frame, DATA, "gaps.csv")
    assert not outcome.success
    assert "appears 300 times (data rows [1, 2, 3, 4, 5, ...])" in outcome.failures[0]
    assert "bill_length_mm=nan" in outcome.failures[0]
