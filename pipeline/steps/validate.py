"""Step 2, validate: run the data contract (Great Expectations) on the raw snapshot.

A snapshot of more than ``data.validation_batch_rows`` rows is validated a batch of rows at a time
(:mod:`pipeline.contract_batches`), so the step holds one batch, not the table; the report, the
messages and the Data Docs are those of validating it whole.

The JSON result and the HTML Data Docs are published as this step's outputs whether the data
passes or not, so a failure can be inspected. A failure ends the step with the bad-input exit code
and a message naming each column, rule and observed value; nothing downstream runs. Warnings
(columns outside a non-strict contract, formula-like values under data.formula_values=warn) are
logged and recorded in the report and the step's summary.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pipeline.batches import table_batches, to_frame
from pipeline.context import StepContext, StepResult
from pipeline.contract import validate_frame
from pipeline.contract_batches import validate_batches
from pipeline.errors import ValidationFailedError
from pipeline.tabular import read_table_file

logger = logging.getLogger(__name__)


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    ingest = ctx.upstream("ingest")
    raw_path = ctx.input_path("ingest", "raw")
    label = f"{settings.data.source.uri} (snapshot {raw_path.name})"
    fmt, csv, docs_dir = ingest.summary["format"], settings.data.source.csv, ctx.staging / "data_docs"
    batch_rows = settings.data.validation_batch_rows
    if int(ingest.summary["rows"]) <= batch_rows:
        frame = read_table_file(raw_path, label, fmt, csv).reset_index(drop=True)  # data rows from 1
        outcome = validate_frame(frame, settings.data, label, docs_dir=docs_dir)
        del frame
    else:  # one batch of rows at a time, with the result of validating the table whole
        source = table_batches(raw_path, label, fmt, csv, batch_rows)  # the first pass, once

        def batches():
            return (to_frame(table, source.widen) for table in source.batches())

        outcome = validate_batches(batches, settings.data, label, docs_dir=docs_dir)
    report = {
        "success": outcome.success,
        "failures": outcome.failures,
        "warnings": outcome.warnings,
        "statistics": outcome.statistics,
        "snapshot_sha256": ingest.summary["sha256"],
        "result": outcome.result,
    }
    (ctx.staging / "validation.json").write_text(json.dumps(report, indent=2, default=str))
    summary = {
        "success": outcome.success,
        "failures": outcome.failures[:20],
        "warnings": outcome.warnings[:20],
        **outcome.statistics,
    }
    outputs = {"report": "validation.json", "data_docs": "data_docs"}
    if outcome.success:
        return StepResult(outputs=outputs, summary=summary)
    message = f"validation of {label} failed, {len(outcome.failures)} rule(s) broken:\n  - " + "\n  - ".join(
        outcome.failures
    )
    summary["error"] = message
    return StepResult(
        outputs=outputs,
        summary=summary,
        status="failed",
        error=ValidationFailedError(message, outcome.failures),
    )


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    passed, evaluated = summary.get("successful_expectations"), summary.get("evaluated_expectations")
    warnings = len(summary.get("warnings") or [])
    return f"{passed}/{evaluated} expectations passed" + (f", {warnings} warning(s)" if warnings else "")
