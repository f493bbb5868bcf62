"""The data contract on a table read a batch of rows at a time, so that validating holds one batch,
not the table: :func:`validate_batches` gives what :func:`pipeline.contract.validate_frame` gives
for the whole table (the same failures, warnings, statistics and Data Docs).

* The suite's per-row checks (missing values, types, ranges, allowed values, the columns) are Great
  Expectations' own, run on each batch; their counts add up across batches, and each verdict is
  GX's ``mostly`` rule applied to the sums.
* The checks no batch can decide alone are computed here over every row: the row count, a unique
  column, rows unique over a set of columns (``data.unique_together``), the number of classes, and
  the duplicate rows. Values are compared by a 128-bit hash of each
  (:mod:`pipeline.contract_evidence`).
* The messages name the same values and data rows (numbered from 1 across the whole table); a
  second pass over the batches fetches the few rows a duplicate message shows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.contract_evidence import Evidence, RowHashes, Values, rows_text
from pipeline.contract_merge import ACROSS_BATCHES, COMPOUND, UNIQUE, Across, Merged, by_column
from pipeline.findings import (
    ROWS_SHOWN,
    _shown,
    duplicate_message,
    formula_masks,
    formula_message,
    header_findings,
)

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import pandas as pd

    from pipeline.contract import ValidationOutcome
    from pipeline.settings import DataSettings

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The whole validation
# --------------------------------------------------------------------------------------------


def fetch_rows(batches: Callable[[], Iterator[pd.DataFrame]], positions: list[int]) -> pd.DataFrame:
    """The rows at ``positions`` (0-based, across batches), indexed by position: one more pass."""
    import pandas as pd

    wanted = np.unique(np.asarray(positions, dtype=np.int64))
    parts, offset = [], 0
    for frame in batches():
        inside = wanted[(wanted >= offset) & (wanted < offset + len(frame))]
        if len(inside):
            part = frame.iloc[inside - offset].copy()
            part.index = inside
            parts.append(part)
        offset += len(frame)
    return pd.concat(parts) if parts else pd.DataFrame()


def validate_batches(
    batches: Callable[[], Iterator[pd.DataFrame]],
    data: DataSettings,
    label: str,
    docs_dir: Path | None = None,
) -> ValidationOutcome:
    """Run the contract on the table ``batches()`` yields (each call starts a new pass over the
    same frames); the outcome :func:`pipeline.contract.validate_frame` gives for the whole table."""
    import itertools

    import great_expectations as gx
    import pandas as pd

    from pipeline.contract import ValidationOutcome, _raised, build_expectations, gx_context

    frames = batches()
    first = next(frames, None)
    if first is None:
        first = pd.DataFrame()
    names = [str(c) for c in first.columns]
    context = gx_context(docs_dir)
    # Each suite is built whole: each add_expectation re-serialises the stored suite (quadratic).
    expectations = build_expectations(data, names)
    suite = context.suites.add(gx.ExpectationSuite(name=f"{data.name}_contract", expectations=expectations))
    order: list[Any] = [e.configuration for e in suite.expectations]  # each config, in the suite's order
    # A check across rows on a column the table lacks is GX's on each batch: it raises as GX does.
    local = [e for e in suite.expectations if not across_rows(e.configuration, names)]
    per_batch = context.suites.add(
        gx.ExpectationSuite(
            name=f"{data.name}_contract_batch", expectations=[e.copy(update={"id": None}) for e in local]
        )
    )
    merged = {twin.id: Merged(e.configuration) for twin, e in zip(per_batch.expectations, local, strict=True)}
    across = {c.id: Across(c, data) for c in order if across_rows(c, names)}
    asset = context.data_sources.add_pandas("pipeline").add_dataframe_asset(data.name)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=f"{data.name}_raw",
            data=asset.add_batch_definition_whole_dataframe("snapshot"),
            suite=per_batch,
        )
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{data.name}_checkpoint",
            validation_definitions=[definition],
            result_format={"result_format": "SUMMARY"},
        )
    )
    model_columns = [c for c in [*data.feature_columns(), data.target] if c in names]
    duplicates = RowHashes(model_columns)
    formulas: dict[str, Values] = {}
    evidence: dict[str, Evidence] = {}
    offset, count, meta, batch_id = 0, 0, {}, None
    frames = itertools.chain([first], frames)
    del first  # (held by the chain until the next batch)
    for frame in frames:
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        validation = next(iter(run.run_results.values()))
        meta = meta or dict(validation.meta)
        batch_id = batch_id or next(
            (i.expectation_config.kwargs.get("batch_id") for i in validation.results), None
        )
        for item in validation.results:
            entry = merged[item.expectation_config.id]
            entry.add(item, offset)
            result = item.result or {}
            column = entry.config.kwargs.get("column")
            if column in frame.columns and (not item.success or (result.get("unexpected_count") or 0) > 0):
                kind = entry.config.type
                evidence.setdefault(entry.config.id, Evidence(kind, dict(entry.config.kwargs)))
                evidence[entry.config.id].add(frame[column], offset)
        for check in across.values():
            check.add(frame)
        if model_columns:
            duplicates.add(frame)
        for column, mask in formula_masks(frame, data).items():
            formulas.setdefault(column, Values()).add(frame[column], mask, offset)
        offset += len(frame)
        count += 1
        del frame, run, validation
    total = offset

    verdicts: dict[str, tuple[bool, dict[str, Any], Any]] = {}
    for entry in merged.values():
        ok, result = entry.final()
        verdicts[entry.config.id] = (ok, result, entry.raised)
    wanted: list[int] = []
    for check in across.values():
        ok, result = check.final()
        verdicts[check.config.id] = (ok, result, None)
        wanted += check.wanted
    duplicate_count, examples = 0, []
    if model_columns and total:
        rows, group, repeat, sizes = duplicates.groups()
        duplicate_count = int(repeat.sum())
        if duplicate_count and duplicate_count / total > data.max_duplicate_fraction:
            firsts = np.full(len(sizes), total, dtype=np.int64)
            np.minimum.at(firsts, group, rows)
            repeated = np.flatnonzero(sizes > 1)
            top = repeated[np.lexsort((firsts[repeated], -sizes[repeated]))][:3]
            examples = [
                (int(g), int(firsts[g]), int(sizes[g]), rows[group == g][: ROWS_SHOWN + 1]) for g in top
            ]
            wanted += [first_row for _, first_row, _, _ in examples]
        del rows, group, repeat, sizes
    fetched = fetch_rows(batches, wanted) if wanted else pd.DataFrame()
    for check in across.values():
        if check.kind in (UNIQUE, COMPOUND):  # their results list the repeated values
            ok = verdicts[check.config.id][0]
            verdicts[check.config.id] = (ok, check.listed(fetched.loc[check.wanted]), None)

    # GX reports the checks whose metrics could not be computed first, then the others, each
    # grouped by column (a check that raised in its own validation keeps its place).
    order = by_column(order)
    aborted = [c for c in order if aborted_metrics(verdicts[c.id][2])]
    order = aborted + [c for c in order if c.id not in {a.id for a in aborted}]
    header = header_findings(names, data)
    failed = [config for config in order if not verdicts[config.id][0]]
    missing_columns = set(header.missing) | {
        config.kwargs.get("column") for config in failed if config.type == "expect_column_to_exist"
    }
    explained = {
        c.kwargs.get("column") for c in failed if verdicts[c.id][2] is None or not _raised(verdicts[c.id][2])
    }
    failures: list[str] = list(header.errors)
    failures += [
        f"column {c!r}: missing (rule: required column present)"
        for c in sorted(missing_columns - set(header.missing))
    ]
    warnings: list[str] = list(header.warnings)
    if examples:
        shown = [
            (
                ", ".join(f"{c}={_shown(fetched.loc[first_row, c], 30)}" for c in model_columns),
                size,
                rows_text((positions + 1).tolist(), size),
            )
            for _, first_row, size, positions in examples
        ]
        failures.append(duplicate_message(duplicate_count, total, model_columns, shown, data))
    formula_failures = [
        formula_message(column, values.rows, values.text(), data)
        for column, values in ((c, formulas[c]) for c in data.columns if c in formulas)
        if values.rows
    ]
    (failures if data.formula_values == "fail" else warnings).extend(formula_failures)
    failures += rule_failures(failed, verdicts, evidence, missing_columns, explained, header, data, total)

    results = []
    for config in order:
        ok, result, raised = verdicts[config.id]
        if batch_id is not None:
            config.kwargs["batch_id"] = batch_id  # as the whole table's result names its batch
        info = (
            raised.exception_info
            if raised is not None
            else {"raised_exception": False, "exception_traceback": None, "exception_message": None}
        )
        results.append(
            gx.core.ExpectationValidationResult(
                success=ok, expectation_config=config, result=result, exception_info=info
            )
        )
    successful = sum(1 for r in results if r.success)
    statistics = {
        "evaluated_expectations": len(results),
        "successful_expectations": successful,
        "unsuccessful_expectations": len(results) - successful,
        "success_percent": successful / len(results) * 100 if results else None,
    }
    suite_result = gx.core.ExpectationSuiteValidationResult(
        success=successful == len(results),
        results=results,
        suite_name=suite.name,
        statistics=statistics,
        meta={**meta, "batches": count, "rows": total},
    )
    if docs_dir is not None:
        context.suites.delete(per_batch.name)  # the site shows the contract's suite only
        build_docs(context, suite_result, batch_id)
    outcome = ValidationOutcome(
        success=bool(suite_result.success) and not failures,
        failures=failures,
        statistics={
            "evaluated_expectations": statistics["evaluated_expectations"],
            "successful_expectations": successful,
            "unsuccessful_expectations": len(results) - successful,
            "undeclared_columns": len(header.extra),
            "duplicate_rows": duplicate_count,
            "batches": count,
        },
        result=json.loads(json.dumps(suite_result.to_json_dict(), default=str)),
        warnings=warnings,
    )
    for warning in warnings:
        logger.warning("%s: %s", label, warning)
    return outcome


def rule_failures(failed, verdicts, evidence, missing_columns, explained, header, data, total) -> list[str]:
    """One message per failed check, as :func:`pipeline.contract.validate_frame` words it, from
    the merged results and the evidence gathered across batches."""
    from pipeline.contract import _raised, failure_messages, observed_from_result

    checks = []
    for config in failed:
        kind, kwargs = config.type, dict(config.kwargs)
        _, result, raised_item = verdicts[config.id]
        found = evidence.get(config.id)

        def observed(kind=kind, result=result, found=found) -> str:
            return (found.observed(result, total) if found else None) or observed_from_result(kind, result)

        checks.append((kind, kwargs, _raised(raised_item) if raised_item is not None else "", observed))
    return failure_messages(checks, header, missing_columns, explained, data)


def aborted_metrics(item) -> bool:
    """Whether a check's result is one whose metrics raised (GX keys its exception info by
    metric), not one that raised in its own validation or did not raise."""
    info = getattr(item, "exception_info", None) or {}
    return bool(item is not None and info and "raised_exception" not in info)


def across_rows(config, names: list[str]) -> bool:
    """Whether a check is one no batch decides alone, computed here over every row (its columns
    all present)."""
    if config.type not in ACROSS_BATCHES:
        return False
    columns = config.kwargs.get("column_list") or [config.kwargs.get("column")]
    return all(c is None or c in names for c in columns)


def build_docs(context, suite_result, batch_id: str | None) -> None:
    """Render the Data Docs of the merged result (GX builds them from its results store)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_id = suite_result.meta.get("run_id")
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_result.suite_name),
        run_id=run_id,
        batch_identifier=batch_id or "snapshot",
    )
    context.validation_results_store.set(key, suite_result)
    suite = ExpectationSuiteIdentifier(name=suite_result.suite_name)
    context.build_data_docs(site_names=["pipeline_run"], resource_identifiers=[key, suite])
