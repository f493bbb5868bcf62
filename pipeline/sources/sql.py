"""SQL queries: one read-only statement under a timeout, fetched in batches up to the row cap."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError, ConfigError, RetryableError
from pipeline.settings import redact_url
from pipeline.sources.base import SQL_FETCH_ROWS, RawData, to_parquet
from pipeline.tabular import NO_LIMITS, TableLimits

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import SourceSettings

logger = logging.getLogger(__name__)

# SQL ----------------------------------------------------------------------------------------


def _single_statement(query: str) -> str:
    """The query, refused unless it is exactly one statement (a database driver would otherwise
    run ``SELECT 1; COMMIT; DELETE ...`` as three, outside the read-only transaction)."""
    import sqlparse

    statements = [
        text for text in sqlparse.split(query) if sqlparse.format(text, strip_comments=True).strip(" \t\r\n;")
    ]
    if len(statements) != 1:
        raise ConfigError(
            f"data.source.query holds {len(statements)} statements (rule: exactly one statement, a query; "
            "it runs in a read-only transaction that is rolled back)"
        )
    return query


def _bounded_engine(source: SourceSettings):
    """An engine whose sessions are read-only and time-limited: PostgreSQL's
    ``default_transaction_read_only`` and ``statement_timeout``, SQLite's ``query_only`` and a
    progress handler that interrupts a query past its time."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    try:
        url = sa.engine.make_url(source.uri)
        backend = url.get_backend_name()
        if backend == "sqlite" and url.database not in (None, "", ":memory:"):
            database = url.database.removeprefix("file:").split("?", 1)[0]
            if not Path(database).is_file():
                raise ConfigError(f"data.source.uri: the SQLite database {database!r} does not exist")
        connect_args = {"connect_timeout": 10} if url.get_driver_name() in ("psycopg2", "psycopg") else {}
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise ConfigError(f"data.source.uri is not a usable SQLAlchemy URL: {redact_url(str(exc))}") from None
    timeout_s = source.statement_timeout_s

    @sa.event.listens_for(engine, "connect")
    def _bound(dbapi_connection, _record) -> None:
        if backend == "postgresql":
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.execute(f"SET statement_timeout = {max(1, int(timeout_s * 1000))}")
            cursor.close()
            dbapi_connection.commit()
        elif backend == "sqlite":
            dbapi_connection.execute("PRAGMA query_only = ON")
            deadline = time.monotonic() + timeout_s
            dbapi_connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)

    return engine, backend


def _fetch_sql(source: SourceSettings, limits: TableLimits = NO_LIMITS) -> RawData:
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    if not source.query:
        raise ConfigError("data.source.kind is 'sql' but data.source.query is empty")
    query = _single_statement(source.query)
    label = f"{redact_url(source.uri)} query"
    engine, backend = _bounded_engine(source)
    try:
        try:
            connection = engine.connect()
        except sa_exc.DBAPIError as exc:
            raise RetryableError(f"source {label}: database unreachable: {exc.orig}") from None
        with connection:
            transaction = connection.begin()
            try:
                if backend == "postgresql":
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                result = connection.execution_options(stream_results=True).execute(sa.text(query))
                columns = list(result.keys())
                limits.check_columns(len(columns), f"source {label}")
                rows: list[Any] = []
                while chunk := result.fetchmany(SQL_FETCH_ROWS):
                    rows.extend(chunk)
                    limits.check_rows(len(rows), f"source {label}", so_far=True)
                result.close()
            except sa_exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise RetryableError(f"source {label}: connection lost: {exc.orig}") from None
                if _timed_out(exc, backend):
                    raise RetryableError(
                        f"source {label}: the query ran longer than data.source.statement_timeout_s="
                        f"{source.statement_timeout_s:g}s and was cancelled"
                    ) from None
                reason = " ".join(str(exc.orig).split())
                raise BadInputError(
                    f"source {label}: the query failed: {reason} (rule: one read-only query)"
                ) from None
            finally:
                transaction.rollback()
    finally:
        engine.dispose()
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        raise BadInputError(f"source {label}: the query returned no rows (rule: at least one row)")
    return RawData(to_parquet(frame), "parquet", label, {"uri": redact_url(source.uri), "rows": len(frame)})


def _timed_out(exc, backend: str) -> bool:
    if backend == "postgresql":
        return getattr(exc.orig, "pgcode", None) == "57014"  # query_canceled (statement_timeout)
    if backend == "sqlite":
        return "interrupted" in str(exc.orig)
    return False
