"""The interface between :class:`~pipeline.featurestore.FeatureStore` and a database: a backend
creates the tables, publishes one version of a frame atomically and reads one version's rows.
The store does what is common (validation, the versions listing, retryable errors, dtypes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    import pandas as pd
    import sqlalchemy as sa

    from pipeline.featurestore.rows import FeatureRows
    from pipeline.featurestore.schema import FeatureSetVersion


class Backend(ABC):
    # Extra ``create_engine`` arguments for this backend's engine.
    connect_args: ClassVar[dict[str, Any]] = {}

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @abstractmethod
    def migrate(self) -> None:
        """Create the versions table if it is missing."""

    @abstractmethod
    def write(
        self,
        rows: FeatureRows,
        feature_set: str,
        table_name: str,
        schema: dict[str, str],
        content_hash: str,
        run_id: str,
    ) -> FeatureSetVersion:
        """Publish ``rows`` (taken a chunk at a time) as the next version, all or nothing (or
        return the version that already holds this run's content)."""

    @abstractmethod
    def read_chunks(self, meta: FeatureSetVersion, columns: list[str]) -> Iterator[pd.DataFrame]:
        """The rows of one version, ordered by ``row_id``, a chunk of rows at a time (at least one
        chunk: an empty version gives its columns, empty)."""
