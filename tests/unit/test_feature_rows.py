"""Publishing a feature set from Parquet a record batch at a time (``FeatureRows.from_parquet``,
what the features step does) stores what publishing the whole-file pandas read stores: the same
schema (so the same data table), the same rows read back; a load that does not deliver the rows
it announced publishes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.featurestore import FeatureRows, FeatureStore, schema_of

ROWS = 5_000


def processed_like(n: int = ROWS) -> pa.Table:
    """Columns as the preprocess step writes them, plus the awkward kinds another writer's file
    has (no pandas metadata): an integer column whose only missing value sits in the last row
    group, booleans with and without a missing value, text with missing values."""
    rng = np.random.default_rng(3)
    late_null = rng.integers(0, 9, n).astype(object)
    late_null[n - 3] = None
    flags = rng.choice([True, False], n).astype(object)
    flags[10] = None
    return pa.table(
        {
            "row_id": pa.array(np.arange(n, dtype="int64")),
            "split": pa.array(rng.choice(["train", "val", "test"], n)),
            "num__x": pa.array(rng.normal(size=n).astype(np.float32)),
            "cat__c": pa.array(rng.integers(0, 5, n)),
            "late_null": pa.array(late_null, type=pa.int64()),
            "flag": pa.array(rng.choice([True, False], n)),
            "flag_missing": pa.array(flags, type=pa.bool_()),
            "text": pa.array(
                np.where(rng.random(n) < 0.1, None, rng.choice(["a", "b"], n)), type=pa.string()
            ),
            "target": pa.array(rng.integers(0, 3, n)),
        }
    )


def write_parquet(path: Path, table: pa.Table, *, statistics: bool = True) -> Path:
    pq.write_table(table, path, row_group_size=1_024, write_statistics=statistics)
    return path


def test_a_frame_written_by_pandas_keeps_its_dtypes(tmp_path):
    frame = pd.DataFrame({"row_id": np.arange(4), "n": pd.array([1, None, 3, 4], dtype="Int64")})
    path = tmp_path / "p.parquet"
    frame.to_parquet(path, index=False)
    assert FeatureRows.from_parquet(path).schema == schema_of(pd.read_parquet(path))


def published(url: str, data) -> tuple[str, pd.DataFrame]:
    store = FeatureStore(url)
    try:
        version = store.write(data, "t", content_hash="h", run_id="r")
        return version.table_name, store.read("t", version.version)
    finally:
        store.close()


@pytest.mark.parametrize("statistics", [True, False], ids=["with-statistics", "without-statistics"])
def test_the_schema_is_the_whole_file_reads(tmp_path, statistics):
    path = write_parquet(tmp_path / "f.parquet", processed_like(), statistics=statistics)
    rows = FeatureRows.from_parquet(path)
    whole = pd.read_parquet(path)
    assert rows.schema == schema_of(whole)
    assert rows.schema["late_null"] == "double precision"  # pandas reads it as floats
    assert rows.schema["cat__c"] == "bigint"
    assert rows.row_count == len(whole)
    chunks = list(rows.chunks(1_000))
    assert [len(c) for c in chunks] == [1_000] * 5
    assert pd.concat(chunks, ignore_index=True)["row_id"].tolist() == whole["row_id"].tolist()


def test_publishing_batch_by_batch_stores_what_the_whole_frame_stores(tmp_path):
    path = write_parquet(tmp_path / "f.parquet", processed_like())
    table_a, streamed = published(f"sqlite:///{tmp_path / 'a.db'}", FeatureRows.from_parquet(path))
    table_b, whole = published(f"sqlite:///{tmp_path / 'b.db'}", pd.read_parquet(path))
    assert table_a == table_b
    pd.testing.assert_frame_equal(streamed, whole)
    assert len(streamed) == ROWS


def test_rows_short_of_their_count_publish_nothing(tmp_path):
    path = write_parquet(tmp_path / "f.parquet", processed_like())
    full = FeatureRows.from_parquet(path)
    short = FeatureRows(full.columns, full.schema, full.row_count + 1, full.chunks)
    store = FeatureStore(f"sqlite:///{tmp_path / 'fs.db'}")
    try:
        with pytest.raises(RuntimeError, match=f"read {ROWS} rows to publish, expected {ROWS + 1}"):
            store.write(short, "t", content_hash="h", run_id="r")
        assert store.versions("t") == []
        assert store.write(full, "t", content_hash="h", run_id="r").version == 1
    finally:
        store.close()


def test_a_stored_pandas_index_is_not_a_column_as_in_the_whole_file_read(tmp_path):
    frame = pd.DataFrame({"row_id": np.arange(3), "x": [0.5, 1.5, 2.5]}, index=[10, 20, 30])
    path = tmp_path / "indexed.parquet"
    frame.to_parquet(path)  # the index is stored as __index_level_0__
    rows = FeatureRows.from_parquet(path)
    assert rows.columns == ["row_id", "x"]
    assert rows.schema == schema_of(pd.read_parquet(path))
    _, back = published(f"sqlite:///{tmp_path / 'fs.db'}", rows)
    assert back["x"].tolist() == [0.5, 1.5, 2.5]


@pytest.mark.parametrize("chunk_rows", [7, 1_000, 100_000])
def test_a_version_read_a_chunk_at_a_time_is_the_whole_read(tmp_path, monkeypatch, chunk_rows):
    """What the train step reads: the chunks, in order, make the frame ``read`` gives."""
    from pipeline.featurestore import generic

    monkeypatch.setattr(generic, "READ_CHUNK_ROWS", chunk_rows)
    frame = processed_like().to_pandas()
    store = FeatureStore(f"sqlite:///{tmp_path / 'fs.db'}")
    try:
        version = store.write(frame, "t", content_hash="c" * 64, run_id="r1")
        chunks = list(store.read_chunks("t", version.version))
        assert len(chunks) == -(-ROWS // chunk_rows)
        pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), store.read("t", version.version))
        assert all(c.dtypes.equals(chunks[0].dtypes) for c in chunks)
    finally:
        store.close()


def test_train_reads_the_version_from_its_own_parquet_file_only_when_the_hashes_agree(tmp_path):
    """The train step reads the preprocess step's features.parquet when its SHA-256 is the
    version's content hash (the same rows: the same tensors as the store gives), and the store
    when it is not (a file that changed since)."""
    import hashlib

    from pipeline.splits import read_splits, version_file
    from pipeline.transform import TabularTransformer

    table = processed_like().select(["row_id", "split", "num__x", "cat__c", "target"])
    path = write_parquet(tmp_path / "features.parquet", table)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"sqlite:///{tmp_path / 'fs.db'}"
    store = FeatureStore(url)
    try:
        version = store.write(FeatureRows.from_parquet(path), "t", content_hash=digest, run_id="r1")
    finally:
        store.close()
    features = {"feature_set": "t", "feature_set_version": version.version, "content_hash": digest}
    transformer = TabularTransformer(
        task="classification", target="target", numeric=["x"], categorical=["c"], classes=[0, 1, 2]
    )
    assert version_file(path, features) == path
    from_file = read_splits(url, features, transformer, None, path)
    from_store = read_splits(url, features, transformer, None, None)
    for name in from_store:
        for field in ("x_num", "x_cat", "y"):
            a, b = getattr(from_file[name], field), getattr(from_store[name], field)
            assert a.dtype == b.dtype and bool((a == b).all()), (name, field)
    other = write_parquet(tmp_path / "other.parquet", table.slice(1))
    assert version_file(other, features) is None
