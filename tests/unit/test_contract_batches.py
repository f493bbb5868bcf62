"""Issue 16: the contract validated a batch of rows at a time says exactly what validating the
whole table says: the same verdict, failures (values, data rows numbered across the table),
warnings, statistics and GX result, whatever the batch size, for every kind of broken rule,
including the ones no batch decides alone (row count, unique columns, rows unique together,
classes, duplicate rows) and the ``mostly`` rules whose verdict only the sums decide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.contract import validate_frame
from pipeline.contract_batches import validate_batches
from pipeline.contract_evidence import Values, value_hashes
from pipeline.contract_merge import by_column
from pipeline.findings import distinct_values
from pipeline.settings import CsvOptions, Settings
from pipeline.sources import resolve_package_uri
from pipeline.tabular import read_csv_bytes

PENGUINS = read_csv_bytes(
    resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes(), "penguins.csv", CsvOptions()
)


def penguins() -> pd.DataFrame:
    return PENGUINS.copy()


def settings(**data) -> Settings:
    return Settings.load(data=data)


def batched(frame: pd.DataFrame, rows: int):
    def batches():
        for start in range(0, max(len(frame), 1), rows):
            yield frame.iloc[start : start + rows].reset_index(drop=True)

    return batches


def without_meta(result: dict) -> dict:
    """A suite result without what differs between any two runs: its meta (run id, time) and
    the expectations' ids."""
    results = [
        {**r, "expectation_config": {k: v for k, v in r["expectation_config"].items() if k != "id"}}
        for r in result["results"]
    ]
    return {**{k: v for k, v in result.items() if k != "meta"}, "results": results}


def assert_same(frame: pd.DataFrame, data, sizes=(60, 150, 10_000)) -> None:
    whole = validate_frame(frame, data, "in.csv")
    for rows in sizes:
        part = validate_batches(batched(frame, rows), data, "in.csv")
        assert part.failures == whole.failures, rows
        assert part.warnings == whole.warnings, rows
        assert part.success == whole.success
        batches = part.statistics.pop("batches")
        assert batches == -(-len(frame) // rows)
        assert part.statistics == whole.statistics, rows
        assert without_meta(part.result) == without_meta(whole.result), rows
    return whole


def test_a_clean_table_passes_the_same_way() -> None:
    whole = assert_same(penguins(), settings().data)
    assert whole.success


def test_values_outside_a_rule_are_named_with_their_rows_across_batches() -> None:
    frame = penguins()
    frame.loc[[5, 200, 330], "island"] = ["Atlantis", "Atlantis", "Mars"]
    frame.loc[[7, 300], "bill_length_mm"] = [1e9, -5]
    frame.loc[9, "flipper_length_mm"] = np.inf
    frame.loc[[3, 150, 151], "sex"] = "=HYPERLINK(x)"
    whole = assert_same(frame, settings(unique_together=[["bill_length_mm", "bill_depth_mm", "island"]]).data)
    assert not whole.success
    assert any("'Atlantis' (2 rows: data rows [6, 201])" in f for f in whole.failures)
    assert any("'=HYPERLINK(x)' (3 rows: data rows [4, 151, 152])" in w for w in whole.warnings)


def test_formula_values_refused_and_rows_unique_together() -> None:
    frame = penguins()
    frame.loc[[3, 340], "sex"] = "@SUM(A1)"
    assert_same(frame, settings(formula_values="fail", unique_together=[["island", "year"]]).data)


@pytest.mark.parametrize("allowed", [0.0, 0.05, 0.2])
def test_missing_values_are_counted_over_the_whole_table(allowed: float) -> None:
    """Twenty missing values in the first 40 rows: a batch of them alone breaks 5%, the table
    (344 rows, 5.8%) breaks 5% and meets 20%."""
    frame = penguins()
    frame.loc[range(0, 40, 2), "island"] = None
    data = settings().data
    columns = {
        **data.columns,
        "island": data.columns["island"].model_copy(update={"max_null_fraction": allowed}),
    }
    whole = assert_same(frame, data.model_copy(update={"columns": columns}))
    assert whole.success is (allowed == 0.2)


def test_text_in_a_numeric_column_and_a_check_that_cannot_run() -> None:
    frame = penguins()
    frame["bill_depth_mm"] = frame["bill_depth_mm"].astype(object)
    frame.loc[[12, 290], "bill_depth_mm"] = ["n/a", "deep"]
    whole = assert_same(frame, settings().data)
    assert any("non-numeric values ['n/a', 'deep'] in data rows [13, 291]" in f for f in whole.failures)


def test_duplicate_rows_beyond_the_limit_are_named() -> None:
    frame = penguins()
    frame.iloc[:200] = frame.iloc[[0] * 120 + [1] * 50 + [2] * 30].to_numpy()
    whole = assert_same(frame, settings().data)
    assert whole.failures[0].startswith("table: 197 of 344 data rows")
    assert "appears 120 times (data rows [1, 2, 3, 4, 5, ...])" in whole.failures[0]


def test_a_unique_column_repeated_in_another_batch() -> None:
    frame = penguins().reset_index(names="id")
    frame.loc[[3, 250], "id"] = 10  # the same id three times, one of them in another batch
    frame.loc[[20, 21], "id"] = np.nan
    data = settings().data
    columns = {"id": {"type": "float", "role": "id", "unique": True, "max_null_fraction": 0.1}}
    data = Settings.load(
        data={"columns": {**columns, **{k: v.model_dump() for k, v in data.columns.items()}}}
    ).data
    whole = assert_same(frame, data)
    assert any(f.startswith("column 'id': 3 of 344 rows violate it") for f in whole.failures)


def test_one_class_too_few_rows_and_too_many() -> None:
    frame = penguins()
    frame["species"] = "Adelie"
    assert_same(frame, settings().data)
    assert_same(penguins().iloc[:8], settings().data, sizes=(1, 3, 100))
    assert_same(penguins(), settings(max_rows=300).data)


def test_missing_and_undeclared_columns() -> None:
    frame = penguins().drop(columns=["sex"]).assign(notes="x", extra=1)
    frame.loc[0, "island"] = "Atlantis"
    assert_same(frame, settings().data)
    assert_same(frame, settings(strict=True).data)


def test_the_data_docs_show_the_merged_result_escaped(tmp_path) -> None:
    frame = penguins()
    frame.loc[[4, 300], "island"] = "<img src=x onerror=alert(1)>"
    outcome = validate_batches(batched(frame, 50), settings().data, "in.csv", docs_dir=tmp_path)
    assert not outcome.success
    pages = [p.read_text() for p in (tmp_path / "validations").rglob("*.html")]
    assert len(pages) == 1
    assert "<img src=x" not in pages[0] and "&lt;img src=x onerror=alert(1)&gt;" in pages[0]
    assert "344" in pages[0]  # the whole table's row count, not a batch's
    assert (tmp_path / "index.html").is_file()


def test_values_rank_like_distinct_values() -> None:
    series = pd.Series(["b", "a", "c", "a", "b", "a", None, "d"] * 3)
    mask = series.isin(["a", "b", "d"]).to_numpy()
    values = Values()
    for start in range(0, len(series), 5):
        values.add(series.iloc[start : start + 5].reset_index(drop=True), mask[start : start + 5], start)
    assert values.text() == distinct_values(series, mask)
    assert values.text(shown=2).endswith("and 1 more distinct value(s)")


def test_equal_values_hash_alike_in_any_batch() -> None:
    floats = pd.Series([0.0, -0.0, np.nan, 1.5, None], dtype=float)
    a, b, missing = value_hashes(floats)
    assert a[0] == a[1] and b[0] == b[1] and a[2] == a[4] and a[0] != a[3]
    assert missing.tolist() == [False, False, True, False, True]
    text = pd.Series(["x", None, "y", "x"])
    first, second, _ = value_hashes(text.iloc[:2])
    third, fourth, _ = value_hashes(text.iloc[2:].reset_index(drop=True))
    assert first[0] == third[1] and second[0] == fourth[1] and first[0] != third[0]


def test_results_are_in_the_order_gx_reports_them() -> None:
    whole = validate_frame(penguins(), settings(unique_together=[["island", "year"]]).data, "in.csv")
    reported = [
        (r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column"))
        for r in whole.result["results"]
    ]

    class Config:
        def __init__(self, kind, column):
            self.type, self.kwargs = kind, {"column": column} if column else {}

    shuffled = sorted(reported, key=lambda item: (item[1] or "", item[0]))
    ordered = by_column([Config(*item) for item in reported])
    assert [(c.type, c.kwargs.get("column")) for c in ordered] == reported
    assert shuffled != reported  # the grouping is not alphabetical


# -- what a review found the batched path did differently (each fixed) -------------------------


def test_a_mostly_of_zero_is_a_value_not_the_default() -> None:
    frame = penguins()
    frame.loc[10, "bill_length_mm"] = 1000.0
    data = settings().data
    spec = data.columns["bill_length_mm"].model_copy(update={"max_nonfinite_fraction": 1.0})
    whole = assert_same(frame, data.model_copy(update={"columns": {**data.columns, "bill_length_mm": spec}}))
    assert whole.success


def test_rows_unique_together_skip_rows_whose_values_are_all_missing() -> None:
    """GX's default ignore_row_if: penguins has two rows without any measurement."""
    assert_same(penguins(), settings(unique_together=[["bill_length_mm", "bill_depth_mm"]]).data)


def test_checks_across_rows_on_a_missing_column_raise_as_gx_does() -> None:
    frame = penguins().drop(columns=["year"])
    data = settings(unique_together=[["island", "year"]]).data
    spec = data.columns["year"].model_copy(update={"unique": True})
    assert_same(frame, data.model_copy(update={"columns": {**data.columns, "year": spec}}))
    assert_same(penguins().drop(columns=["species"]), settings().data)


def test_checks_that_raise_keep_gx_order() -> None:
    assert_same(penguins().drop(columns=["bill_length_mm", "island"]), settings().data)


def test_formula_values_are_reported_in_contract_order() -> None:
    frame = penguins()
    frame.loc[300, "island"] = "=x"
    frame.loc[3, "sex"] = "@a"
    assert_same(frame, settings().data)
    assert_same(frame, settings(formula_values="fail").data)


def test_values_are_told_apart_by_their_text() -> None:
    frame = penguins()
    frame.loc[10, "bill_length_mm"] = 0.0
    frame.loc[11, "bill_length_mm"] = -0.0
    frame.loc[[10, 50], "island"] = "A" * 70 + "1"
    frame.loc[20, "island"] = "A" * 70 + "2"
    assert_same(frame, settings().data)


def test_nullable_numbers_compare_as_numbers() -> None:
    frame = penguins().reset_index(names="id")
    frame["id"] = frame["id"].astype("Float64")
    frame.loc[0, "id"], frame.loc[200, "id"] = 0.0, -0.0
    frame.loc[5, "id"] = pd.NA
    columns = {"id": {"type": "float", "role": "id", "unique": True, "max_null_fraction": 0.1}}
    base = settings().data
    data = Settings.load(
        data={"columns": {**columns, **{k: v.model_dump() for k, v in base.columns.items()}}}
    ).data
    whole = assert_same(frame, data)
    assert any(f.startswith("column 'id': 2 of 344 rows violate it") for f in whole.failures)


def test_duplicate_rows_of_numbers_and_signed_zeros() -> None:
    from sklearn.datasets import load_diabetes

    from pipeline.settings import packaged_config

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["age"] = frame["age"].astype("int64")
    frame.iloc[:300] = frame.iloc[[0] * 300].to_numpy()
    frame.loc[150:299, "bmi"] = -0.0
    frame.loc[:149, "bmi"] = 0.0
    frame["age"] = frame["age"].astype("int64")
    data = Settings.load(packaged_config("diabetes.yaml")).data
    spec = data.columns["bmi"].model_copy(update={"min": -1})
    whole = assert_same(frame, data.model_copy(update={"columns": {**data.columns, "bmi": spec}}))
    assert "appears 300 times" in whole.failures[0] and "age=59," in whole.failures[0]


def test_a_message_says_when_it_stopped_counting_distinct_values(monkeypatch) -> None:
    from pipeline import contract_evidence

    monkeypatch.setattr(contract_evidence, "DISTINCT_KEPT", 12)
    series = pd.Series([f"v{i}" for i in range(30)])
    values = Values()
    values.add(series, np.ones(30, bool), 0)
    assert values.rows == 30
    assert values.text().endswith("and more than 2 more distinct value(s)")


def test_the_data_docs_have_the_pages_of_the_whole_tables(tmp_path) -> None:
    frame = penguins()
    frame.loc[4, "island"] = "Atlantis"
    validate_frame(frame, settings().data, "in.csv", docs_dir=tmp_path / "whole")
    validate_batches(batched(frame, 100), settings().data, "in.csv", docs_dir=tmp_path / "batches")

    def pages(root):
        return sorted((p.relative_to(root).parts[0], p.name) for p in root.rglob("*.html"))

    assert pages(tmp_path / "batches") == pages(tmp_path / "whole")
    assert ("expectations", "penguins_contract.html") in pages(tmp_path / "whole")
