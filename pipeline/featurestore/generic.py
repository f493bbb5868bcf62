"""The generic backend: SQLAlchemy Core on any database (SQLite by default), one transaction per
load (``BEGIN IMMEDIATE`` on SQLite, so that a writer takes the database lock up front)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipeline.featurestore.backend import Backend
from pipeline.featurestore.schema import (
    FeatureSetVersion,
    data_table,
    refuse_collision,
    versions_table,
)

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    import pandas as pd
    import sqlalchemy as sa

logger = logging.getLogger("pipeline.featurestore")

READ_CHUNK_ROWS = 100_000
INSERT_CHUNK_ROWS = 10_000


class SqlAlchemyBackend(Backend):
    def migrate(self) -> None:
        import sqlalchemy as sa

        metadata = sa.MetaData()
        versions_table(metadata, self.engine.dialect.name)
        with self.engine.begin() as connection:
            metadata.create_all(connection)

    def write(self, rows, feature_set, table_name, schema, content_hash, run_id) -> FeatureSetVersion:
        import sqlalchemy as sa

        metadata = sa.MetaData()
        versions = versions_table(metadata, self.engine.dialect.name)
        table = data_table(table_name, schema, metadata)
        with self.engine.begin() as connection:  # one transaction: all rows and the version row
            metadata.create_all(connection)
            names = connection.execute(sa.select(versions.c.feature_set).distinct()).scalars().all()
            refuse_collision(feature_set, list(names))
            existing = self._existing(connection, versions, feature_set, run_id, content_hash)
            if existing is not None:
                return existing
            current = connection.execute(
                sa.select(sa.func.max(versions.c.version)).where(versions.c.feature_set == feature_set)
            ).scalar()
            version = int(current or 0) + 1
            direct = (
                _direct_insert(connection, table, schema) if connection.dialect.name == "sqlite" else None
            )
            written = 0
            for part in rows.chunks(INSERT_CHUNK_ROWS):
                written += len(part)
                prepared = direct(part, version) if direct is not None else None
                if prepared is not None:
                    connection.exec_driver_sql(prepared[0], prepared[1])
                    continue
                chunk = part.to_dict(orient="records")
                for record in chunk:
                    record["_version"] = version
                connection.execute(table.insert(), chunk)
            if written != rows.row_count:
                raise RuntimeError(f"read {written} rows to publish, expected {rows.row_count}")
            item = FeatureSetVersion.new(
                feature_set, version, table_name, written, schema, content_hash, run_id
            )
            connection.execute(versions.insert(), [item.row()])
        logger.info("feature set %s v%d: %d rows in %s", feature_set, version, written, table_name)
        return item

    @staticmethod
    def _existing(
        connection: sa.Connection, versions: sa.Table, feature_set, run_id, content_hash
    ) -> FeatureSetVersion | None:
        import sqlalchemy as sa

        row = connection.execute(
            sa.select(versions).where(
                versions.c.feature_set == feature_set,
                versions.c.run_id == run_id,
                versions.c.content_hash == content_hash,
            )
        ).first()
        if row is None:
            return None
        logger.info(
            "feature set %s v%d already holds run %s with the same content", feature_set, row.version, run_id
        )
        return FeatureSetVersion.from_row(row._mapping)

    def read_chunks(self, meta: FeatureSetVersion, columns: list[str]) -> Iterator[pd.DataFrame]:
        import pandas as pd
        import sqlalchemy as sa

        from pipeline.featurestore.schema import COLUMN_TYPES

        table = data_table(meta.table_name, meta.schema, sa.MetaData())
        query = sa.select(*[table.c[c] for c in columns]).where(table.c["_version"] == meta.version)
        # In chunks, each cast to the schema's types at once: the driver hands back one Python
        # object per value, which for a whole version would take several times the frame.
        dtypes = {
            c: COLUMN_TYPES[meta.schema[c]].pandas for c in columns if COLUMN_TYPES[meta.schema[c]].pandas
        }
        empty = True
        with self.engine.connect() as connection:
            for chunk in pd.read_sql_query(
                query.order_by(table.c["row_id"]), connection, chunksize=READ_CHUNK_ROWS
            ):
                empty = False
                yield chunk.astype(dtypes) if dtypes else chunk
        if empty:
            yield pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in columns})


def _direct_insert(connection, table, schema: dict[str, str]):
    """SQLite: the rows as tuples of Python values straight to the driver's ``executemany``
    (SQLAlchemy turns each row into a dict and back, which is most of a large load's time). The
    four column types bind as SQLAlchemy binds them on SQLite (a float, NaN stored as NULL; an
    integer; a boolean as 0/1; text or NULL). Returns ``rows(part, version) -> (sql, tuples)``,
    which gives None for a chunk it cannot convert exactly (an integer column with missing
    values): that chunk goes through SQLAlchemy."""
    import numpy as np

    quote = connection.dialect.identifier_preparer.quote
    columns = [c.name for c in table.columns]
    data_columns = [c for c in columns if c != "_version"]
    # names quoted by the dialect, every value a bound parameter
    target = connection.dialect.identifier_preparer.format_table(table)
    names = ", ".join(quote(c) for c in columns)
    sql = f"INSERT INTO {target} ({names}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608

    def values(series, kind: str) -> list:
        if kind == "double precision":
            return series.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        if kind == "bigint":
            return series.to_numpy(dtype=np.int64).tolist()
        if kind == "boolean":
            return series.to_numpy(dtype=bool).tolist()
        return series.astype(object).where(series.notna(), None).tolist()

    def rows(part, version: int):
        try:
            lists = [
                values(part[c], schema[c]) if c != "_version" else [version] * len(part) for c in columns
            ]
        except (TypeError, ValueError):
            return None
        if any(part[c].isna().any() for c in data_columns if schema[c] in ("bigint", "boolean")):
            return None
        return sql, list(zip(*lists, strict=True))

    return rows


class SqliteBackend(SqlAlchemyBackend):
    """WAL and a busy timeout for concurrent writers; ``BEGIN IMMEDIATE`` so that a writer takes
    the database lock up front instead of failing half-way (SQLAlchemy's documented recipe)."""

    def __init__(self, engine: sa.Engine):
        import sqlalchemy as sa

        super().__init__(engine)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
