"""The SQL source and the feature store's names on a real PostgreSQL: the user's query is one
statement, runs in a read-only transaction that is rolled back, under a statement timeout, and is
fetched in batches up to the row cap; feature-set names that share tables are refused up front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import EXIT_BAD_INPUT, BadInputError, ConfigError, RetryableError
from pipeline.featurestore import FeatureStore
from pipeline.settings import SourceSettings
from pipeline.sources import fetch
from pipeline.tabular import TableLimits
from tests.services import PostgresServer, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    name = unique("src_")
    postgres.create_database(name)
    postgres.query(name, "CREATE TABLE t (a integer)")
    postgres.query(name, "INSERT INTO t SELECT g FROM generate_series(1, 100) g")
    postgres.query(name, "CREATE SEQUENCE s")
    return name


def rows_in_t(postgres: PostgresServer, database: str) -> int:
    return postgres.query(database, "SELECT count(*) FROM t")[0][0]


def sql_source(postgres: PostgresServer, database: str, query: str, **options) -> SourceSettings:
    return SourceSettings(uri=postgres.url(database), kind="sql", query=query, **options)


def test_a_query_reads(postgres: PostgresServer, database: str) -> None:
    raw = fetch(sql_source(postgres, database, "SELECT a FROM t WHERE a <= 3 ORDER BY a"), None)
    assert pd.read_parquet(__import__("io").BytesIO(raw.data))["a"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM t; COMMIT; SELECT 1",
        "SELECT 1; SET default_transaction_read_only = off; COMMIT; DELETE FROM t",
        "SELECT 1; DROP TABLE t",
    ],
)
def test_more_than_one_statement_is_refused_and_nothing_changes(
    postgres: PostgresServer, database: str, query: str
) -> None:
    with pytest.raises(ConfigError, match="statements") as info:
        fetch(sql_source(postgres, database, query), None)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert rows_in_t(postgres, database) == 100


@pytest.mark.parametrize(
    "query",
    [
        "WITH gone AS (DELETE FROM t RETURNING a) SELECT a FROM gone",
        "SELECT nextval('s')",
        "CREATE TABLE evil AS SELECT 1 AS x",
        "UPDATE t SET a = 0 RETURNING a",
    ],
)
def test_a_query_runs_read_only(postgres: PostgresServer, database: str, query: str) -> None:
    """Refused by PostgreSQL itself: a read-only transaction, and a cursor (``DECLARE ... CURSOR
    FOR``) that takes a query only."""
    with pytest.raises(BadInputError, match="the query failed"):
        fetch(sql_source(postgres, database, query), None)
    assert rows_in_t(postgres, database) == 100
    assert postgres.query(database, "SELECT to_regclass('evil') IS NULL")[0][0]
    assert postgres.query(database, "SELECT last_value, is_called FROM s")[0] == (1, False)


def test_the_transaction_is_read_only_even_for_a_plain_query(postgres: PostgresServer, database: str) -> None:
    raw = fetch(sql_source(postgres, database, "SELECT current_setting('transaction_read_only') AS ro"), None)
    assert pd.read_parquet(__import__("io").BytesIO(raw.data))["ro"].tolist() == ["on"]


def test_a_query_is_cancelled_at_the_statement_timeout(postgres: PostgresServer, database: str) -> None:
    source = sql_source(postgres, database, "SELECT pg_sleep(5), 1 AS x", statement_timeout_s=0.3)
    with pytest.raises(RetryableError, match=r"data\.source\.statement_timeout_s=0\.3s"):
        fetch(source, None)


def test_a_query_is_fetched_up_to_the_row_cap(postgres: PostgresServer, database: str) -> None:
    source = sql_source(postgres, database, "SELECT g FROM generate_series(1, 50000000) g")
    with pytest.raises(BadInputError, match=r"at least 10000 rows, more than data\.max_rows=1000"):
        fetch(source, None, TableLimits(max_rows=1000))
    # A server-side cursor: the 50M rows were never produced, let alone sent.
    active = postgres.query(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state <> 'idle' AND pid <> "
        "pg_backend_pid()",
        (database,),
    )
    assert active[0][0] == 0, "no query of the source is left running"


def test_feature_set_names_that_share_tables_are_refused(postgres: PostgresServer) -> None:
    store = FeatureStore(postgres.create_database(unique("fs_names_")))
    frame = pd.DataFrame({"row_id": np.arange(3, dtype="int64"), "x": [0.1, 0.2, 0.3]})
    try:
        store.write(frame, "wine-x", content_hash="a" * 64, run_id="r1")
        for name in ("wine_x", "Wine_X"):
            with pytest.raises(BadInputError, match="collides with the existing feature set 'wine-x'"):
                store.write(frame, name, content_hash="b" * 64, run_id="r2")
        assert [(v.feature_set, v.version) for v in store.versions()] == [("wine-x", 1)]
        assert store.write(frame, "wine-x", content_hash="c" * 64, run_id="r3").version == 2
    finally:
        store.close()
