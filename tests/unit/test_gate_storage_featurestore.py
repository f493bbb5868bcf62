"""The promotion gate, atomic publication in the artifact store, and the SQLite feature store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import BadInputError, RetryableError
from pipeline.featurestore import FeatureStore, check_identifier
from pipeline.registry import decide, registry_lock
from pipeline.settings import S3Settings, Settings
from pipeline.storage import ArtifactStore


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.load(gate={"margin": 0.01, "min_score": 0.8})


def test_gate_first_model_floor_and_baseline(settings: Settings) -> None:
    assert decide(settings, "macro_f1", 0.9, 0.3, None, None).promote
    below = decide(settings, "macro_f1", 0.7, 0.3, None, None)
    assert not below.promote and "misses the floor" in below.reason
    worse_than_baseline = decide(settings, "macro_f1", 0.85, 0.9, None, None)
    assert not worse_than_baseline.promote and "does not beat the baseline" in worse_than_baseline.reason


def test_gate_against_champion_respects_margin_and_direction(settings: Settings) -> None:
    assert decide(settings, "macro_f1", 0.95, 0.3, "3", 0.93).promote
    tie = decide(settings, "macro_f1", 0.935, 0.3, "3", 0.93)
    assert not tie.promote and "does not beat champion v3" in tie.reason and "margin 0.01" in tie.reason
    regression = Settings.load(
        data={"task": "regression"},
        evaluate={"primary_metric": "rmse"},
        gate={"margin": 1.0, "min_score": None},
    )
    assert decide(regression, "rmse", 10.0, 50.0, "1", 12.0).promote, "lower RMSE is better"
    assert not decide(regression, "rmse", 11.5, 50.0, "1", 12.0).promote
    tags = decide(settings, "macro_f1", 0.95, 0.3, "3", 0.93).tags()
    assert tags["gate.decision"] == "promoted" and tags["gate.champion_version"] == "3"


def test_registry_lock_serialises_promotions(settings: Settings) -> None:
    inside = []
    overlap = []

    def promote(name: str) -> None:
        with registry_lock(settings, "m"):
            inside.append(name)
            if len(inside) > 1:
                overlap.append(True)
            time.sleep(0.2)
            inside.remove(name)

    threads = [threading.Thread(target=promote, args=(str(i),)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlap


def test_publication_is_atomic_and_replaces_the_previous_attempt(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"), S3Settings(), tmp_path / "scratch")
    with store.workdir("r1", "s") as work:
        (work / "a.txt").write_text("one")
        first = store.publish("r1", "s", work, {"a": "a.txt"}, {"n": 1}, started_at="t")
    with store.workdir("r1", "s") as work:
        (work / "a.txt").write_text("two")
        second = store.publish("r1", "s", work, {"a": "a.txt"}, {"n": 2}, started_at="t")
    assert Path(second.uri("a")).read_text() == "two"
    assert not Path(first.uri("a")).exists(), "older attempts are removed"
    assert store.read_manifest("r1", "s").summary == {"n": 2}
    with store.workdir("r1", "s") as work, pytest.raises(FileNotFoundError):
        store.publish("r1", "s", work, {"a": "missing.txt"}, {"n": 3}, started_at="t")
    assert store.read_manifest("r1", "s").summary == {"n": 2}, "a failed publish leaves the old manifest"
    assert not list((tmp_path / "scratch").iterdir()), "staging folders are always removed"


def frame(n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "split": ["train"] * n,
            "num__x": np.arange(n) + shift,
            "cat__c": np.arange(n) % 3,
            "target": np.arange(n) % 2,
        }
    )


def test_feature_store_versions_read_back_and_idempotency(tmp_path: Path) -> None:
    store = FeatureStore(f"sqlite:///{tmp_path / 'f.db'}")
    v1 = store.write(frame(10), "fs", content_hash="h1", run_id="r1")
    v2 = store.write(frame(12, 0.5), "fs", content_hash="h2", run_id="r2")
    again = store.write(frame(12, 0.5), "fs", content_hash="h2", run_id="r2")
    assert (v1.version, v2.version, again.version) == (1, 2, 2)
    assert [v.version for v in store.versions("fs")] == [1, 2]
    back = store.read("fs", 1)
    pd.testing.assert_frame_equal(back, frame(10), check_dtype=True)
    assert list(store.read("fs", 2).columns) == list(frame(1).columns), "column order is preserved"
    with pytest.raises(BadInputError, match="no version 9"):
        store.read("fs", 9)
    store.close()


def test_feature_store_failure_leaves_previous_versions_and_no_partial_rows(tmp_path: Path) -> None:
    store = FeatureStore(f"sqlite:///{tmp_path / 'f.db'}")
    store.write(frame(10), "fs", content_hash="h1", run_id="r1")
    bad = frame(25_000)
    bad.loc[20_000, "row_id"] = 5  # duplicate primary key, deep into the load (after the first chunks)
    with pytest.raises(Exception, match="UNIQUE"):
        store.write(bad, "fs", content_hash="h2", run_id="r2")
    assert [v.version for v in store.versions("fs")] == [1]
    import sqlalchemy as sa

    with store.engine.connect() as connection:
        table = store.versions("fs")[0].table_name
        versions_in_table = (
            connection.execute(sa.text(f'SELECT DISTINCT _version FROM "{table}"')).scalars().all()
        )
    assert versions_in_table == [1], "no rows of the failed load remain"
    store.close()


def test_identifiers_are_checked_not_truncated() -> None:
    assert check_identifier("num__bill_length_mm", "column") == "num__bill_length_mm"
    with pytest.raises(BadInputError, match="63 bytes"):
        check_identifier("num__" + "x" * 59, "column")
    with pytest.raises(BadInputError, match="not a valid identifier"):
        check_identifier('x"; DROP TABLE t; --', "column")


def test_unreachable_feature_store_is_retryable(tmp_path: Path) -> None:
    store = FeatureStore(f"sqlite:///{tmp_path / 'missing-dir' / 'f.db'}")
    with pytest.raises(RetryableError, match="nothing was published"):
        store.write(frame(3), "fs", content_hash="h", run_id="r")


def test_manifest_json_is_plain(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path), S3Settings(), tmp_path / "scratch")
    with store.workdir("r", "s") as work:
        (work / "f").write_text("x")
        store.publish("r", "s", work, {"f": "f"}, {"k": "v"}, started_at="t")
    data = json.loads((tmp_path / "runs" / "r" / "s" / "manifest.json").read_text())
    assert data["status"] == "succeeded" and data["outputs"]["f"]["sha256"]
