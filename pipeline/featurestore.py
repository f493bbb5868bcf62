"""The feature store: versioned feature sets in a SQL database (SQLite by default, PostgreSQL in
production), reached through SQLAlchemy.

Tables:

* ``feature_set_versions`` — one row per published version: feature set, version, data table,
  row count, schema, content hash, run id, created at.
* ``fs_<feature set>_<schema hash>`` — the rows of every version of one feature set with one
  schema, keyed by ``(_version, row_id)``. A new schema gets a new table, so old versions stay
  readable when the preprocessing changes.

A load is all or nothing. On PostgreSQL the rows are streamed with ``COPY`` into a fresh staging
table, which is attached as the version's partition of the data table in the same transaction
that inserts the version row: readers see the whole version or nothing, a failure leaves the
previous versions untouched and no staging table behind (it was created inside the transaction
that the failure rolls back). Columns are typed (``double precision``, ``bigint``, ``boolean``,
``text``); every partition's primary key ``(_version, row_id)`` is the index a version is read
through. The rows travel in PostgreSQL's binary COPY format, encoded from Arrow chunk by chunk while
PostgreSQL ingests the previous chunk, so memory stays bounded by a few chunks whatever the
frame's size. On SQLite the rows are inserted inside
one ``BEGIN IMMEDIATE`` transaction. Concurrent loads of one feature set are serialised (an
advisory lock on PostgreSQL, the database lock on SQLite), so versions are never duplicated.

Table and column names are validated and quoted as identifiers, never formatted into SQL
unquoted; a name longer than PostgreSQL's 63-byte limit is refused instead of being truncated, and
so is a feature-set name that maps to another one's tables (``wine-x`` next to ``wine_x``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError, ConfigError, RetryableError, one_line
from pipeline.settings import redact_url

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import sqlalchemy as sa

logger = logging.getLogger(__name__)

VERSIONS_TABLE = "feature_set_versions"
MAX_IDENTIFIER_BYTES = 63
# Room left in a data table's name for the partition suffix ``_v<version>`` (versions < 10**9).
PARTITION_SUFFIX_BYTES = 11
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COPY_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class FeatureSetVersion:
    feature_set: str
    version: int
    table_name: str
    row_count: int
    schema: dict[str, str]
    content_hash: str
    run_id: str
    created_at: str


def check_identifier(name: str, what: str) -> str:
    """Refuse identifiers that PostgreSQL would truncate or that need unusual quoting."""
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise BadInputError(
            f"{what} {name!r} is {len(name.encode('utf-8'))} bytes long (rule: SQL identifiers are at most "
            f"{MAX_IDENTIFIER_BYTES} bytes; PostgreSQL would silently truncate it)"
        )
    if not IDENTIFIER.match(name):
        raise BadInputError(
            f"{what} {name!r} is not a valid identifier (rule: letters, digits and '_', not starting "
            "with a digit)"
        )
    return name


def sql_type(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    if kind == "f":
        return "double precision"
    if kind in ("i", "u"):
        return "bigint"
    if kind == "b":
        return "boolean"
    return "text"


def schema_of(frame: pd.DataFrame) -> dict[str, str]:
    return {str(c): sql_type(frame[c].dtype) for c in frame.columns}


def table_key(feature_set: str) -> str:
    """What a feature-set name becomes inside its data tables' names (``wine-x`` -> ``wine_x``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", feature_set).lower()


def refuse_collision(feature_set: str, existing: list[str]) -> None:
    """Refuse a feature-set name that maps to the tables of another one (``wine-x``, ``wine_x``
    and ``Wine_X`` would share tables and partitions: each load would fail, on every retry)."""
    key = table_key(feature_set)
    clashes = sorted(other for other in existing if other != feature_set and table_key(other) == key)
    if clashes:
        raise BadInputError(
            f"feature set name {feature_set!r} (data.name) collides with the existing feature set "
            f"{clashes[0]!r}: both map to the data tables 'fs_{key}_*' (rule: feature-set names must "
            "differ after lower-casing and replacing every character other than letters, digits and "
            "'_' by '_'; choose another data.name)"
        )


def data_table_name(feature_set: str, schema: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:10]
    base = table_key(feature_set)
    name = f"fs_{base}_{digest}"
    limit = MAX_IDENTIFIER_BYTES - PARTITION_SUFFIX_BYTES
    if len(name.encode("utf-8")) > limit:
        longest = limit - len("fs__") - len(digest)
        raise BadInputError(
            f"feature set name {feature_set!r} (data.name) is too long: its data table {name!r} and "
            f"partitions '<table>_v<version>' would exceed PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte "
            f"identifier limit (rule: at most {longest} characters, which PostgreSQL would otherwise "
            "silently truncate)"
        )
    return check_identifier(name, "feature table name")


# Bounded waits on PostgreSQL: a server that is gone is noticed within about a minute, never hangs
# a step (TCP keepalives also cover a half-open connection in the middle of a COPY).
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "application_name": "ml-pipeline",
}


def _driver_errors() -> tuple[type[BaseException], ...]:
    """The DB-API errors that mean 'the server went away' (psycopg2's, when installed)."""
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2-binary is a dependency
        return ()
    return (psycopg2.OperationalError, psycopg2.InterfaceError)


class FeatureStore:
    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        try:
            backend = sa.engine.make_url(url).get_backend_name()
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if backend == "postgresql":
                kwargs["connect_args"] = dict(POSTGRES_CONNECT_ARGS)
            self.engine: sa.Engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"feature store URL {redact_url(url)!r} is not usable: {exc}") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            self._prepare_sqlite()

    def _prepare_sqlite(self) -> None:
        """WAL and a busy timeout for concurrent writers; ``BEGIN IMMEDIATE`` so that a writer takes
        the database lock up front instead of failing half-way (SQLAlchemy's documented recipe)."""
        import sqlalchemy as sa

        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.engine.dispose()

    # public API --------------------------------------------------------------------------------

    def write(
        self, frame: pd.DataFrame, feature_set: str, content_hash: str, run_id: str
    ) -> FeatureSetVersion:
        """Publish ``frame`` as the next version of ``feature_set`` (idempotent per run and hash)."""
        import sqlalchemy as sa

        if "row_id" not in frame.columns:
            raise ValueError("a feature frame needs a row_id column")
        for column in frame.columns:
            check_identifier(str(column), "feature column name")
        schema = schema_of(frame)
        table = data_table_name(feature_set, schema)
        try:
            if self.dialect == "postgresql":
                self.migrate()
                return self._write_postgres(frame, feature_set, table, schema, content_hash, run_id)
            return self._write_generic(frame, feature_set, table, schema, content_hash, run_id)
        except (sa.exc.OperationalError, sa.exc.InterfaceError, *_driver_errors()) as exc:
            reason = one_line(str(getattr(exc, "orig", None) or exc), " ")
            if isinstance(exc, _driver_errors()):
                reason = f"connection to the server lost ({reason})"
            raise RetryableError(
                f"feature store {redact_url(self.url)} failed while loading {feature_set!r}: "
                f"{reason}; nothing was published (the load's transaction was rolled back)"
            ) from None

    def migrate(self) -> None:
        """Create the versions table if it is missing (PostgreSQL; serialised across processes).

        Runs in its own short transaction under a global advisory lock, so two first loads of
        different feature sets cannot race on ``CREATE TABLE IF NOT EXISTS``.
        """
        from psycopg2 import sql

        raw = self.engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            with dbapi.cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSIONS_TABLE,))
                if cursor.fetchone()[0]:
                    dbapi.rollback()
                    return
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("ml-pipeline/features/ddl",))
                cursor.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {versions} ("
                        " feature_set varchar(128) NOT NULL, version integer NOT NULL,"
                        " table_name varchar(63) NOT NULL, row_count bigint NOT NULL, schema text NOT NULL,"
                        " content_hash varchar(64) NOT NULL, run_id varchar(200) NOT NULL,"
                        " created_at timestamptz NOT NULL DEFAULT now(),"
                        " PRIMARY KEY (feature_set, version))"
                    ).format(versions=sql.Identifier(VERSIONS_TABLE))
                )
            dbapi.commit()
        except BaseException:
            try:
                raw.driver_connection.rollback()
            except Exception:
                raw.invalidate()
            raise
        finally:
            raw.close()

    def versions(self, feature_set: str | None = None) -> list[FeatureSetVersion]:
        import sqlalchemy as sa

        if not sa.inspect(self.engine).has_table(VERSIONS_TABLE):
            return []
        versions = self._versions_table(self._metadata())
        query = sa.select(
            versions.c.feature_set,
            versions.c.version,
            versions.c.table_name,
            versions.c.row_count,
            versions.c.schema,
            versions.c.content_hash,
            versions.c.run_id,
            versions.c.created_at,
        ).order_by(versions.c.feature_set, versions.c.version)
        if feature_set is not None:
            query = query.where(versions.c.feature_set == feature_set)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            FeatureSetVersion(r[0], int(r[1]), r[2], int(r[3]), json.loads(r[4]), r[5], r[6], str(r[7]))
            for r in rows
        ]

    def get_version(self, feature_set: str, version: int) -> FeatureSetVersion:
        for item in self.versions(feature_set):
            if item.version == version:
                return item
        raise BadInputError(f"feature set {feature_set!r} has no version {version}")

    def read(self, feature_set: str, version: int) -> pd.DataFrame:
        """Read one version back, rows ordered by ``row_id``, columns as written."""
        import pandas as pd
        import sqlalchemy as sa

        meta = self.get_version(feature_set, version)
        columns = list(meta.schema)
        try:
            if self.dialect == "postgresql":
                frame = self._read_postgres(meta, columns)
            else:
                table = self._table(meta.table_name, meta.schema)
                query = sa.select(*[table.c[c] for c in columns]).where(table.c["_version"] == version)
                with self.engine.connect() as connection:
                    frame = pd.read_sql_query(query.order_by(table.c["row_id"]), connection)
        except (sa.exc.OperationalError, sa.exc.InterfaceError, *_driver_errors()) as exc:
            reason = one_line(str(getattr(exc, "orig", None) or exc), " ")
            raise RetryableError(f"feature store {redact_url(self.url)} unreachable: {reason}") from None
        for column, kind in meta.schema.items():
            if kind == "double precision":
                frame[column] = frame[column].astype("float64")
            elif kind == "bigint":
                frame[column] = frame[column].astype("int64")
        if len(frame) != meta.row_count:
            raise RetryableError(
                f"feature set {feature_set!r} v{version}: read {len(frame)} rows, "
                f"the version row says {meta.row_count}"
            )
        return frame

    # generic (SQLite) ----------------------------------------------------------------------------

    def _metadata(self):
        import sqlalchemy as sa

        return sa.MetaData()

    def _versions_table(self, metadata):
        import sqlalchemy as sa

        return sa.Table(
            VERSIONS_TABLE,
            metadata,
            sa.Column("feature_set", sa.String(128), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("table_name", sa.String(63), nullable=False),
            sa.Column("row_count", sa.BigInteger, nullable=False),
            sa.Column("schema", sa.Text, nullable=False),
            sa.Column("content_hash", sa.String(64), nullable=False),
            sa.Column("run_id", sa.String(200), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
        )

    def _table(self, name: str, schema: dict[str, str], metadata=None):
        import sqlalchemy as sa

        types = {
            "double precision": sa.Float,
            "bigint": sa.BigInteger,
            "boolean": sa.Boolean,
            "text": sa.Text,
        }
        metadata = metadata if metadata is not None else self._metadata()
        columns = [sa.Column("_version", sa.Integer, primary_key=True)]
        for column, kind in schema.items():
            columns.append(sa.Column(column, types[kind](), primary_key=(column == "row_id")))
        return sa.Table(name, metadata, *columns)

    def _write_generic(
        self, frame, feature_set, table_name, schema, content_hash, run_id
    ) -> FeatureSetVersion:
        import sqlalchemy as sa

        metadata = self._metadata()
        versions = self._versions_table(metadata)
        table = self._table(table_name, schema, metadata)
        with self.engine.begin() as connection:  # one transaction: all rows and the version row
            metadata.create_all(connection)
            names = connection.execute(sa.select(versions.c.feature_set).distinct()).scalars().all()
            refuse_collision(feature_set, list(names))
            existing = self._existing(connection, versions, feature_set, run_id, content_hash)
            if existing is not None:
                return existing
            version = self._next_version(connection, versions, feature_set)
            for start in range(0, len(frame), 10_000):
                chunk = frame.iloc[start : start + 10_000].to_dict(orient="records")
                for record in chunk:
                    record["_version"] = version
                connection.execute(table.insert(), chunk)
            item = self._version_row(
                feature_set, version, table_name, len(frame), schema, content_hash, run_id
            )
            connection.execute(versions.insert(), [self._row_dict(item)])
        logger.info("feature set %s v%d: %d rows in %s", feature_set, version, len(frame), table_name)
        return item

    def _existing(self, connection, versions, feature_set, run_id, content_hash) -> FeatureSetVersion | None:
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
        return FeatureSetVersion(
            row.feature_set,
            int(row.version),
            row.table_name,
            int(row.row_count),
            json.loads(row.schema),
            row.content_hash,
            row.run_id,
            str(row.created_at),
        )

    def _next_version(self, connection, versions, feature_set) -> int:
        import sqlalchemy as sa

        current = connection.execute(
            sa.select(sa.func.max(versions.c.version)).where(versions.c.feature_set == feature_set)
        ).scalar()
        return int(current or 0) + 1

    @staticmethod
    def _version_row(
        feature_set, version, table_name, rows, schema, content_hash, run_id
    ) -> FeatureSetVersion:
        return FeatureSetVersion(
            feature_set=feature_set,
            version=version,
            table_name=table_name,
            row_count=rows,
            schema=schema,
            content_hash=content_hash,
            run_id=run_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    @staticmethod
    def _row_dict(item: FeatureSetVersion) -> dict[str, Any]:
        row = dict(item.__dict__)
        row["schema"] = json.dumps(item.schema)  # column order matters
        return row

    # PostgreSQL ----------------------------------------------------------------------------------

    def _write_postgres(
        self, frame, feature_set, table_name, schema, content_hash, run_id
    ) -> FeatureSetVersion:
        from psycopg2 import sql

        raw = self.engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            dbapi.autocommit = False
            with dbapi.cursor() as cursor:
                # Names sharing data tables share the lock, so the collision check below is race-free.
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"ml-pipeline/features/{table_key(feature_set)}",),
                )
                cursor.execute(
                    sql.SQL("SELECT DISTINCT feature_set FROM {versions}").format(
                        versions=sql.Identifier(VERSIONS_TABLE)
                    )
                )
                refuse_collision(feature_set, [row[0] for row in cursor.fetchall()])
                cursor.execute(
                    sql.SQL(
                        "SELECT version, row_count, created_at FROM {versions}"
                        " WHERE feature_set = %s AND run_id = %s AND content_hash = %s"
                    ).format(versions=sql.Identifier(VERSIONS_TABLE)),
                    (feature_set, run_id, content_hash),
                )
                found = cursor.fetchone()
                if found is not None:
                    dbapi.rollback()
                    logger.info("feature set %s v%d already holds run %s", feature_set, found[0], run_id)
                    return FeatureSetVersion(
                        feature_set,
                        int(found[0]),
                        table_name,
                        int(found[1]),
                        schema,
                        content_hash,
                        run_id,
                        str(found[2]),
                    )
                cursor.execute(
                    sql.SQL(
                        "SELECT coalesce(max(version), 0) + 1 FROM {versions} WHERE feature_set = %s"
                    ).format(versions=sql.Identifier(VERSIONS_TABLE)),
                    (feature_set,),
                )
                version = int(cursor.fetchone()[0])
                column_defs = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(kind)) for c, kind in schema.items()
                )
                parent = sql.Identifier(table_name)
                cursor.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {parent} (_version integer NOT NULL, {columns},"
                        " PRIMARY KEY (_version, row_id)) PARTITION BY LIST (_version)"
                    ).format(parent=parent, columns=column_defs)
                )
                staging_name = check_identifier(f"{table_name}_v{version}", "feature partition name")
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
                stream = _CopyStream(frame, schema)
                try:
                    cursor.copy_expert(copy.as_string(dbapi), stream, size=1 << 20)
                finally:
                    stream.close()
                cursor.execute(
                    sql.SQL("ALTER TABLE {staging} ADD PRIMARY KEY (_version, row_id)").format(
                        staging=staging
                    )
                )
                cursor.execute(
                    sql.SQL(
                        "ALTER TABLE {parent} ATTACH PARTITION {staging} FOR VALUES IN ({version})"
                    ).format(parent=parent, staging=staging, version=sql.Literal(version))
                )
                item = self._version_row(
                    feature_set, version, table_name, len(frame), schema, content_hash, run_id
                )
                cursor.execute(
                    sql.SQL(
                        "INSERT INTO {versions} (feature_set, version, table_name, row_count, schema,"
                        " content_hash,"
                        " run_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    ).format(versions=sql.Identifier(VERSIONS_TABLE)),
                    (feature_set, version, table_name, len(frame), json.dumps(schema), content_hash, run_id),
                )
            dbapi.commit()
        except BaseException:
            try:
                raw.driver_connection.rollback()
            except Exception:  # the server is gone: drop the connection instead of pooling it
                raw.invalidate()
            raise
        finally:
            raw.close()
        logger.info(
            "feature set %s v%d: %d rows copied into %s", feature_set, version, len(frame), staging_name
        )
        return item

    def _read_postgres(self, meta: FeatureSetVersion, columns: list[str]) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        from psycopg2 import sql

        raw = self.engine.raw_connection()
        try:
            buffer = io.BytesIO()
            with raw.driver_connection.cursor() as cursor:
                query = sql.SQL(
                    "COPY (SELECT {columns} FROM {table} WHERE _version = {version} ORDER BY row_id)"
                    " TO STDOUT WITH (FORMAT csv, HEADER true)"
                ).format(
                    columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                    table=sql.Identifier(meta.table_name),
                    version=sql.Literal(meta.version),
                )
                cursor.copy_expert(query.as_string(raw.driver_connection), buffer)
            raw.driver_connection.rollback()
        finally:
            raw.close()
        types = {
            "double precision": pa.float64(),
            "bigint": pa.int64(),
            "boolean": pa.bool_(),
            "text": pa.string(),
        }
        buffer.seek(0)
        table = pacsv.read_csv(
            buffer,
            # PostgreSQL's CSV: NULL is an unquoted empty field, an empty string is quoted (""),
            # booleans are t/f.
            convert_options=pacsv.ConvertOptions(
                column_types={c: types[meta.schema[c]] for c in columns},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
                true_values=["t"],
                false_values=["f"],
            ),
        )
        return table.to_pandas()


ARROW_TYPES = {"double precision": "float64", "bigint": "int64", "boolean": "bool_", "text": "large_string"}


def arrow_chunk(frame: pd.DataFrame, schema: dict[str, str]):
    """Rows of ``frame`` as an Arrow table whose types match the SQL columns exactly (binary COPY
    has no implicit casts): float -> float64, int -> int64, bool, anything else -> text. NaN and
    None become NULL."""
    import pyarrow as pa

    arrays = []
    for name, kind in schema.items():
        series = frame[name]
        if kind == "text" and series.dtype.kind not in "OSU" and str(series.dtype) not in ("str", "string"):
            series = series.astype("str").where(series.notna(), None)
        arrays.append(pa.array(series, type=getattr(pa, ARROW_TYPES[kind])(), from_pandas=True))
    return pa.Table.from_arrays(arrays, names=list(schema))


class _CopyStream(io.RawIOBase):
    """A file-like object yielding the frame in PostgreSQL's binary COPY format, chunk by chunk.

    ``copy_expert`` pulls from it, so memory stays bounded by a few chunks instead of the whole
    table's encoding. A background thread converts each chunk to Arrow and encodes it (pgpq, an
    Arrow-to-PostgreSQL binary encoder) while PostgreSQL ingests the previous one; binary COPY
    spares the server the parsing of numbers from text, its main cost with CSV.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        schema: dict[str, str],
        chunk_rows: int = COPY_CHUNK_ROWS,
        prefetch: int = 2,
    ):
        import queue

        super().__init__()
        self._frame = frame
        self._schema = schema
        self._chunk_rows = chunk_rows
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._chunk = b""
        self._offset = 0
        self._done = False
        self._thread = threading.Thread(target=self._produce, name="copy-encoder", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        from pgpq import ArrowToPostgresBinaryEncoder

        first = arrow_chunk(self._frame.iloc[:0], self._schema)
        encoder = ArrowToPostgresBinaryEncoder(first.schema)
        yield bytes(encoder.write_header())
        for start in range(0, len(self._frame), self._chunk_rows):
            table = arrow_chunk(self._frame.iloc[start : start + self._chunk_rows], self._schema)
            yield b"".join(bytes(encoder.write_batch(batch)) for batch in table.to_batches())
        yield bytes(encoder.finish())

    def _put(self, item: bytes | BaseException | None) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for chunk in self._chunks():
                if not self._put(chunk):
                    return  # the reader gave up (the COPY failed)
            self._put(None)
        except BaseException as exc:  # surfaced to the reader
            self._put(exc)

    def close(self) -> None:
        """Stop the encoder thread (also when the COPY failed half-way)."""
        self._stop.set()
        self._thread.join(timeout=10)
        super().close()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes of the current chunk (fewer is fine: empty means the end)."""
        while self._offset >= len(self._chunk):
            if self._done:
                return b""
            item = self._queue.get()
            if item is None:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                raise item
            self._chunk, self._offset = item, 0
        end = len(self._chunk) if size is None or size < 0 else min(len(self._chunk), self._offset + size)
        data = self._chunk[self._offset : end]
        self._offset = end
        return data
