"""What the data contract reports beyond its Great Expectations suite, in the words a user needs.

GX says that a column is missing, or that some values broke a rule; these findings say why and
where: a header cell that looks like a contract column (and which invisible character differs),
the columns outside the contract, the distinct offending values with their data rows, text values
that start like a spreadsheet formula, and the duplicated rows that collapse the data.
:mod:`pipeline.contract` runs them beside the suite; :mod:`pipeline.tabular` runs the header
findings before it parses any row.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import DataSettings

# --------------------------------------------------------------------------------------------
# Header findings: missing columns and what looks like them, columns outside the contract
# --------------------------------------------------------------------------------------------

EXTRA_NAMES_SHOWN = 10
ROWS_SHOWN = 5
VALUES_SHOWN = 10
CHAR_NAMES = {
    "\u200b": "zero-width space",
    "\u200c": "zero-width non-joiner",
    "\u200d": "zero-width joiner",
    "\u2060": "word joiner",
    "\ufeff": "byte-order mark (zero-width no-break space)",
    "\u00a0": "non-breaking space",
    "\u202f": "narrow non-breaking space",
    "\u2007": "figure space",
    "\u00ad": "soft hyphen",
    " ": "space",
    "\t": "tab",
}


def visible(text: str, limit: int = 80) -> str:
    from pipeline.tabular import visible as shown

    return shown(text, limit)


def _char(ch: str) -> str:
    name = CHAR_NAMES.get(ch) or unicodedata.name(ch, "").lower() or "character"
    return f"{name} (U+{ord(ch):04X})"


def _normal(name: str) -> str:
    """What a name reads as: compatibility forms folded (NBSP is a space, fullwidth letters are
    letters), invisible format characters dropped, case folded, and spaces and the separators
    ``_ - .`` left out (``bill length mm`` reads as ``bill_length_mm``)."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc"))
    return re.sub(r"[\s_.\-]+", "", text).casefold()


def differences(cell: str, name: str) -> list[str]:
    """How header ``cell`` differs from contract column ``name``, character by character, with
    1-based positions in the cell: "a zero-width space (U+200B) at position 8"."""
    found: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, cell, name, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op == "insert":
            found.append(f"no {visible(name[j1:j2])} before position {i1 + 1}")
            continue
        if op == "delete":
            for k in range(i1, i2):
                where = "leading " if k == 0 else "trailing " if k == len(cell) - 1 else ""
                found.append(f"a {where}{_char(cell[k])} at position {k + 1}")
            continue
        old, new = cell[i1:i2], name[j1:j2]
        if old.casefold() == new.casefold():
            found.append(f"{visible(old)} where the contract has {visible(new)} (case) at position {i1 + 1}")
        else:
            chars = ", ".join(f"a {_char(ch)}" for ch in old)
            found.append(f"{chars} where the contract has {visible(new)} at position {i1 + 1}")
    return found


def lookalikes(names: list[str], data: DataSettings) -> dict[str, tuple[int, str, list[str]]]:
    """Contract columns absent from ``names`` that a header cell reads as: column -> (1-based
    cell position, the cell, how it differs). Nothing is renamed: the user fixes the header."""
    missing = [c for c in data.columns if c not in names]
    by_normal: dict[str, list[str]] = {}
    for column in missing:
        by_normal.setdefault(_normal(column), []).append(column)
    found: dict[str, tuple[int, str, list[str]]] = {}
    for position, cell in enumerate(names, start=1):
        if cell in data.columns:
            continue
        for column in by_normal.get(_normal(cell), []):
            found.setdefault(column, (position, cell, differences(cell, column)))
    return found


@dataclass
class HeaderFindings:
    errors: list[str]
    warnings: list[str]
    missing: list[str]
    extra: list[str]


def _names_list(names: list[str], shown: int = EXTRA_NAMES_SHOWN) -> str:
    listed = ", ".join(visible(n, 60) for n in names[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"[{listed}]{more}"


def header_findings(names: list[str], data: DataSettings) -> HeaderFindings:
    """What the contract says of a header alone: each required column missing (with the header
    cell that looks like it and the character that differs), and the columns outside the contract
    (a warning; an error under ``data.strict``)."""
    errors: list[str] = []
    warnings: list[str] = []
    similar = lookalikes(names, data)
    missing = [
        c for c, spec in data.columns.items() if c not in names and (spec.required or c == data.target)
    ]
    for column in missing:
        text = f"column {column!r}: missing (rule: required column present)"
        if column in similar:
            position, cell, how = similar[column]
            text += (
                f"; header cell {position} {visible(cell)} looks like contract column {column!r}: it has "
                f"{'; '.join(how)} (fix the header or the contract: columns are never renamed silently)"
            )
        errors.append(text)
    for column, (position, cell, how) in similar.items():
        if column not in missing:  # an optional column: it would be silently absent
            warnings.append(
                f"optional column {column!r} is absent, but header cell {position} {visible(cell)} "
                f"looks like it: it has {'; '.join(how)}"
            )
    matched = {cell for _, cell, _ in similar.values()}
    extra = [str(n) for n in names if n not in data.columns and n not in matched]
    if extra and data.columns:
        if refuses_extra_columns(data):
            errors.append(
                f"table: {len(extra)} column(s) outside the contract: {_names_list(extra)} (rule: "
                "data.strict=true: only the columns declared in data.columns; declare them with role "
                "'ignore', or set data.strict=false to drop them with a warning)"
            )
        else:
            warnings.append(
                f"table: {len(extra)} column(s) outside the contract are ignored: {_names_list(extra)} "
                "(rule: data.strict=false: undeclared columns are dropped before training; declare "
                "them, or set data.strict=true to refuse them)"
            )
    return HeaderFindings(errors=errors, warnings=warnings, missing=missing, extra=extra)


def refuses_extra_columns(data: DataSettings) -> bool:
    """``data.strict``, or its older spelling ``data.allow_extra_columns: false``."""
    return bool(getattr(data, "strict", False)) or not data.allow_extra_columns


# --------------------------------------------------------------------------------------------
# Row findings the suite does not give precisely: offending values with their rows, formula-like
# text, duplicate rows
# --------------------------------------------------------------------------------------------


def data_rows(mask: Any, shown: int = ROWS_SHOWN) -> str:
    """``data rows [4, 9, 12, ...]``: 1-based data rows (the header is not counted; the same
    numbering as the type checks), the first ``shown`` of them."""
    import numpy as np

    rows = (np.flatnonzero(np.asarray(mask)) + 1).tolist()
    listed = ", ".join(str(r) for r in rows[:shown])
    more = ", ..." if len(rows) > shown else ""
    return f"data row{'s' if len(rows) > 1 else ''} [{listed}{more}]"


def _shown(value: Any, limit: int = 60) -> str:
    """A value as a message shows it: text quoted with invisible characters escaped, numbers bare."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # a NumPy scalar prints as np.float64(...) otherwise
    return visible(value, limit) if isinstance(value, str) else repr(value)


def distinct_values(series: Any, mask: Any, shown: int = VALUES_SHOWN) -> str:
    """The distinct values of ``series`` where ``mask`` holds, most frequent first, each with its
    count and first rows: ``'Atlantis' (2 rows: data rows [4, 9]), 'Mars' (1 row: data row [12])``."""
    import numpy as np
    import pandas as pd

    mask = np.asarray(mask, dtype=bool)
    every = np.full(len(series), None, dtype=object)  # only the offending values are rendered
    every[mask] = [_shown(v) for v in series.to_numpy(dtype=object)[mask]]
    counts = pd.Series(every[mask]).value_counts(sort=True)
    parts = []
    for key, count in counts.head(shown).items():
        rows = data_rows(mask & (every == key))
        parts.append(f"{key} ({count} row{'s' if count > 1 else ''}: {rows})")
    if len(counts) > shown:
        parts.append(f"and {len(counts) - shown} more distinct value(s)")
    return ", ".join(parts)


FORMULA = re.compile(r"^[=+\-@]\s*\S")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def formula_like(value: Any) -> bool:
    """A text value that a spreadsheet would run as a formula: ``=``, ``+``, ``-`` or ``@``
    followed by text (``-3.5`` and ``+1`` are numbers, not formulas)."""
    return isinstance(value, str) and bool(FORMULA.match(value)) and not _is_number(value.strip())


FORMULA_STARTS = ("=", "+", "-", "@")


def formula_masks(frame: pd.DataFrame, data: DataSettings) -> dict[str, Any]:
    """The rows of each text column of the contract holding formula-like values (columns with
    none are left out)."""
    if data.formula_values == "ignore":
        return {}
    import numpy as np
    import pandas as pd

    found = {}
    for column, spec in data.columns.items():
        if spec.type not in ("category", "str") or column not in frame.columns:
            continue
        series = frame[column]
        # Each distinct value is tested once (a category column has few), then mapped to its rows:
        # no Python object per row.
        codes, uniques = pd.factorize(series)  # missing values: -1
        flags = np.fromiter(
            (
                isinstance(v, str) and v[:1] in FORMULA_STARTS and formula_like(v)
                for v in np.asarray(uniques, dtype=object)
            ),
            dtype=bool,
            count=len(uniques),
        )
        mask = np.zeros(len(series), dtype=bool)
        if flags.any():
            present = codes >= 0
            mask[present] = flags[codes[present]]
        del codes
        if mask.any():
            found[column] = mask
    return found


def formula_message(column: str, count: int, values: str, data: DataSettings) -> str:
    return (
        f"column {column!r}: {count} value(s) start like a spreadsheet formula: "
        f"{values} (rule: data.formula_values={data.formula_values}: "
        "text values starting with =, +, - or @ are reported, as a spreadsheet opening the "
        "data would run them; set data.formula_values to warn, fail or ignore)"
    )


def formula_findings(frame: pd.DataFrame, data: DataSettings) -> list[str]:
    """One message per text column of the contract holding formula-like values."""
    return [
        formula_message(column, int(mask.sum()), distinct_values(frame[column], mask), data)
        for column, mask in formula_masks(frame, data).items()
    ]


def duplicated_rows(frame: pd.DataFrame):
    """``frame.duplicated(keep="first")`` as a NumPy array, at a fraction of its memory.

    pandas factorizes every column and keeps all their codes (eight bytes per row and column)
    and a hash table per column, which is most of what validating a large table costs. Here each
    row gets one 64-bit hash, combined one column at a time (a float column with -0.0 as 0.0 and
    every NaN alike, any other column through its factorized codes, so missing values are one
    value as pandas has them); only rows whose hash repeats can be duplicates, and pandas decides
    exactly among those. Equal rows always hash alike, so nothing is missed; a hash collision
    only adds a candidate, which the exact check rejects."""
    import numpy as np
    import pandas as pd
    from pandas.util import hash_array

    combined = np.zeros(len(frame), dtype=np.uint64)
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind == "f":
            values = column.to_numpy(dtype=np.float64) + 0.0  # -0.0 + 0.0 is 0.0
            values[np.isnan(values)] = np.nan  # one NaN
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
            values = column.to_numpy()
        else:
            values, _ = pd.factorize(column)  # missing values: -1
        hashed = hash_array(values)
        del values
        combined *= np.uint64(0x100000001B3)
        combined ^= hashed
        del hashed
    candidates = np.flatnonzero(pd.Series(combined, copy=False).duplicated(keep=False).to_numpy())
    del combined
    repeated = np.zeros(len(frame), dtype=bool)
    if len(candidates):
        repeated[candidates] = frame.iloc[candidates].duplicated(keep="first").to_numpy()
    return repeated


def duplicate_findings(frame: pd.DataFrame, data: DataSettings) -> tuple[list[str], int]:
    """A failure when more than ``data.max_duplicate_fraction`` of the rows repeat an earlier row
    over the model's columns (what preprocessing de-duplicates on), naming the repeated rows."""
    import pandas as pd

    columns = [c for c in [*data.feature_columns(), data.target] if c in frame.columns]
    if not columns or frame.empty:
        return [], 0
    subset = frame[columns]
    repeated = duplicated_rows(subset)
    count = int(repeated.sum())
    if count == 0 or count / len(frame) <= data.max_duplicate_fraction:
        return [], count
    # Each row as one text key (-0.0 as 0.0, as duplicated() has it; pandas keeps a missing value
    # missing under astype(str): a marker).
    text = pd.DataFrame(
        {c: (subset[c] + 0.0 if pd.api.types.is_float_dtype(subset[c].dtype) else subset[c]) for c in columns}
    )
    text = text.astype(str).fillna("\x00")
    groups = text[subset.duplicated(keep=False)].agg("\x1f".join, axis=1)
    every = text.agg("\x1f".join, axis=1).to_numpy()
    del text
    examples = []
    for key, times in groups.value_counts().head(3).items():
        mask = every == key
        first = int(mask.argmax())
        shown = ", ".join(f"{c}={_shown(subset[c].iloc[first], 30)}" for c in columns)  # its own type
        examples.append((shown, times, data_rows(mask)))
    return [duplicate_message(count, len(frame), columns, examples, data)], count


def duplicate_message(
    count: int, rows: int, columns: list[str], examples: list[tuple[str, int, str]], data: DataSettings
) -> str:
    """The duplicate-rows failure; ``examples``: (the row shown, its repeats, its data rows)."""
    listed = "; ".join(
        f"the row {{{shown}}} appears {times} times ({where})" for shown, times, where in examples
    )
    return (
        f"table: {count} of {rows} data rows ({count / rows:.1%}) repeat an earlier row over the columns "
        f"{columns}: {listed} (rule: at most data.max_duplicate_fraction="
        f"{data.max_duplicate_fraction} of the rows are duplicates; preprocessing drops them, leaving "
        f"{rows - count} distinct rows)"
    )
