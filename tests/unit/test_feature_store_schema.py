"""The feature store's one declaration of its versions table against what earlier releases made:
a SQLite ``features.db`` written by the previous single-module feature store (its exact DDL and
rows, below) is read and appended to; new databases get that same DDL; ``pipeline doctor``
requires exactly the declared columns."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import doctor
from pipeline.featurestore import VERSIONS_COLUMNS, FeatureStore, versions_table
from pipeline.settings import Settings

# What ``pipeline/featurestore.py`` before the package split created (``sqlite_master.sql``) and
# stored for one version of ``frame()`` under the name "wine-x".
PREVIOUS_VERSIONS_DDL = (
    "CREATE TABLE feature_set_versions (\n\tfeature_set VARCHAR(128) NOT NULL, \n\tversion INTEGER NOT NULL,"
    " \n\ttable_name VARCHAR(63) NOT NULL, \n\trow_count BIGINT NOT NULL, \n\tschema TEXT NOT NULL,"
    " \n\tcontent_hash VARCHAR(64) NOT NULL, \n\trun_id VARCHAR(200) NOT NULL,"
    " \n\tcreated_at VARCHAR(40) NOT NULL, \n\tPRIMARY KEY (feature_set, version)\n)"
)
PREVIOUS_TABLE = "fs_wine_x_59349426b4"
PREVIOUS_DATA_DDL = (
    f"CREATE TABLE {PREVIOUS_TABLE} (\n\t_version INTEGER NOT NULL, \n\trow_id BIGINT NOT NULL,"
    " \n\tx FLOAT, \n\tn BIGINT, \n\tb BOOLEAN, \n\tt TEXT, \n\tPRIMARY KEY (_version, row_id)\n)"
)
PREVIOUS_SCHEMA = '{"row_id": "bigint", "x": "double precision", "n": "bigint", "b": "boolean", "t": "text"}'
PREVIOUS_CREATED_AT = "2026-12-02T14:42:33+00:00"


def frame(shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": np.arange(3, dtype="int64"),
            "x": [0.5 + shift, 1.5, np.nan],
            "n": np.array([1, 2, 3], dtype="int64"),
            "b": [True, False, True],
            "t": ["a", None, "c"],
        }
    )


def previous_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(PREVIOUS_VERSIONS_DDL)
        connection.execute(PREVIOUS_DATA_DDL)
        connection.execute(
            "INSERT INTO feature_set_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ("wine-x", 1, PREVIOUS_TABLE, 3, PREVIOUS_SCHEMA, "h1", "r1", PREVIOUS_CREATED_AT),
        )
        connection.executemany(
            f"INSERT INTO {PREVIOUS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
            [(1, 0, 0.5, 1, 1, "a"), (1, 1, 1.5, 2, 0, None), (1, 2, None, 3, 1, "c")],
        )
    connection.close()


def ddl(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    return dict(rows)


def test_a_previous_sqlite_database_is_read_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "features.db"
    previous_database(path)
    store = FeatureStore(f"sqlite:///{path}")
    try:
        [v1] = store.versions("wine-x")
        assert (v1.version, v1.table_name, v1.row_count, v1.run_id) == (1, PREVIOUS_TABLE, 3, "r1")
        assert v1.created_at == PREVIOUS_CREATED_AT
        pd.testing.assert_frame_equal(store.read("wine-x", 1), frame())
        assert store.write(frame(), "wine-x", content_hash="h1", run_id="r1") == v1, "idempotent"
        v2 = store.write(frame(1.0), "wine-x", content_hash="h2", run_id="r2")
        assert (v2.version, v2.table_name) == (2, PREVIOUS_TABLE), "same schema, same data table"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", v2.created_at)
        assert store.versions("wine-x") == [v1, v2]
        pd.testing.assert_frame_equal(store.read("wine-x", 2), frame(1.0))
        pd.testing.assert_frame_equal(store.read("wine-x", 1), frame())
    finally:
        store.close()
    assert ddl(path) == {"feature_set_versions": PREVIOUS_VERSIONS_DDL, PREVIOUS_TABLE: PREVIOUS_DATA_DDL}


def test_a_new_sqlite_database_gets_the_previous_ddl(tmp_path: Path) -> None:
    path = tmp_path / "features.db"
    store = FeatureStore(f"sqlite:///{path}")
    try:
        version = store.write(frame(), "wine-x", content_hash="h1", run_id="r1")
    finally:
        store.close()
    assert version.table_name == PREVIOUS_TABLE
    assert ddl(path) == {"feature_set_versions": PREVIOUS_VERSIONS_DDL, PREVIOUS_TABLE: PREVIOUS_DATA_DDL}


def test_doctor_requires_the_declared_columns() -> None:
    declared = [c.name for c in versions_table(sa.MetaData()).columns]
    assert doctor.required_feature_store_columns() == declared == [c.name for c in VERSIONS_COLUMNS]


def test_doctor_names_a_declared_column_that_an_existing_table_lacks(tmp_path: Path) -> None:
    path = tmp_path / "features.db"
    without_run_id = PREVIOUS_VERSIONS_DDL.replace(" \n\trun_id VARCHAR(200) NOT NULL,", "")
    assert without_run_id != PREVIOUS_VERSIONS_DDL
    with sqlite3.connect(path) as connection:
        connection.execute(without_run_id)
    connection.close()
    report = doctor.Report()
    doctor.check_feature_store(Settings(home=tmp_path, feature_store_url=f"sqlite:///{path}"), report)
    [check] = report.checks
    assert check.status == doctor.PROBLEM
    assert "lacks columns ['run_id']" in check.message
