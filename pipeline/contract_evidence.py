"""Evidence about a table gathered a batch of rows at a time, for
:mod:`pipeline.contract_batches`: the offending values of a rule with their counts and first data
rows (numbered from 1 across the whole table), and a 128-bit hash of each value or row, so that
equal values are found across batches: two 64-bit hashes under independent keys (a number's hash
is its bits, mixed one to one), which two different values would both have to share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.findings import ROWS_SHOWN, VALUES_SHOWN, _shown

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

KEYS = ("0123456789123456", "pipeline-rows-16")
MIX = (np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15))
MISSING = (np.uint64(0x5BD1E9955BD1E995), np.uint64(0xC2B2AE3D27D4EB4F))
DISTINCT_KEPT = 1_000_000  # distinct offending values counted one by one
IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
TYPE_LIST = "expect_column_values_to_be_in_type_list"


# --------------------------------------------------------------------------------------------
# Evidence gathered across batches: offending values with their rows, and row hashes
# --------------------------------------------------------------------------------------------


def rows_text(first: list[int], count: int) -> str:
    """``data rows [4, 9, 12, ...]`` (as :func:`pipeline.findings.data_rows`) from the first rows
    (1-based) of ``count``."""
    listed = ", ".join(str(r) for r in first[:ROWS_SHOWN])
    more = ", ..." if count > ROWS_SHOWN else ""
    return f"data row{'s' if count > 1 else ''} [{listed}{more}]"


class Rows:
    """The count and first rows of a condition, across batches."""

    def __init__(self) -> None:
        self.count, self.first = 0, []

    def add(self, mask: np.ndarray, offset: int) -> None:
        hits = np.flatnonzero(mask)
        self.count += len(hits)
        if len(self.first) <= ROWS_SHOWN:
            self.first += (hits[: ROWS_SHOWN + 1] + offset + 1).tolist()

    def text(self) -> str:
        return rows_text(self.first, self.count)


class Values:
    """The distinct values where a condition holds, with their counts and first rows, across
    batches: :func:`pipeline.findings.distinct_values` of the whole column (values told apart by
    the text a message shows, as there). Up to :data:`DISTINCT_KEPT` distinct values are counted;
    the message says when there were more."""

    def __init__(self) -> None:
        self.rows = 0
        self.entries: dict[str, list] = {}  # shown value -> [count, first rows]
        self.overflow = False

    def add(self, series: pd.Series, mask: np.ndarray, offset: int) -> None:
        import pandas as pd

        hits = np.flatnonzero(mask)
        if not len(hits):
            return
        self.rows += len(hits)
        shown = np.array([_shown(v) for v in series.to_numpy(dtype=object)[hits]], dtype=object)
        codes, uniques = pd.factorize(shown)
        del shown
        order = np.argsort(codes, kind="stable")  # each value's rows, in row order
        counts = np.bincount(codes, minlength=len(uniques))
        starts = np.cumsum(counts) - counts
        for code, key in enumerate(uniques):
            entry = self.entries.get(key)
            if entry is None:
                if len(self.entries) >= DISTINCT_KEPT:
                    self.overflow = True
                    continue
                entry = self.entries[key] = [0, []]
            entry[0] += int(counts[code])
            if len(entry[1]) <= ROWS_SHOWN:
                start = starts[code]
                first = hits[order[start : start + min(int(counts[code]), ROWS_SHOWN + 1)]]
                entry[1] += (first + offset + 1).tolist()

    def text(self, shown: int = VALUES_SHOWN) -> str:
        ranked = sorted(self.entries.items(), key=lambda item: (-item[1][0], item[1][1][0]))
        parts = [
            f"{key} ({count} row{'s' if count > 1 else ''}: {rows_text(first, count)})"
            for key, (count, first) in ranked[:shown]
        ]
        if self.overflow:
            parts.append(f"and more than {len(self.entries) - shown} more distinct value(s)")
        elif len(self.entries) > shown:
            parts.append(f"and {len(self.entries) - shown} more distinct value(s)")
        return ", ".join(parts)


def value_hashes(series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two 64-bit hashes of each value and whether it is missing; equal values (every missing
    value alike, -0.0 as 0.0) hash alike in every batch."""
    import pandas as pd
    from pandas.util import hash_array

    missing = series.isna().to_numpy()
    dtype = series.dtype
    if pd.api.types.is_float_dtype(dtype):  # float64 and float32, Float64 and Float32
        values = series.to_numpy(dtype=np.float64, na_value=0.0) + 0.0
        values[missing] = 0.0
        hashes = [hash_array(values), hash_array(values.view(np.uint64) ^ MIX[1])]
    elif pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):  # Int64, boolean too
        values = series.to_numpy(dtype=getattr(dtype, "numpy_dtype", dtype), na_value=0)
        hashes = [hash_array(values), hash_array(values.astype(np.uint64) ^ MIX[1])]
    else:
        values = series.to_numpy(dtype=object, na_value="")
        hashes = [hash_array(values, hash_key=key, categorize=False) for key in KEYS]
    for hashed, constant in zip(hashes, MISSING, strict=True):
        hashed[missing] = constant
    return hashes[0], hashes[1], missing


class RowHashes:
    """A 128-bit hash of each row over some columns, for the whole table (16 bytes a row), and
    the rows to leave out (missing where the check ignores missing values: one more byte).
    Grouping them at the end sorts them: about 50 bytes a row more, for that moment."""

    def __init__(self, columns: list[str], skip: str | None = None):
        self.columns, self.skip = columns, skip  # skip: None, "any" or "all" missing
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, frame: pd.DataFrame) -> None:
        n = len(frame)
        first, second = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
        every, anyone = np.ones(n, bool), np.zeros(n, bool)
        for name in self.columns:
            a, b, missing = value_hashes(frame[name])
            first *= MIX[0]
            first ^= a
            second *= MIX[1]
            second ^= b
            every &= missing
            anyone |= missing
        left_out = {"any": anyone, "all": every}.get(self.skip, np.zeros(n, bool))
        self.parts.append((first, second, left_out))

    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Over the rows kept: their positions in row order, each one's group (a run of equal
        hashes), whether it repeats an earlier row of its group, and each group's size."""
        first = np.concatenate([p[0] for p in self.parts]) if self.parts else np.zeros(0, np.uint64)
        second = np.concatenate([p[1] for p in self.parts]) if self.parts else np.zeros(0, np.uint64)
        kept = ~np.concatenate([p[2] for p in self.parts]) if self.parts else np.zeros(0, bool)
        self.parts = []
        rows = np.flatnonzero(kept)
        first, second = first[rows], second[rows]
        order = np.lexsort((second, first))  # stable: equal rows stay in row order
        a, b = first[order], second[order]
        starts = np.ones(len(order), bool)
        starts[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        del a, b, first, second
        group_sorted = np.cumsum(starts) - 1
        sizes = np.bincount(group_sorted) if len(order) else np.zeros(0, np.int64)
        group = np.empty(len(order), np.int64)
        group[order] = group_sorted
        repeat = np.empty(len(order), bool)
        repeat[order] = ~starts
        return rows, group, repeat, sizes


# --------------------------------------------------------------------------------------------
# The evidence a failed per-row check's message shows
# --------------------------------------------------------------------------------------------


class Evidence:
    """What :func:`pipeline.contract._describe_observed` reads off the whole column, gathered a
    batch at a time: the offending values and rows."""

    def __init__(self, kind: str, kwargs: dict[str, Any]):
        self.kind, self.kwargs = kind, kwargs
        self.values, self.rows = Values(), Rows()
        self.bad_rows: list[int] = []
        self.bad_values: list[str] = []

    def add(self, series: pd.Series, offset: int) -> None:
        import pandas as pd

        if self.kind == IN_SET:
            mask = (series.notna() & ~series.isin(list(self.kwargs.get("value_set") or []))).to_numpy()
            self.values.add(series, mask, offset)
        elif self.kind == BETWEEN:
            numeric = pd.to_numeric(series, errors="coerce")
            values = numeric.to_numpy(dtype=float)
            lower, upper = self.kwargs.get("min_value"), self.kwargs.get("max_value")
            with np.errstate(invalid="ignore"):
                mask = ~np.isnan(values) & (
                    ~np.isfinite(values)
                    | ((values < lower) if lower is not None else False)
                    | ((values > upper) if upper is not None else False)
                )
            self.values.add(numeric, mask, offset)
        elif self.kind == NOT_NULL:
            self.rows.add(series.isna().to_numpy(), offset)
        elif self.kind == TYPE_LIST:
            bad = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
            room = 5 - len(self.bad_rows)
            self.bad_rows += [int(i) + offset + 1 for i in bad.index[:room]] if room > 0 else []
            for value in bad.astype(str).unique()[:5]:
                if len(self.bad_values) < 5 and value not in self.bad_values:
                    self.bad_values.append(value)

    def observed(self, result: dict[str, Any], total: int) -> str | None:
        """The message's observed part, or None where the result alone says it."""
        percent = result.get("unexpected_percent")
        share = f" ({percent:.1f}%)" if percent is not None else ""
        if self.kind == IN_SET and self.values.rows:
            outside = f"{self.values.rows} of {total} rows hold values outside the allowed list"
            return f"{outside}: {self.values.text()}"
        if self.kind == BETWEEN and self.values.rows:
            return f"{self.values.rows} of {total} rows violate it{share}: {self.values.text()}"
        count = result.get("unexpected_count")
        if self.kind == NOT_NULL and count:
            return f"{count} of {result.get('element_count')} rows violate it{share}, in {self.rows.text()}"
        if self.kind == TYPE_LIST:
            text = f"observed type {result.get('observed_value')!s}"
            if self.bad_rows:
                text += f"; non-numeric values {self.bad_values} in data rows {self.bad_rows}"
            return text
        return None
