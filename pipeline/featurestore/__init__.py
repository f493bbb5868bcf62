"""The feature store: versioned feature sets in a SQL database (SQLite by default, PostgreSQL in
production), reached through SQLAlchemy.

Tables (declared once, in :mod:`pipeline.featurestore.schema`):

* ``feature_set_versions`` — one row per published version: feature set, version, data table,
  row count, schema, content hash, run id, created at.
* ``fs_<feature set>_<schema hash>`` — the rows of every version of one feature set with one
  schema, keyed by ``(_version, row_id)``. A new schema gets a new table, so old versions stay
  readable when the preprocessing changes.

:class:`FeatureStore` does what is common and hands the database work to the backend that the
URL's dialect picks (:mod:`~pipeline.featurestore.backend`):

* PostgreSQL (:mod:`~pipeline.featurestore.postgres`): the rows are streamed with ``COPY`` into a
  fresh staging table, which is attached as the version's partition of the data table in the same
  transaction that inserts the version row: readers see the whole version or nothing, a failure
  leaves the previous versions untouched and no staging table behind (it was created inside the
  transaction that the failure rolls back). Columns are typed (``double precision``, ``bigint``,
  ``boolean``, ``text``); every partition's primary key ``(_version, row_id)`` is the index a
  version is read through. The rows travel in PostgreSQL's binary COPY format, encoded from Arrow
  chunk by chunk while PostgreSQL ingests the previous chunk
  (:mod:`~pipeline.featurestore.binary_copy`), so memory stays bounded by a few chunks whatever
  the frame's size. Concurrent loads of one feature set are serialised by an advisory lock.
* SQLite and any other dialect (:mod:`~pipeline.featurestore.generic`): the rows are inserted
  inside one transaction (``BEGIN IMMEDIATE`` on SQLite: the database lock serialises loads).

The rows come a chunk at a time (:class:`~pipeline.featurestore.rows.FeatureRows`: a DataFrame,
or a Parquet file read a record batch at a time), so a load never needs the whole table in memory.
Versions are never duplicated. Table and column names are validated and quoted as identifiers,
never formatted into SQL unquoted; a name longer than PostgreSQL's 63-byte limit is refused
instead of being truncated, and so is a feature-set name that maps to another one's tables
(``wine-x`` next to ``wine_x``).
"""

from __future__ import annotations

from pipeline.featurestore.backend import Backend
from pipeline.featurestore.binary_copy import COPY_CHUNK_ROWS, _CopyStream, arrow_chunk
from pipeline.featurestore.generic import SqlAlchemyBackend, SqliteBackend
from pipeline.featurestore.postgres import POSTGRES_CONNECT_ARGS, PostgresBackend, versions_ddl
from pipeline.featurestore.rows import FeatureRows
from pipeline.featurestore.schema import (
    COLUMN_TYPES,
    IDENTIFIER,
    MAX_IDENTIFIER_BYTES,
    PARTITION_SUFFIX_BYTES,
    VERSIONS_COLUMNS,
    VERSIONS_TABLE,
    ColumnType,
    FeatureSetVersion,
    check_identifier,
    data_table,
    data_table_name,
    refuse_collision,
    schema_of,
    sql_type,
    table_key,
    versions_table,
)
from pipeline.featurestore.store import BACKENDS, FeatureStore, backend_for

__all__ = [
    "BACKENDS",
    "COLUMN_TYPES",
    "COPY_CHUNK_ROWS",
    "IDENTIFIER",
    "MAX_IDENTIFIER_BYTES",
    "PARTITION_SUFFIX_BYTES",
    "POSTGRES_CONNECT_ARGS",
    "VERSIONS_COLUMNS",
    "VERSIONS_TABLE",
    "Backend",
    "ColumnType",
    "FeatureRows",
    "FeatureSetVersion",
    "FeatureStore",
    "PostgresBackend",
    "SqlAlchemyBackend",
    "SqliteBackend",
    "_CopyStream",
    "arrow_chunk",
    "backend_for",
    "check_identifier",
    "data_table",
    "data_table_name",
    "refuse_collision",
    "schema_of",
    "sql_type",
    "table_key",
    "versions_ddl",
    "versions_table",
]
