"""The rows a feature-set version is published from, handed to a backend a chunk at a time.

:meth:`FeatureRows.of` wraps a DataFrame already in memory; :meth:`FeatureRows.from_parquet` reads
a Parquet file one record batch at a time, so a load holds one chunk of the table, not the table
(the features step publishes ``features.parquet`` this way). Both give the same schema and the
same values: the schema of a Parquet file is the one its whole-file pandas read would have (an
integer column with missing values is stored as ``double precision``, as pandas reads it as
floats), worked out from the file's metadata without reading its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.featurestore.schema import TEXT, schema_of, sql_type

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass(frozen=True)
class FeatureRows:
    columns: list[str]
    schema: dict[str, str]  # column -> a COLUMN_TYPES kind
    row_count: int
    _chunks: Callable[[int], Iterator[pd.DataFrame]]

    def chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        """The rows in order, as DataFrames of at most ``rows`` rows."""
        return self._chunks(rows)

    @classmethod
    def of(cls, frame: pd.DataFrame | FeatureRows) -> FeatureRows:
        if isinstance(frame, FeatureRows):
            return frame

        def chunks(rows: int) -> Iterator[pd.DataFrame]:
            for start in range(0, len(frame), rows):
                yield frame.iloc[start : start + rows]

        return cls([str(c) for c in frame.columns], schema_of(frame), len(frame), chunks)

    @classmethod
    def from_parquet(cls, path: Path | str) -> FeatureRows:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        arrow_schema = file.schema_arrow
        empty = arrow_schema.empty_table().to_pandas()
        schema: dict[str, str] = {}
        for name in map(str, empty.columns):  # a stored pandas index is the index, as read whole
            dtype = empty[name].dtype
            kind = sql_type(dtype)
            plain = isinstance(dtype, np.dtype)  # not a nullable extension dtype (Int64, boolean)
            index = arrow_schema.get_field_index(name)
            if plain and kind in ("bigint", "boolean") and _has_nulls(file, index, name):
                # pandas reads such a column as floats (integers) or objects (booleans)
                kind = "double precision" if kind == "bigint" else TEXT
            schema[name] = kind

        def chunks(rows: int) -> Iterator[pd.DataFrame]:
            with pq.ParquetFile(path) as source:
                for batch in source.iter_batches(batch_size=rows):
                    yield pa.Table.from_batches([batch], schema=arrow_schema).to_pandas()

        row_count = file.metadata.num_rows
        file.close()
        return cls(list(schema), schema, row_count, chunks)


def _has_nulls(file, index: int, name: str) -> bool:
    """Whether column ``name`` (leaf ``index`` of a flat schema) holds a null: from the row groups'
    statistics, else by reading that one column."""
    metadata = file.metadata
    counts = []
    for group in range(metadata.num_row_groups):
        column = metadata.row_group(group).column(index)
        stats = column.statistics
        if column.path_in_schema != name or stats is None or not stats.has_null_count:
            return file.read(columns=[name]).column(name).null_count > 0
        counts.append(stats.null_count)
    return sum(counts) > 0
