"""Step 4, features: publish the processed feature set as a new version in the feature store.

The rows are read from ``features.parquet`` a record batch at a time and sent to the store as
they are read (:class:`~pipeline.featurestore.rows.FeatureRows`): the step never holds the table.
The version row and its rows are written in one transaction: a failure leaves the previous
versions intact and nothing half-written. Re-running the step for the same run and content
returns the version it already published instead of adding a duplicate.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.context import StepContext, StepResult
from pipeline.featurestore import FeatureStore
from pipeline.featurestore.rows import FeatureRows

logger = logging.getLogger(__name__)


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    preprocess = ctx.upstream("preprocess")
    path = ctx.input_path("preprocess", "features")
    rows = FeatureRows.from_parquet(path)  # read a record batch at a time, never whole
    content_hash = preprocess.outputs["features"]["sha256"]
    store = FeatureStore(settings.resolved_feature_store_url)
    try:
        version = store.write(rows, settings.data.name, content_hash=content_hash, run_id=ctx.run_id)
    finally:
        store.close()
    logger.info(
        "feature set %s version %d (%d rows)", version.feature_set, version.version, version.row_count
    )
    return StepResult(
        summary={
            "feature_set": version.feature_set,
            "feature_set_version": version.version,
            "table": version.table_name,
            "rows": version.row_count,
            "content_hash": version.content_hash,
        }
    )


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    return f"feature set {summary.get('feature_set')} v{summary.get('feature_set_version')}"
