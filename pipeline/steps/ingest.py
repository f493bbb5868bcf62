"""Step 1, ingest: read the configured source into an immutable raw snapshot plus its content hash."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pipeline.context import StepContext, StepResult
from pipeline.sources import fetch
from pipeline.tabular import TableLimits, read_table_bytes

logger = logging.getLogger(__name__)


def snapshot_name(data_name: str, fmt: str) -> str:
    return f"{data_name}.{'parquet' if fmt == 'parquet' else 'csv'}"


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    limits = TableLimits.of(settings.data)
    raw = fetch(settings.data.source, settings.s3, limits)
    # Parse once, strictly, so that a snapshot that cannot be read is never published; the row and
    # column ceilings are checked while reading, before the table is built, and a header that cannot
    # make a table is refused with every problem it has (the contract's header findings included).
    # A streaming scan: its rows and columns are all this step needs, so no table is built.
    shape = read_table_bytes(
        raw.data, raw.label, raw.format, settings.data.source.csv, limits, settings.data, scan=True
    )
    rows, columns = shape.rows, list(map(str, shape.columns))
    name = snapshot_name(settings.data.name, raw.format)
    (ctx.staging / name).write_bytes(raw.data)
    sha256 = hashlib.sha256(raw.data).hexdigest()
    logger.info(
        "ingested %d rows x %d columns from %s (sha256 %s)",
        rows,
        len(columns),
        raw.label,
        sha256[:12],
    )
    return StepResult(
        outputs={"raw": name},
        summary={
            "rows": rows,
            "columns": columns,
            "format": raw.format,
            "source": raw.details,
            "sha256": sha256,
            "bytes": len(raw.data),
        },
    )


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    return f"{summary.get('rows')} rows, sha256 {str(summary.get('sha256'))[:12]}"
