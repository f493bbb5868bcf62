"""Great Expectations results over a table's batches, for :mod:`pipeline.contract_batches`: a
per-row check's batch results summed into the result GX gives for the whole table (``mostly``
applied to the sums), and the checks no batch decides alone computed over every row from row
hashes (the row count, a unique column, rows unique together, the number of classes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.contract_evidence import RowHashes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import DataSettings

ROW_COUNT = "expect_table_row_count_to_be_between"
UNIQUE = "expect_column_values_to_be_unique"
CLASS_COUNT = "expect_column_unique_value_count_to_be_between"
COMPOUND = "expect_compound_columns_to_be_unique"
ACROSS_BATCHES = frozenset({ROW_COUNT, UNIQUE, CLASS_COUNT, COMPOUND})
PARTIAL = 20  # GX's SUMMARY result format: the first 20 unexpected values


# --------------------------------------------------------------------------------------------
# Merging the per-batch GX results
# --------------------------------------------------------------------------------------------


class Merged:
    """One expectation's results over the batches so far."""

    def __init__(self, config) -> None:
        self.config, self.success, self.raised, self.result = config, True, None, None
        self.element = self.missing = self.unexpected = 0
        self.has_missing = self.has_unexpected = False
        self.partial: list[Any] = []
        self.indexes: list[int] | None = None

    def add(self, item, offset: int) -> None:
        self.success = self.success and bool(item.success)
        if item.exception_info and self.raised is None and _raised_of(item):
            self.raised = item
        result = dict(item.result or {})
        if self.result is None or (not item.success and self.result.get("_ok", True)):
            self.result = {**result, "_ok": bool(item.success)}
        if "unexpected_count" in result and result["unexpected_count"] is not None:
            self.has_unexpected = True
            self.element += int(result.get("element_count") or 0)
            self.unexpected += int(result["unexpected_count"])
            if "missing_count" in result and result["missing_count"] is not None:
                self.has_missing = True
                self.missing += int(result["missing_count"])
            room = PARTIAL - len(self.partial)
            if room > 0:
                self.partial += list(result.get("partial_unexpected_list") or [])[:room]
            if "partial_unexpected_index_list" in result:
                self.indexes = self.indexes or []
                room = PARTIAL - len(self.indexes)
                listed = result.get("partial_unexpected_index_list") or []
                self.indexes += [offset + int(i) for i in listed[: max(room, 0)]]

    def final(self) -> tuple[bool, dict[str, Any]]:
        from great_expectations.expectations.expectation import _format_map_output, _mostly_success

        if self.raised is not None:
            return False, dict(self.raised.result or {})
        if not self.has_unexpected:
            result = dict(self.result or {})
            result.pop("_ok", None)
            return self.success, result
        considered = self.element - self.missing
        mostly = _mostly(self.config.kwargs)
        success = considered == 0 or _mostly_success(considered, self.unexpected, mostly)
        return success, map_result(
            _format_map_output,
            success,
            self.element,
            considered if self.has_missing else None,
            self.unexpected,
            self.partial,
            self.indexes,
        )


def map_result(fmt, success, element, nonnull, unexpected, partial, indexes) -> dict[str, Any]:
    """A map expectation's result as GX's SUMMARY format gives it."""
    out = fmt(
        result_format={
            "result_format": "SUMMARY",
            "partial_unexpected_count": PARTIAL,
            "include_unexpected_rows": False,
        },
        success=success,
        element_count=element,
        nonnull_count=nonnull,
        unexpected_count=unexpected,
        unexpected_list=partial,
        unexpected_index_list=indexes,
    )
    return out["result"]


def _raised_of(item) -> str:
    from pipeline.contract import _raised

    return _raised(item)


# --------------------------------------------------------------------------------------------
# The checks across batches
# --------------------------------------------------------------------------------------------


class Across:
    """A check no batch decides alone, fed every batch; its result is GX's for the whole table."""

    def __init__(self, config, data: DataSettings):
        self.config, self.kind, self.kwargs = config, config.type, dict(config.kwargs)
        self.total = 0
        columns = self.kwargs.get("column_list") or [self.kwargs.get("column")]
        # GX's default for a compound check: a row whose values are all missing is not checked
        compound = self.kwargs.get("ignore_row_if", "all_values_are_missing")
        skip = {UNIQUE: "any", CLASS_COUNT: "any", COMPOUND: compound}.get(self.kind)
        skip = {"all_values_are_missing": "all", "any_value_is_missing": "any"}.get(skip, skip)
        self.hashes = RowHashes([c for c in columns if c], skip) if self.kind != ROW_COUNT else None
        self.wanted: list[int] = []  # rows whose values the result lists (fetched in a second pass)

    def add(self, frame: pd.DataFrame) -> None:
        self.total += len(frame)
        if self.hashes is not None and all(c in frame.columns for c in self.hashes.columns):
            self.hashes.add(frame)

    def final(self) -> tuple[bool, dict[str, Any]]:
        from great_expectations.expectations.expectation import _mostly_success

        if self.kind == ROW_COUNT:
            low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
            ok = (low is None or self.total >= low) and (high is None or self.total <= high)
            return ok, {"observed_value": self.total}
        rows, group, _, sizes = self.hashes.groups()
        if self.kind == CLASS_COUNT:
            distinct = len(sizes)
            low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
            return (low is None or distinct >= low) and (high is None or distinct <= high), {
                "observed_value": distinct
            }
        unexpected = rows[sizes[group] > 1] if len(rows) else rows
        self.wanted = unexpected[:PARTIAL].tolist()
        considered = len(rows)
        mostly = _mostly(self.kwargs)
        ok = considered == 0 or _mostly_success(considered, len(unexpected), mostly)
        self.success, self.counts = ok, (self.total, considered, len(unexpected))
        return ok, {}

    def listed(self, rows: pd.DataFrame) -> dict[str, Any]:
        """The result, given the rows :attr:`wanted` lists (in row order)."""
        from great_expectations.expectations.expectation import _format_map_output

        total, considered, unexpected = self.counts
        columns = self.hashes.columns
        if not len(rows):
            partial = []
        elif self.kind == UNIQUE:
            partial = list(rows[columns[0]])  # as GX lists them (a nullable column's NumPy scalars)
        else:
            partial = [dict(zip(columns, v, strict=True)) for v in rows[columns].itertuples(index=False)]
        wanted = self.wanted
        return map_result(_format_map_output, self.success, total, considered, unexpected, partial, wanted)


def _mostly(kwargs: dict[str, Any]) -> float:
    """An expectation's ``mostly`` (GX's default: 1; 0 is a value, not a default)."""
    value = kwargs.get("mostly")
    return 1.0 if value is None else float(value)


def by_column(configs: list[Any]) -> list[Any]:
    """The order GX reports a suite's results in: grouped by column, each group where its first
    expectation is (the table's own checks, which name no column, one group)."""
    groups: dict[str | None, list[Any]] = {}
    for config in configs:
        column = config.kwargs.get("column")
        groups.setdefault(column if isinstance(column, str) else None, []).append(config)
    return [config for group in groups.values() for config in group]
