"""Issue 16: the preprocess step on a snapshot read a batch of rows at a time writes what it
writes for the whole table: the same rows and splits, the same fitted transform (medians, means,
deviations, vocabularies, classes), the same leakage check, and the same ``features.parquet``
(with its row groups) and ``test_raw.parquet``, for CSV and Parquet snapshots, classification and
regression, missing targets, duplicate rows and undeclared columns, and any batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.errors import BadInputError
from pipeline.preprocess_batches import preprocess_batches
from pipeline.settings import CsvOptions, Settings
from pipeline.sources import resolve_package_uri
from pipeline.steps import preprocess
from pipeline.steps.preprocess import preprocess_whole

PENGUINS = resolve_package_uri("pkg://palmerpenguins/data/penguins.csv")


def penguins() -> pd.DataFrame:
    return pd.read_csv(PENGUINS)


def outputs(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("features", "test_raw")}


def row_groups(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def assert_same(raw: Path, fmt: str, settings: Settings, tmp_path: Path, sizes=(1, 7, 60, 100_000)):
    csv = settings.data.source.csv
    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    whole = preprocess_whole(raw, fmt, csv, settings, whole_dir)
    expected = outputs(whole_dir)
    for rows in sizes:
        folder, scratch = tmp_path / f"batches-{rows}", tmp_path / f"scratch-{rows}"
        folder.mkdir()
        scratch.mkdir()
        part = preprocess_batches(raw, fmt, csv, settings, folder, scratch, rows)
        assert part == whole, rows  # figures, fitted transform and leakage summary
        got = outputs(folder)
        for name, frame in expected.items():
            where = f"{name} ({rows} rows a batch)"
            pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=where)
        assert row_groups(folder / "features.parquet") == row_groups(whole_dir / "features.parquet")
        assert list(scratch.iterdir()) == []  # the spill is gone
    return whole


@pytest.fixture(autouse=True)
def small_row_groups(monkeypatch):
    monkeypatch.setattr(preprocess, "PROCESSED_BATCH_ROWS", 64)


def test_penguins_with_gaps_duplicates_and_undeclared_columns(tmp_path: Path) -> None:
    frame = penguins()
    frame.loc[[10, 200, 201], "species"] = None  # no target: dropped
    frame = pd.concat([frame, frame.iloc[[5, 6, 300, 5]]], ignore_index=True)  # repeated rows
    frame["notes"] = np.where(frame.index % 3 == 0, "checked", None)
    frame["code"] = np.arange(len(frame)) % 7
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    whole = assert_same(raw, "csv", Settings.load(), tmp_path)
    assert whole.dropped_target == 3 and whole.dropped_duplicates == 4
    assert whole.leakage["status"] in ("passed", "warned")


def test_a_parquet_snapshot_with_categories_nullable_integers_and_an_index(tmp_path: Path) -> None:
    frame = penguins()
    frame["island"] = frame["island"].astype("category")
    frame["year"] = frame["year"].astype("Int64")
    frame.loc[[3, 40], "year"] = pd.NA
    frame.index = frame.index + 1000  # stored in the file as a column the reads leave out
    raw = tmp_path / "raw.parquet"
    frame.to_parquet(raw, row_group_size=50)
    assert_same(raw, "parquet", Settings.load(), tmp_path, sizes=(9, 64, 100_000))


def test_regression_with_a_sampled_leakage_check(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    settings = Settings.load(
        packaged("diabetes.yaml"), data={"source": {"uri": str(raw)}, "leakage": {"max_rows": 100}}
    )
    whole = assert_same(raw, "csv", settings, tmp_path, sizes=(16, 100_000))
    assert whole.leakage["rows"] == 100  # the sample, drawn the same way


@pytest.mark.parametrize(
    "options",
    [
        {"deduplicate": False, "numeric_impute": "mean"},
        {"min_category_count": 30, "categorical_impute": "most_frequent", "scale": False},
    ],
)
def test_other_preprocess_options(tmp_path: Path, options: dict) -> None:
    frame = pd.concat([penguins(), penguins().iloc[:20]], ignore_index=True)
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    assert_same(raw, "csv", Settings.load(preprocess=options), tmp_path, sizes=(25, 100_000))


@pytest.mark.parametrize("broken", ["missing column", "too few rows"])
def test_bad_input_is_refused_with_the_same_error(tmp_path: Path, broken: str) -> None:
    frame = penguins()
    if broken == "missing column":
        frame = frame.drop(columns=["island"])
    else:
        frame = frame.iloc[:6].copy()
        frame.loc[:, "species"] = [None, None, None, None, "Adelie", "Adelie"]
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    settings = Settings.load()
    errors = []
    for attempt in ("whole", "batches"):
        folder = tmp_path / attempt
        folder.mkdir()

        def run(attempt=attempt, folder=folder):
            if attempt == "whole":
                return preprocess_whole(raw, "csv", CsvOptions(), settings, folder)
            return preprocess_batches(raw, "csv", CsvOptions(), settings, folder, folder, 2)

        with pytest.raises(BadInputError) as info:
            run()
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "island" in errors[0] if broken == "missing column" else "only 2 usable rows" in errors[0]


def test_the_leakage_sample_is_the_one_pandas_draws() -> None:
    frame = pd.DataFrame({"a": np.arange(5_000)})
    drawn = frame.sample(n=300, random_state=42)
    picked = np.random.RandomState(42).choice(len(frame), size=300, replace=False)
    assert drawn.index.tolist() == picked.tolist()


def packaged(name: str) -> Path:
    from pipeline.settings import packaged_config

    return packaged_config(name)


def test_a_stored_index_signed_zeros_and_a_column_named_like_the_row_id(tmp_path: Path) -> None:
    """What a review found: a Parquet snapshot with a stored (non-range) pandas index, rows that
    repeat but for -0.0 and 0.0 in a nullable float column, and an undeclared ``__row_id``."""
    frame = penguins().sample(frac=1.0, random_state=3)  # a shuffled index, stored in the file
    frame["bill_depth_mm"] = frame["bill_depth_mm"].astype("Float64")
    frame.iloc[:10, frame.columns.get_loc("bill_depth_mm")] = -0.0
    frame = pd.concat([frame, frame.iloc[:10].assign(bill_depth_mm=0.0)])  # repeats but for the sign
    frame["__row_id"] = np.arange(len(frame)) * 3
    raw = tmp_path / "raw.parquet"
    frame.to_parquet(raw, row_group_size=40)
    whole = assert_same(raw, "parquet", Settings.load(), tmp_path, sizes=(7, 100_000))
    assert whole.dropped_duplicates >= 10
