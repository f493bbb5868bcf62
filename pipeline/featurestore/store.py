""":class:`FeatureStore`: what every backend shares (validation, the versions listing, retryable
errors, the dtypes of a read), on the backend that the URL's dialect picks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError, ConfigError, RetryableError, one_line
from pipeline.featurestore.backend import Backend
from pipeline.featurestore.generic import SqlAlchemyBackend, SqliteBackend
from pipeline.featurestore.postgres import PostgresBackend
from pipeline.featurestore.rows import FeatureRows
from pipeline.featurestore.schema import (
    COLUMN_TYPES,
    VERSIONS_COLUMNS,
    VERSIONS_TABLE,
    FeatureSetVersion,
    check_identifier,
    data_table_name,
    versions_table,
)
from pipeline.settings import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    import pandas as pd
    import sqlalchemy as sa

# The backend of each SQLAlchemy dialect; any other dialect gets the generic one.
BACKENDS: dict[str, type[Backend]] = {"postgresql": PostgresBackend, "sqlite": SqliteBackend}


def backend_for(dialect: str) -> type[Backend]:
    return BACKENDS.get(dialect, SqlAlchemyBackend)


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
            backend = backend_for(sa.engine.make_url(url).get_backend_name())
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if backend.connect_args:
                kwargs["connect_args"] = dict(backend.connect_args)
            self.engine: sa.Engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"feature store URL {redact_url(url)!r} is not usable: {exc}") from None
        self.dialect = self.engine.dialect.name
        self.backend: Backend = backend_for(self.dialect)(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def write(
        self, frame: pd.DataFrame | FeatureRows, feature_set: str, content_hash: str, run_id: str
    ) -> FeatureSetVersion:
        """Publish ``frame`` (a DataFrame, or :class:`FeatureRows` read a chunk at a time) as the
        next version of ``feature_set`` (idempotent per run and hash)."""
        import sqlalchemy as sa

        rows = FeatureRows.of(frame)
        if "row_id" not in rows.columns:
            raise ValueError("a feature frame needs a row_id column")
        for column in rows.columns:
            check_identifier(column, "feature column name")
        table = data_table_name(feature_set, rows.schema)
        try:
            return self.backend.write(rows, feature_set, table, rows.schema, content_hash, run_id)
        except (sa.exc.OperationalError, sa.exc.InterfaceError, *_driver_errors()) as exc:
            reason = one_line(str(getattr(exc, "orig", None) or exc), " ")
            if isinstance(exc, _driver_errors()):
                reason = f"connection to the server lost ({reason})"
            raise RetryableError(
                f"feature store {redact_url(self.url)} failed while loading {feature_set!r}: "
                f"{reason}; nothing was published (the load's transaction was rolled back)"
            ) from None

    def migrate(self) -> None:
        """Create the versions table if it is missing (on PostgreSQL, serialised across processes)."""
        self.backend.migrate()

    def versions(self, feature_set: str | None = None) -> list[FeatureSetVersion]:
        import sqlalchemy as sa

        if not sa.inspect(self.engine).has_table(VERSIONS_TABLE):
            return []
        versions = versions_table(sa.MetaData(), self.dialect)
        query = sa.select(*[versions.c[c.name] for c in VERSIONS_COLUMNS]).order_by(
            versions.c.feature_set, versions.c.version
        )
        if feature_set is not None:
            query = query.where(versions.c.feature_set == feature_set)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [FeatureSetVersion.from_row(row) for row in rows]

    def get_version(self, feature_set: str, version: int) -> FeatureSetVersion:
        for item in self.versions(feature_set):
            if item.version == version:
                return item
        raise BadInputError(f"feature set {feature_set!r} has no version {version}")

    def read(self, feature_set: str, version: int) -> pd.DataFrame:
        """Read one version back, rows ordered by ``row_id``, columns as written."""
        import pandas as pd

        chunks = list(self.read_chunks(feature_set, version))
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

    def read_chunks(self, feature_set: str, version: int) -> Iterator[pd.DataFrame]:
        """One version a chunk of rows at a time (at least one chunk), rows ordered by ``row_id``,
        columns as written; a version that does not hold the rows its row says is retryable."""
        import sqlalchemy as sa

        meta = self.get_version(feature_set, version)
        chunks = self.backend.read_chunks(meta, list(meta.schema))
        rows = 0
        while True:
            try:
                frame = next(chunks)
            except StopIteration:
                break
            except (sa.exc.OperationalError, sa.exc.InterfaceError, *_driver_errors()) as exc:
                reason = one_line(str(getattr(exc, "orig", None) or exc), " ")
                raise RetryableError(f"feature store {redact_url(self.url)} unreachable: {reason}") from None
            for column, kind in meta.schema.items():
                dtype = COLUMN_TYPES[kind].pandas
                if dtype is not None:
                    frame[column] = frame[column].astype(dtype)
            rows += len(frame)
            yield frame
        if rows != meta.row_count:
            raise RetryableError(
                f"feature set {feature_set!r} v{version}: read {rows} rows, "
                f"the version row says {meta.row_count}"
            )
