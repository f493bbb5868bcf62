"""What the feature store stores, declared once: the versions table, the column types, the names.

Every reader and writer works from these declarations: the DDL (SQLAlchemy's ``create_all`` on
SQLite, the ``CREATE TABLE`` compiled from the same :class:`sqlalchemy.Table` on PostgreSQL), the
reads and writes, and ``pipeline doctor``'s column check (:data:`VERSIONS_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import sqlalchemy as sa

VERSIONS_TABLE = "feature_set_versions"
MAX_IDENTIFIER_BYTES = 63
# Room left in a data table's name for the partition suffix ``_v<version>`` (versions < 10**9).
PARTITION_SUFFIX_BYTES = 11
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------------------------
# column types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnType:
    """One logical column type. ``kind`` is what a version's schema stores (and what names the
    data table, through its hash), and PostgreSQL's name of the type."""

    kind: str
    numpy_kinds: str  # numpy dtype kinds stored as this type ("" for the fallback)
    sqlalchemy: str  # attribute of ``sqlalchemy`` (the generic path's column type)
    arrow: str  # attribute of ``pyarrow`` for the binary COPY encoding (exact: no implicit casts)
    arrow_csv: str  # attribute of ``pyarrow`` for reading PostgreSQL's CSV back
    pandas: str | None  # dtype a read column is cast to (None: as read)

    @property
    def postgres(self) -> str:
        return self.kind

    def sqlalchemy_type(self) -> sa.types.TypeEngine:
        import sqlalchemy as sa

        return getattr(sa, self.sqlalchemy)()

    def arrow_type(self):
        import pyarrow as pa

        return getattr(pa, self.arrow)()

    def arrow_csv_type(self):
        import pyarrow as pa

        return getattr(pa, self.arrow_csv)()


TEXT = "text"
COLUMN_TYPES: dict[str, ColumnType] = {
    t.kind: t
    for t in (
        ColumnType("double precision", "f", "Float", "float64", "float64", "float64"),
        ColumnType("bigint", "iu", "BigInteger", "int64", "int64", "int64"),
        ColumnType("boolean", "b", "Boolean", "bool_", "bool_", None),
        ColumnType(TEXT, "", "Text", "large_string", "string", None),
    )
}


def sql_type(dtype: Any) -> str:
    """The logical type (a :data:`COLUMN_TYPES` key) a pandas/numpy dtype is stored as."""
    kind = getattr(dtype, "kind", "O")
    for column_type in COLUMN_TYPES.values():
        if column_type.numpy_kinds and kind in column_type.numpy_kinds:
            return column_type.kind
    return TEXT


def schema_of(frame: pd.DataFrame) -> dict[str, str]:
    return {str(c): sql_type(frame[c].dtype) for c in frame.columns}


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# the versions table
# --------------------------------------------------------------------------------------------


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

    @classmethod
    def new(
        cls, feature_set: str, version: int, table_name: str, rows: int, schema, content_hash, run_id
    ) -> FeatureSetVersion:
        """The row a load is about to insert, stamped now."""
        return cls(
            feature_set=feature_set,
            version=version,
            table_name=table_name,
            row_count=rows,
            schema=schema,
            content_hash=content_hash,
            run_id=run_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FeatureSetVersion:
        """A row of :data:`VERSIONS_TABLE` (any mapping of its column names)."""
        return cls(
            feature_set=row["feature_set"],
            version=int(row["version"]),
            table_name=row["table_name"],
            row_count=int(row["row_count"]),
            schema=json.loads(row["schema"]),
            content_hash=row["content_hash"],
            run_id=row["run_id"],
            # SQLite stores the ISO string written by new(); PostgreSQL's timestamptz comes back
            # as a datetime, shown as str() does (as the feature store always has).
            created_at=str(row["created_at"]),
        )

    def row(self) -> dict[str, Any]:
        """The values to insert (``schema`` as JSON: its column order matters)."""
        values = dict(self.__dict__)
        values["schema"] = json.dumps(self.schema)
        return values


@dataclass(frozen=True)
class VersionsColumn:
    name: str
    type: str  # attribute of ``sqlalchemy`` called with ``args``
    args: tuple[int, ...] = ()
    primary_key: bool = False


# The one declaration of the versions table. The stored types are those the pipeline has always
# created (existing databases keep working): created_at is a string on SQLite (the ISO time
# written by the load) and ``timestamptz DEFAULT now()`` on PostgreSQL (set by the server).
VERSIONS_COLUMNS: tuple[VersionsColumn, ...] = (
    VersionsColumn("feature_set", "String", (128,), primary_key=True),
    VersionsColumn("version", "Integer", primary_key=True),
    VersionsColumn("table_name", "String", (63,)),
    VersionsColumn("row_count", "BigInteger"),
    VersionsColumn("schema", "Text"),
    VersionsColumn("content_hash", "String", (64,)),
    VersionsColumn("run_id", "String", (200,)),
    VersionsColumn("created_at", "String", (40,)),
)
SERVER_SET_ON_POSTGRES = "created_at"


def versions_table(metadata: sa.MetaData, dialect: str = "sqlite") -> sa.Table:
    """:data:`VERSIONS_COLUMNS` as a SQLAlchemy table for ``dialect`` (its DDL, reads, writes)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    columns = []
    for spec in VERSIONS_COLUMNS:
        column_type = getattr(sa, spec.type)(*spec.args)
        kwargs: dict[str, Any] = {"primary_key": spec.primary_key, "nullable": False}
        if spec.name == SERVER_SET_ON_POSTGRES:
            column_type = column_type.with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
            if dialect == "postgresql":
                kwargs["server_default"] = sa.text("now()")
        columns.append(sa.Column(spec.name, column_type, **kwargs))
    return sa.Table(VERSIONS_TABLE, metadata, *columns)


def data_table(name: str, schema: dict[str, str], metadata: sa.MetaData) -> sa.Table:
    """One feature set's data table on the generic path: ``_version`` plus the typed columns."""
    import sqlalchemy as sa

    columns = [sa.Column("_version", sa.Integer, primary_key=True)]
    for column, kind in schema.items():
        columns.append(
            sa.Column(column, COLUMN_TYPES[kind].sqlalchemy_type(), primary_key=(column == "row_id"))
        )
    return sa.Table(name, metadata, *columns)
