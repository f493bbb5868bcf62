"""The PostgreSQL backend: rows streamed with binary ``COPY`` into a staging table that becomes
the version's partition in the transaction that inserts the version row; reads through ``COPY``
of one partition as CSV, parsed by Arrow."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.featurestore.backend import Backend
from pipeline.featurestore.binary_copy import _CopyStream
from pipeline.featurestore.schema import (
    COLUMN_TYPES,
    SERVER_SET_ON_POSTGRES,
    VERSIONS_COLUMNS,
    VERSIONS_TABLE,
    FeatureSetVersion,
    check_identifier,
    refuse_collision,
    table_key,
    versions_table,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    import pandas as pd

logger = logging.getLogger("pipeline.featurestore")

# Bounded waits on PostgreSQL: a server that is gone is noticed within about a minute, never hangs
# a step (TCP keepalives also cover a half-open connection in the middle of a COPY).
# Blocks of the version's CSV read back at a time (pyarrow reads a few dozen ahead).
READ_BLOCK_BYTES = 1 << 20
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "application_name": "ml-pipeline",
}


def versions_ddl() -> str:
    """``CREATE TABLE IF NOT EXISTS`` of the versions table, compiled from its one declaration."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    table = versions_table(sa.MetaData(), "postgresql")
    return str(CreateTable(table, if_not_exists=True).compile(dialect=postgresql.dialect())).strip()


class PostgresBackend(Backend):
    connect_args = POSTGRES_CONNECT_ARGS

    def _transaction(self):
        """A raw DB-API connection (COPY needs psycopg2's cursor) that is rolled back, or dropped
        when the server is gone, on any failure."""
        return _RawTransaction(self.engine)

    def migrate(self) -> None:
        """Create the versions table if it is missing (serialised across processes).

        Runs in its own short transaction under a global advisory lock, so two first loads of
        different feature sets cannot race on ``CREATE TABLE IF NOT EXISTS``.
        """
        with self._transaction() as dbapi, dbapi.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSIONS_TABLE,))
            if cursor.fetchone()[0]:
                dbapi.rollback()
                return
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("ml-pipeline/features/ddl",))
            cursor.execute(versions_ddl())
            dbapi.commit()

    def write(self, rows, feature_set, table_name, schema, content_hash, run_id) -> FeatureSetVersion:
        from psycopg2 import sql

        self.migrate()
        versions = sql.Identifier(VERSIONS_TABLE)
        with self._transaction() as dbapi:
            dbapi.autocommit = False
            with dbapi.cursor() as cursor:
                # Names sharing data tables share the lock, so the collision check below is race-free.
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"ml-pipeline/features/{table_key(feature_set)}",),
                )
                cursor.execute(sql.SQL("SELECT DISTINCT feature_set FROM {}").format(versions))
                refuse_collision(feature_set, [row[0] for row in cursor.fetchall()])
                names = [c.name for c in VERSIONS_COLUMNS]
                cursor.execute(
                    sql.SQL(
                        "SELECT {columns} FROM {versions}"
                        " WHERE feature_set = %s AND run_id = %s AND content_hash = %s"
                    ).format(columns=sql.SQL(", ").join(map(sql.Identifier, names)), versions=versions),
                    (feature_set, run_id, content_hash),
                )
                found = cursor.fetchone()
                if found is not None:
                    dbapi.rollback()
                    logger.info("feature set %s v%d already holds run %s", feature_set, found[1], run_id)
                    return FeatureSetVersion.from_row(dict(zip(names, found, strict=True)))
                cursor.execute(
                    sql.SQL("SELECT coalesce(max(version), 0) + 1 FROM {} WHERE feature_set = %s").format(
                        versions
                    ),
                    (feature_set,),
                )
                version = int(cursor.fetchone()[0])
                staging_name = check_identifier(f"{table_name}_v{version}", "feature partition name")
                self._load_partition(cursor, dbapi, rows, table_name, staging_name, schema, version)
                item = FeatureSetVersion.new(
                    feature_set, version, table_name, rows.row_count, schema, content_hash, run_id
                )
                row = item.row()
                inserted = [c.name for c in VERSIONS_COLUMNS if c.name != SERVER_SET_ON_POSTGRES]
                cursor.execute(
                    sql.SQL("INSERT INTO {versions} ({columns}) VALUES ({values})").format(
                        versions=versions,
                        columns=sql.SQL(", ").join(map(sql.Identifier, inserted)),
                        values=sql.SQL(", ").join(sql.Placeholder() for _ in inserted),
                    ),
                    [row[c] for c in inserted],
                )
            dbapi.commit()
        logger.info(
            "feature set %s v%d: %d rows copied into %s", feature_set, version, rows.row_count, staging_name
        )
        return item

    @staticmethod
    def _load_partition(cursor, dbapi, rows, table_name, staging_name, schema, version) -> None:
        """COPY ``rows`` into a fresh staging table and attach it as the version's partition."""
        from psycopg2 import sql

        column_defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(COLUMN_TYPES[kind].postgres))
            for c, kind in schema.items()
        )
        parent = sql.Identifier(table_name)
        cursor.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {parent} (_version integer NOT NULL, {columns},"
                " PRIMARY KEY (_version, row_id)) PARTITION BY LIST (_version)"
            ).format(parent=parent, columns=column_defs)
        )
        staging = sql.Identifier(staging_name)
        cursor.execute(
            sql.SQL(
                "CREATE TABLE {staging} (_version integer NOT NULL DEFAULT {version}"
                " CHECK (_version = {version}), {columns})"
            ).format(staging=staging, version=sql.Literal(version), columns=column_defs)
        )
        copy = sql.SQL("COPY {staging} ({columns}) FROM STDIN WITH (FORMAT binary)").format(
            staging=staging, columns=sql.SQL(", ").join(sql.Identifier(c) for c in schema)
        )
        stream = _CopyStream(rows, schema)
        try:
            cursor.copy_expert(copy.as_string(dbapi), stream, size=1 << 20)
        finally:
            stream.close()
        if stream.rows_sent != rows.row_count:
            raise RuntimeError(f"sent {stream.rows_sent} rows to COPY, expected {rows.row_count}")
        cursor.execute(
            sql.SQL("ALTER TABLE {staging} ADD PRIMARY KEY (_version, row_id)").format(staging=staging)
        )
        cursor.execute(
            sql.SQL("ALTER TABLE {parent} ATTACH PARTITION {staging} FOR VALUES IN ({version})").format(
                parent=parent, staging=staging, version=sql.Literal(version)
            )
        )

    def read_chunks(self, meta: FeatureSetVersion, columns: list[str]) -> Iterator[pd.DataFrame]:
        """``COPY ... TO STDOUT`` into a temporary file, then read back a block at a time: the
        version is never held whole, neither as text nor as a table."""
        import tempfile

        import pyarrow as pa
        import pyarrow.csv as pacsv
        from psycopg2 import sql

        types = {c: COLUMN_TYPES[meta.schema[c]].arrow_csv_type() for c in columns}
        with tempfile.TemporaryFile() as spool:
            raw = self.engine.raw_connection()
            try:
                with raw.driver_connection.cursor() as cursor:
                    query = sql.SQL(
                        "COPY (SELECT {columns} FROM {table} WHERE _version = {version} ORDER BY row_id)"
                        " TO STDOUT WITH (FORMAT csv, HEADER true)"
                    ).format(
                        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                        table=sql.Identifier(meta.table_name),
                        version=sql.Literal(meta.version),
                    )
                    cursor.copy_expert(query.as_string(raw.driver_connection), spool)
                raw.driver_connection.rollback()
            finally:
                raw.close()
            spool.seek(0)
            reader = pacsv.open_csv(
                spool,
                read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),  # text may hold newlines
                # PostgreSQL's CSV: NULL is an unquoted empty field, an empty string is quoted (""),
                # booleans are t/f.
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    null_values=[""],
                    true_values=["t"],
                    false_values=["f"],
                ),
            )
            empty = True
            for batch in reader:
                empty = False
                yield pa.Table.from_batches([batch]).to_pandas()
            if empty:
                yield pa.schema(list(types.items())).empty_table().to_pandas()


class _RawTransaction:
    """``with`` a raw psycopg2 connection: rolled back on any failure (or invalidated when the
    server is gone, instead of going back to the pool), always returned to the pool."""

    def __init__(self, engine: Any):
        self._raw = engine.raw_connection()

    def __enter__(self):
        return self._raw.driver_connection

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                try:
                    self._raw.driver_connection.rollback()
                except Exception:  # the server is gone: drop the connection instead of pooling it
                    self._raw.invalidate()
        finally:
            self._raw.close()
