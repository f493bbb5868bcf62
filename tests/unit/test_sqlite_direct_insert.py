"""The SQLite feature store's direct insert (rows as tuples to the driver) stores what the
SQLAlchemy insert it replaced stores: the same frame reads back, types, missing values and all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.featurestore import FeatureStore, generic


def frame(n: int = 25_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "split": pd.array(rng.choice(["train", "val", None], n), dtype="str"),
            "num__x": rng.normal(size=n).astype(np.float32),
            "num__y": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "cat__c": rng.integers(0, 5, n),
            "flag": rng.choice([True, False], n),
            "target": rng.integers(0, 3, n),
        }
    )


def written(tmp_path, name: str, data: pd.DataFrame) -> pd.DataFrame:
    store = FeatureStore(f"sqlite:///{tmp_path / name}.db")
    try:
        version = store.write(data, "t", content_hash="h", run_id="r")
        return store.read("t", version.version)
    finally:
        store.close()


@pytest.mark.parametrize(
    "data",
    [frame(), frame().assign(cat__c=pd.array(range(25_000), dtype="Int64"), flag=pd.array([True] * 25_000))],
    ids=["numpy-columns", "nullable-columns"],
)
def test_the_direct_insert_stores_what_sqlalchemy_stores(tmp_path, monkeypatch, data):
    direct = written(tmp_path, "direct", data)
    monkeypatch.setattr(generic, "_direct_insert", lambda *args: lambda part, version: None)
    through_sqlalchemy = written(tmp_path, "sqlalchemy", data)
    pd.testing.assert_frame_equal(direct, through_sqlalchemy)
    assert len(direct) == len(data)
