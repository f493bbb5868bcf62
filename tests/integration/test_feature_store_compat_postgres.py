"""A PostgreSQL feature store made by the previous single-module feature store (its exact DDL,
below: ``created_at timestamptz DEFAULT now()``, a partitioned data table) is read and appended to
by the package, whose versions table is compiled from the one declaration; the stored types of a
new database are those of the previous DDL."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.featurestore import FeatureStore, versions_ddl
from tests.services import PostgresServer, unique
from tests.unit.test_feature_store_schema import frame  # the same three rows as the SQLite check

pytestmark = pytest.mark.integration

PREVIOUS_VERSIONS_DDL = (
    'CREATE TABLE IF NOT EXISTS "feature_set_versions" ('
    " feature_set varchar(128) NOT NULL, version integer NOT NULL,"
    " table_name varchar(63) NOT NULL, row_count bigint NOT NULL, schema text NOT NULL,"
    " content_hash varchar(64) NOT NULL, run_id varchar(200) NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (feature_set, version))"
)
TABLE = "fs_wine_x_59349426b4"
COLUMNS = '"row_id" bigint, "x" double precision, "n" bigint, "b" boolean, "t" text'
SCHEMA = '{"row_id": "bigint", "x": "double precision", "n": "bigint", "b": "boolean", "t": "text"}'
PREVIOUS_LOAD = (
    f'CREATE TABLE IF NOT EXISTS "{TABLE}" (_version integer NOT NULL, {COLUMNS},'
    " PRIMARY KEY (_version, row_id)) PARTITION BY LIST (_version)",
    f'CREATE TABLE "{TABLE}_v1" (_version integer NOT NULL DEFAULT 1 CHECK (_version = 1), {COLUMNS})',
    f'INSERT INTO "{TABLE}_v1" (row_id, x, n, b, t)'
    " VALUES (0, 0.5, 1, true, 'a'), (1, 1.5, 2, false, NULL), (2, NULL, 3, true, 'c')",
    f'ALTER TABLE "{TABLE}_v1" ADD PRIMARY KEY (_version, row_id)',
    f'ALTER TABLE "{TABLE}" ATTACH PARTITION "{TABLE}_v1" FOR VALUES IN (1)',
    "INSERT INTO feature_set_versions (feature_set, version, table_name, row_count, schema, content_hash,"
    f" run_id) VALUES ('wine-x', 1, '{TABLE}', 3, '{SCHEMA}', 'h1', 'r1')",
)


def execute(postgres: PostgresServer, database: str, *statements: str) -> None:
    connection = postgres.connect(database)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()


def column_types(postgres: PostgresServer, database: str) -> list[tuple[object, ...]]:
    return postgres.query(
        database,
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_name = 'feature_set_versions'"
        " ORDER BY ordinal_position",
    )


def test_a_previous_postgres_store_is_read_and_appended_to(postgres: PostgresServer) -> None:
    url = postgres.create_database(unique("fs_compat_"))
    database = url.rsplit("/", 1)[1]
    execute(postgres, database, PREVIOUS_VERSIONS_DDL, *PREVIOUS_LOAD)
    [(stored,)] = postgres.query(database, "SELECT created_at FROM feature_set_versions")
    store = FeatureStore(url)
    try:
        [v1] = store.versions("wine-x")
        assert (v1.version, v1.table_name, v1.row_count, v1.content_hash) == (1, TABLE, 3, "h1")
        assert v1.created_at == str(stored), "a timestamptz reads back as str() of its datetime"
        pd.testing.assert_frame_equal(store.read("wine-x", 1), frame())
        assert store.write(frame(), "wine-x", content_hash="h1", run_id="r1") == v1, "idempotent"
        v2 = store.write(frame(1.0), "wine-x", content_hash="h2", run_id="r2")
        assert (v2.version, v2.table_name) == (2, TABLE)
        assert [v.version for v in store.versions("wine-x")] == [1, 2]
        pd.testing.assert_frame_equal(store.read("wine-x", 2), frame(1.0))
        pd.testing.assert_frame_equal(store.read("wine-x", 1), frame())
    finally:
        store.close()
    assert postgres.query(
        database, "SELECT count(*) FROM feature_set_versions WHERE created_at > now() - interval '1 hour'"
    ) == [(2,)], "created_at is still set by the server"


def test_the_declared_versions_table_has_the_previous_stored_types(postgres: PostgresServer) -> None:
    previous = postgres.create_database(unique("fs_prev_")).rsplit("/", 1)[1]
    execute(postgres, previous, PREVIOUS_VERSIONS_DDL)
    declared = postgres.create_database(unique("fs_new_")).rsplit("/", 1)[1]
    execute(postgres, declared, versions_ddl())
    assert column_types(postgres, declared) == column_types(postgres, previous)
    [(created_at_type,)] = postgres.query(
        declared,
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'feature_set_versions'"
        " AND column_name = 'created_at'",
    )
    assert created_at_type == "timestamp with time zone"


def test_a_new_store_migrates_through_the_declaration(postgres: PostgresServer) -> None:
    url = postgres.create_database(unique("fs_migrate_"))
    previous = postgres.create_database(unique("fs_prev_")).rsplit("/", 1)[1]
    execute(postgres, previous, PREVIOUS_VERSIONS_DDL)
    store = FeatureStore(url)
    try:
        store.write(frame(), "wine-x", content_hash="h1", run_id="r1")
        [v1] = store.versions("wine-x")
    finally:
        store.close()
    assert column_types(postgres, url.rsplit("/", 1)[1]) == column_types(postgres, previous)
    [(stored,)] = postgres.query(url.rsplit("/", 1)[1], "SELECT created_at FROM feature_set_versions")
    assert v1.created_at == str(stored)
