"""What every source shares: the snapshot it returns, its bounds and how a table becomes Parquet."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
FILE_SCHEMES = ("file", "s3", "pkg")
HTTP_SCHEMES = ("http", "https")
READ_CHUNK = 1 << 16
SQL_FETCH_ROWS = 10_000


@dataclass
class RawData:
    data: bytes
    format: str  # "csv" or "parquet"
    label: str  # how error messages name the source
    details: dict[str, Any]


def too_big(label: str, size: int, cap: int, setting: str) -> BadInputError:
    return BadInputError(
        f"source {label}: {size} bytes, more than {setting}={cap} (rule: a source is at most "
        f"{setting} bytes; raise it if the data is right)"
    )


def to_parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
