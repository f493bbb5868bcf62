"""The data contract as a Great Expectations 1.x suite, and readable messages for its failures.

GX checks per-row rules vacuously on an empty table and skips nulls. Both are guarded: the suite
always carries a row-count floor, and every column gets a not-null expectation bounded by its
allowed null fraction, so an all-null column cannot pass a range or set check by having no values.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.findings import (
    data_rows,
    distinct_values,
    duplicate_findings,
    formula_findings,
    header_findings,
    refuses_extra_columns,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import DataSettings

logger = logging.getLogger(__name__)

FLOAT_MAX = sys.float_info.max
NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "Float32",
    "Float64",
]
TEXT_TYPES = ["str", "string", "object", "large_string", "category"]
BOOL_TYPES = ["bool", "boolean"]


@dataclass
class ValidationOutcome:
    success: bool
    failures: list[str]
    statistics: dict[str, Any]
    result: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def build_expectations(data: DataSettings, present: list[str] | None = None) -> list[Any]:
    """Translate the declared contract into GX expectations. Under ``data.strict`` the table's
    columns must be the contract's columns that are ``present`` (a missing one is reported once,
    by its own check)."""
    import great_expectations.expectations as gxe

    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=data.min_rows, max_value=data.max_rows),
    ]
    if refuses_extra_columns(data):
        declared = [c for c in data.columns if present is None or c in present]
        expectations.append(gxe.ExpectTableColumnsToMatchSet(column_set=declared, exact_match=True))
    for name, spec in data.columns.items():
        if not spec.required and name != data.target:
            continue
        expectations.append(gxe.ExpectColumnToExist(column=name))
        if spec.max_null_fraction < 1:
            expectations.append(
                gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=1.0 - spec.max_null_fraction)
            )
        if spec.type in ("float", "int"):
            expectations.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=NUMERIC_TYPES))
            lower = spec.min if spec.min is not None else -FLOAT_MAX
            upper = spec.max if spec.max is not None else FLOAT_MAX
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=name, min_value=lower, max_value=upper, mostly=1.0 - spec.max_nonfinite_fraction
                )
            )
        elif spec.type == "str":
            expectations.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=TEXT_TYPES))
        elif spec.type == "bool":
            expectations.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=BOOL_TYPES))
        if spec.allowed is not None:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec.allowed)))
        if spec.unique:
            expectations.append(gxe.ExpectColumnValuesToBeUnique(column=name))
    if data.task == "classification":
        expectations.append(gxe.ExpectColumnUniqueValueCountToBeBetween(column=data.target, min_value=2))
    for columns in data.unique_together:
        expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(columns)))
    return expectations


RULES = {
    "expect_table_row_count_to_be_between": "row count within [{min_value}, {max_value}]",
    "expect_table_columns_to_match_set": "columns exactly {column_set}",
    "expect_column_to_exist": "required column present",
    "expect_column_values_to_not_be_null": "missing values (NaN/null) at most {null_allowance}",
    "expect_column_values_to_be_in_type_list": "values of a {declared} type",
    "expect_column_values_to_be_between": "finite values within [{min_value}, {max_value}]",
    "expect_column_values_to_be_in_set": "values in {value_set}",
    "expect_column_values_to_be_unique": "values unique",
    "expect_column_unique_value_count_to_be_between": "at least {min_value} distinct classes",
    "expect_compound_columns_to_be_unique": "rows unique over {column_list}",
}


def _describe_rule(kind: str, kwargs: dict[str, Any], data: DataSettings) -> str:
    template = RULES.get(kind, kind)
    values = dict(kwargs)
    mostly = kwargs.get("mostly")
    values["null_allowance"] = f"{(1 - mostly) * 100:.1f}%" if mostly is not None else "0%"
    for key in ("min_value", "max_value"):
        value = values.get(key)
        if value is None or (isinstance(value, float) and abs(value) >= FLOAT_MAX):
            values[key] = "-inf" if key == "min_value" else "+inf"
    column = kwargs.get("column")
    values["declared"] = data.columns[column].type if column in data.columns else "declared"
    try:
        text = template.format(**values)
    except (KeyError, IndexError):
        text = kind
    if kind == "expect_column_values_to_be_between" and mostly is not None and mostly < 1:
        text += f" (up to {(1 - mostly) * 100:.1f}% exceptions)"
    # Not "[kind]": square brackets around a word are console markup, and would vanish.
    return f"{text}; GX check {kind}"


def _describe_observed(
    kind: str, result: dict[str, Any], frame: pd.DataFrame, column: str | None, kwargs: dict[str, Any]
) -> str:
    present = column in frame.columns
    count = result.get("unexpected_count")
    total = result.get("element_count")
    if kind == "expect_column_values_to_be_in_set" and present:
        series = frame[column]
        mask = (series.notna() & ~series.isin(list(kwargs.get("value_set") or []))).to_numpy()
        if mask.any():
            return (
                f"{int(mask.sum())} of {len(series)} rows hold values outside the allowed list: "
                f"{distinct_values(series, mask)}"
            )
    if kind == "expect_column_values_to_be_between" and present:
        import numpy as np
        import pandas as pd

        numeric = pd.to_numeric(frame[column], errors="coerce")
        lower = kwargs.get("min_value")
        upper = kwargs.get("max_value")
        values = numeric.to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            mask = ~np.isnan(values) & (
                ~np.isfinite(values)
                | ((values < lower) if lower is not None else False)
                | ((values > upper) if upper is not None else False)
            )
        if mask.any():
            percent = result.get("unexpected_percent")
            share = f" ({percent:.1f}%)" if percent is not None else ""
            return (
                f"{int(mask.sum())} of {len(values)} rows violate it{share}: {distinct_values(numeric, mask)}"
            )
    if kind == "expect_column_values_to_not_be_null" and present and count:
        mask = frame[column].isna().to_numpy()
        percent = result.get("unexpected_percent")
        share = f" ({percent:.1f}%)" if percent is not None else ""
        return f"{count} of {total} rows violate it{share}, in {data_rows(mask)}"
    if kind == "expect_column_values_to_be_in_type_list" and present:
        import pandas as pd

        series = frame[column]
        numeric = pd.to_numeric(series, errors="coerce")
        bad = series[numeric.isna() & series.notna()]
        text = f"observed type {result.get('observed_value')!s}"
        if len(bad):
            rows = [int(i) + 1 for i in bad.index[:5]]
            text += f"; non-numeric values {list(bad.astype(str).unique()[:5])} in data rows {rows}"
        return text
    return observed_from_result(kind, result)


def observed_from_result(kind: str, result: dict[str, Any]) -> str:
    """A failed check's observed part from its GX result alone."""
    count = result.get("unexpected_count")
    total = result.get("element_count")
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    if count is not None:
        percent = result.get("unexpected_percent")
        text = f"{count} of {total} rows violate it"
        if percent is not None:
            text += f" ({percent:.1f}%)"
        examples = result.get("partial_unexpected_list") or []
        if examples and kind != "expect_column_values_to_not_be_null":
            text += f", e.g. {examples[:5]!r}"
        return text
    return "failed"


def failure_messages(checks, header, missing_columns: set, explained: set, data: DataSettings) -> list[str]:
    """One message per failed check of the suite, however it was run: ``checks`` holds
    ``(kind, kwargs, raised, observed)``, ``raised`` the message of what the check raised ('' when
    it ran) and ``observed()`` what it found."""
    out = []
    for kind, kwargs, raised, observed in checks:
        column = kwargs.get("column")
        if column in missing_columns:
            continue  # its other checks cannot run
        if kind == "expect_table_columns_to_match_set" and header.extra:
            continue  # reported above, by name
        if raised and column in explained:
            continue
        rule = _describe_rule(kind, kwargs, data)
        found = f"check could not run: {raised[:200]}" if raised else observed()
        where = f"column {column!r}" if column else "table"
        out.append(f"{where}: {found} (rule: {rule})")
    return out


def _raised(item) -> str:
    """The message of an exception a check raised (GX nests them per metric), or ''."""
    info = item.exception_info or {}
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for entry in candidates:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "error")
    return ""


def _escaping_view(base: type) -> type:
    """A GX Data Docs view that HTML-escapes every plain-text content block.

    GX 1.x renders its ``.j2`` templates without autoescaping, and a content block that is a bare
    string (a table cell such as an unexpected value and its count, a list item, an observed
    value) is written into the page as it is: a category value ``<img src=x onerror=...>`` would
    run script when the published docs are opened. GX escapes only the parameters of its string
    templates. Everything GX itself renders as markup reaches the page as a template or a string
    template (dicts), never as a bare string, so escaping the bare strings keeps its layout.
    """
    import html

    from jinja2 import pass_context

    class EscapingView(base):  # type: ignore[misc, valid-type]
        @pass_context
        def render_content_block(self, jinja_context, content_block, *args, **kwargs):  # type: ignore[override]
            if isinstance(content_block, str):
                return html.escape(content_block)
            if isinstance(content_block, list):
                content_block = [html.escape(el) if isinstance(el, str) else el for el in content_block]
            return base.render_content_block(self, jinja_context, content_block, *args, **kwargs)

    EscapingView.__name__ = EscapingView.__qualname__ = f"Escaping{base.__name__}"
    return EscapingView


def __getattr__(name: str) -> Any:
    """The escaping views, built on first use: GX (and Jinja) load only when Data Docs are built."""
    if name in ("EscapingDefaultJinjaPageView", "EscapingDefaultJinjaIndexPageView"):
        from great_expectations.render import view

        cls = _escaping_view(getattr(view, name.removeprefix("Escaping")))
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# How GX finds the views above (instantiate_class_from_config imports module_name.class_name).
_DOCS_VIEW = {
    "page": {"module_name": __name__, "class_name": "EscapingDefaultJinjaPageView"},
    "index": {"module_name": __name__, "class_name": "EscapingDefaultJinjaIndexPageView"},
}


def gx_context(docs_dir: Path | None = None):
    """An ephemeral GX context without progress bars; with ``docs_dir``, a Data Docs site
    ``pipeline_run`` there, whose pages escape what they show."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="pipeline_run",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": _DOCS_VIEW["index"]},
                "site_section_builders": {
                    section: {"view": _DOCS_VIEW["page"]}
                    for section in ("expectations", "validations", "profiling")
                },
            },
        )
    return context


def validate_frame(
    frame: pd.DataFrame, data: DataSettings, label: str, docs_dir: Path | None = None
) -> ValidationOutcome:
    """Run the contract on ``frame``; build Data Docs into ``docs_dir`` when given."""
    import great_expectations as gx

    context = gx_context(docs_dir)
    source = context.data_sources.add_pandas("pipeline")
    asset = source.add_dataframe_asset(data.name)
    batch = asset.add_batch_definition_whole_dataframe("snapshot")
    # The suite is built whole: each add_expectation re-serialises the stored suite (quadratic).
    expectations = build_expectations(data, [str(c) for c in frame.columns])
    suite = context.suites.add(gx.ExpectationSuite(name=f"{data.name}_contract", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{data.name}_raw", data=batch, suite=suite)
    )
    actions = []
    if docs_dir is not None:
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["pipeline_run"]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{data.name}_checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    validation = next(iter(result.run_results.values()))
    failed = [item for item in validation.results if not item.success]
    header = header_findings([str(c) for c in frame.columns], data)
    missing_columns = set(header.missing) | {
        item.expectation_config.kwargs.get("column")
        for item in failed
        if item.expectation_config.type == "expect_column_to_exist"
    }
    # A check that could not run (e.g. a range check on a text column) adds nothing when the same
    # column already failed a check that did run: report the cause, not its echoes.
    explained = {item.expectation_config.kwargs.get("column") for item in failed if not _raised(item)}
    # Every violation found, header first: missing columns (and what looks like them), columns a
    # strict contract refuses, duplicate rows, formula-like values (data.formula_values=fail),
    # then each failed check of the suite.
    failures: list[str] = list(header.errors)
    failures += [
        f"column {c!r}: missing (rule: required column present)"
        for c in sorted(missing_columns - set(header.missing))
    ]
    warnings: list[str] = list(header.warnings)
    duplicates, duplicate_rows = duplicate_findings(frame, data)
    failures += duplicates
    formulas = formula_findings(frame, data)
    (failures if data.formula_values == "fail" else warnings).extend(formulas)
    checks = []
    for item in failed:
        kind, kwargs = item.expectation_config.type, dict(item.expectation_config.kwargs)

        def observed(item=item, kind=kind, kwargs=kwargs) -> str:
            return _describe_observed(kind, item.result or {}, frame, kwargs.get("column"), kwargs)

        checks.append((kind, kwargs, _raised(item), observed))
    failures += failure_messages(checks, header, missing_columns, explained, data)
    stats = validation.statistics
    statistics = {
        "evaluated_expectations": int(stats.get("evaluated_expectations", 0)),
        "successful_expectations": int(stats.get("successful_expectations", 0)),
        "unsuccessful_expectations": int(stats.get("unsuccessful_expectations", 0)),
        "undeclared_columns": len(header.extra),
        "duplicate_rows": duplicate_rows,
    }
    outcome = ValidationOutcome(
        success=bool(result.success) and not failures,
        failures=failures,
        statistics=statistics,
        result=json.loads(json.dumps(validation.to_json_dict(), default=str)),
        warnings=warnings,
    )
    for warning in warnings:
        logger.warning("%s: %s", label, warning)
    # A failure is not logged here: the caller raises it and the CLI prints it once.
    return outcome
