"""The feature store on a real PostgreSQL: typed columns, awkward values round-trip exactly, any
version reads back, names are validated and quoted (never formatted into SQL), names over 63 bytes
are refused, a version is read through its partition and primary key, loads of one feature set
are serialised into distinct versions."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import EXIT_BAD_INPUT, BadInputError
from pipeline.featurestore import FeatureStore
from tests.services import PostgresServer, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres: PostgresServer) -> Iterator[FeatureStore]:
    url = postgres.create_database(unique("fs_"))
    feature_store = FeatureStore(url)
    yield feature_store
    feature_store.close()


def database_of(store: FeatureStore) -> str:
    return store.url.rsplit("/", 1)[1]


def awkward_frame() -> pd.DataFrame:
    texts = ["plain", 'quote " and, comma', "new\nline", "back\\slash", "ünïcødé ✓", "", None, "NULL"]
    rows = len(texts)
    return pd.DataFrame(
        {
            "row_id": np.arange(rows, dtype="int64"),
            "f": [0.1, np.nan, np.inf, -np.inf, -0.0, 1e308, 5e-324, 1 / 3],
            "i": np.array([0, -1, 2**62, -(2**62), 7, 8, 9, 10], dtype="int64"),
            "b": [True, False, True, False, True, False, True, False],
            "t": texts,
            "MixedCase": np.arange(rows, dtype="float64"),
        }
    )


def test_awkward_values_round_trip_exactly_with_typed_columns(
    store: FeatureStore, postgres: PostgresServer
) -> None:
    frame = awkward_frame()
    version = store.write(frame, "awkward", content_hash="a" * 64, run_id="r1")
    back = store.read("awkward", version.version)
    assert list(back.columns) == list(frame.columns)
    pd.testing.assert_series_equal(back["f"], frame["f"], check_names=True)
    assert np.signbit(back["f"][4]), "-0.0 keeps its sign"
    pd.testing.assert_series_equal(back["i"], frame["i"])
    assert back["b"].tolist() == frame["b"].tolist()
    assert back["t"].tolist()[:6] == frame["t"].tolist()[:6]
    assert pd.isna(back["t"][6]), "NULL stays NULL"
    assert back["t"][7] == "NULL", "the text 'NULL' is not NULL"
    assert back["t"][5] == "", "an empty string is not NULL"
    types = dict(
        postgres.query(
            database_of(store),
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (f"{version.table_name}_v1",),
        )
    )
    assert types == {
        "_version": "integer",
        "row_id": "bigint",
        "f": "double precision",
        "i": "bigint",
        "b": "boolean",
        "t": "text",
        "MixedCase": "double precision",
    }


def test_any_version_reads_back_through_its_partition_and_key(
    store: FeatureStore, postgres: PostgresServer
) -> None:
    rng = np.random.default_rng(1)
    frames = []
    for n in range(3):
        frame = pd.DataFrame({"row_id": np.arange(500, dtype="int64"), "x": rng.normal(size=500)})
        if n == 2:  # a new schema: a new table, the old versions stay readable
            frame["extra"] = "e"
        frames.append(frame)
        assert store.write(frame, "multi", content_hash=str(n) * 64, run_id=f"r{n}").version == n + 1
    for n, frame in enumerate(frames, start=1):
        pd.testing.assert_frame_equal(store.read("multi", n), frame, check_dtype=False)
    versions = store.versions("multi")
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[0].table_name == versions[1].table_name != versions[2].table_name

    database = database_of(store)
    table = versions[0].table_name
    indexes = postgres.query(
        database, "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (f"{table}_v2",)
    )
    assert any("(_version, row_id)" in d for (d,) in indexes), indexes
    plan = postgres.query(
        database, f'EXPLAIN (FORMAT JSON) SELECT * FROM "{table}" WHERE _version = 2 ORDER BY row_id'
    )[0][0]
    scanned = set()

    def walk(node: dict) -> None:
        if "Relation Name" in node:
            scanned.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    assert scanned == {f"{table}_v2"}, "only the version's partition is read"


def test_rewriting_the_same_run_and_content_returns_the_same_version(store: FeatureStore) -> None:
    frame = awkward_frame()
    first = store.write(frame, "same", content_hash="c" * 64, run_id="run-1")
    again = store.write(frame, "same", content_hash="c" * 64, run_id="run-1")
    assert again.version == first.version == 1
    assert [v.version for v in store.versions("same")] == [1]


@pytest.mark.parametrize(
    ("column", "rule"),
    [
        ('x"; DROP TABLE feature_set_versions; --', "not a valid identifier"),
        ("a" * 64, "at most 63 bytes"),
        ("é" * 32, "at most 63 bytes"),  # 64 bytes in UTF-8, 32 characters
        ("1starts_with_digit", "not a valid identifier"),
    ],
)
def test_bad_column_names_are_refused_before_anything_is_written(
    store: FeatureStore, postgres: PostgresServer, column: str, rule: str
) -> None:
    frame = pd.DataFrame({"row_id": [1, 2], column: [0.5, 1.5]})
    with pytest.raises(BadInputError) as caught:
        store.write(frame, "bad", content_hash="d" * 64, run_id="r")
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert rule in str(caught.value) and "column" in str(caught.value)
    tables = postgres.query(database_of(store), "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [] or tables == [("feature_set_versions",)]
    assert store.versions("bad") == []


def test_a_63_byte_column_name_is_kept_whole(store: FeatureStore) -> None:
    column = "c" * 63
    frame = pd.DataFrame({"row_id": [1, 2], column: [0.5, 1.5]})
    version = store.write(frame, "edge", content_hash="e" * 64, run_id="r")
    assert list(store.read("edge", version.version).columns) == ["row_id", column]


def test_a_feature_set_name_too_long_for_its_partitions_is_refused(store: FeatureStore) -> None:
    frame = pd.DataFrame({"row_id": [1, 2], "x": [0.5, 1.5]})
    with pytest.raises(BadInputError, match="too long"):
        store.write(frame, "n" * 40, content_hash="f" * 64, run_id="r")


def test_concurrent_loads_get_distinct_versions(postgres: PostgresServer) -> None:
    url = postgres.create_database(unique("fs_race_"))
    frame = pd.DataFrame({"row_id": np.arange(20_000, dtype="int64"), "x": np.linspace(0, 1, 20_000)})
    results: list[object] = []

    def load(feature_set: str, n: int) -> None:
        store = FeatureStore(url)
        try:
            results.append((feature_set, store.write(frame, feature_set, str(n) * 64, f"run-{n}").version))
        except Exception as exc:  # reported below
            results.append(exc)
        finally:
            store.close()

    # Four loads of one feature set and, at the same moment, the first load of two others (which
    # race to create the versions table).
    jobs = [("shared", n) for n in range(4)] + [("other_a", 5), ("other_b", 6)]
    threads = [threading.Thread(target=load, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, tuple) for r in results), results
    shared = sorted(v for name, v in results if name == "shared")
    assert shared == [1, 2, 3, 4]
    store = FeatureStore(url)
    try:
        assert [v.version for v in store.versions("shared")] == [1, 2, 3, 4]
        assert [v.run_id for v in store.versions("other_a")] == ["run-5"]
        for version in (1, 4):
            pd.testing.assert_frame_equal(store.read("shared", version), frame)
    finally:
        store.close()


def test_publishing_parquet_batch_by_batch_copies_what_the_whole_frame_copies(
    store: FeatureStore, tmp_path
) -> None:
    """The features step's path: ``features.parquet`` read a record batch at a time into the
    binary COPY, against the same file read whole."""
    import pyarrow as pa

    from pipeline.featurestore import FeatureRows
    from tests.unit.test_feature_rows import ROWS, processed_like, write_parquet

    table = processed_like()
    # an integer column read as floats (a null in its last row group) holding a value above 2**53:
    # the chunks without the null are cast as the whole-file read casts it
    big = table.column("late_null").to_pylist()
    big[0] = 2**60 + 1
    table = table.set_column(
        table.schema.get_field_index("late_null"), "late_null", pa.array(big, pa.int64())
    )
    path = write_parquet(tmp_path / "features.parquet", table)
    streamed = store.write(FeatureRows.from_parquet(path), "streamed", content_hash="s" * 64, run_id="r")
    whole = store.write(pd.read_parquet(path), "whole", content_hash="w" * 64, run_id="r")
    assert streamed.row_count == whole.row_count == ROWS
    assert streamed.schema == whole.schema
    pd.testing.assert_frame_equal(store.read("streamed", 1), store.read("whole", 1))


def test_a_version_read_a_block_at_a_time_is_the_whole_read(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's ``COPY ... TO STDOUT`` is spooled to a file and read back a block at a time
    (what the train step reads): the chunks make the frame that was written."""
    from pipeline.featurestore import postgres as backend

    monkeypatch.setattr(backend, "READ_BLOCK_BYTES", 4_096)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "row_id": np.arange(20_000, dtype="int64"),
            "split": rng.choice(["train", "val", "test"], 20_000),
            "num__x": rng.normal(size=20_000),
            "cat__c": rng.integers(0, 5, 20_000),
            "t": np.where(rng.random(20_000) < 0.1, None, "a\nb"),
        }
    )
    version = store.write(frame, "chunked", content_hash="c" * 64, run_id="r1")
    chunks = list(store.read_chunks("chunked", version.version))
    assert len(chunks) > 10
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), frame, check_dtype=False)
    assert all(c.dtypes.equals(chunks[0].dtypes) for c in chunks)
