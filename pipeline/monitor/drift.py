"""Per-column drift between a reference and a current sample, with scipy.stats' tests.

The test for each column follows Evidently's default selection (``evidently.legacy.calculations.
stattests.registry``), so the verdicts read the same as a team's Evidently reports:

=========================  ===========================  ====================================
column                      reference <= large_reference  larger reference
=========================  ===========================  ====================================
numeric                     two-sample Kolmogorov-Smirnov  Wasserstein distance / reference std
                            (drift: p < p_value)           (drift: >= distance_threshold)
categorical, or numeric     chi-square on the category     Jensen-Shannon distance of the
with few distinct values    counts (drift: p < p_value)    category shares (>= distance_threshold)
=========================  ===========================  ====================================

A column with fewer than ``min_samples`` non-missing values on either side is not judged
(``judged: false`` and the reason): a verdict on a handful of rows would be a guess.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.settings import MonitorSettings

KS = "ks"
WASSERSTEIN = "wasserstein"
CHI_SQUARE = "chisquare"
JENSEN_SHANNON = "jensenshannon"


# The thresholds of the tests: the ``monitor.*`` settings themselves (p_value,
# distance_threshold, large_reference, max_numeric_categories, min_samples), declared once in
# :class:`pipeline.settings.MonitorSettings`.
DriftRules = MonitorSettings


@dataclass
class ColumnDrift:
    column: str
    kind: str  # "numeric" | "categorical"
    test: str | None
    score: float | None  # a p-value (ks, chisquare) or a distance (wasserstein, jensenshannon)
    threshold: float | None
    drifted: bool
    judged: bool
    reference_rows: int
    current_rows: int
    reason: str | None = None
    reference_summary: dict[str, Any] | None = None
    current_summary: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _numeric(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce").astype(float)
    return values[np.isfinite(values)]


def _summary(values: pd.Series, kind: str) -> dict[str, Any]:
    if values.empty:
        return {}
    if kind == "numeric":
        return {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=0)),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    shares = values.value_counts(normalize=True).head(10)
    return {"top": {str(k): round(float(v), 4) for k, v in shares.items()}}


def column_kind(reference: pd.Series, declared: str | None, rules: DriftRules) -> str:
    """``numeric`` or ``categorical``: the contract's type, with Evidently's rule that a numeric
    column with few distinct values is tested as categorical."""
    if declared in ("category", "str", "bool"):
        return "categorical"
    if declared is None and not pd.api.types.is_numeric_dtype(reference):
        return "categorical"
    if reference.dropna().nunique() <= rules.max_numeric_categories:
        return "categorical"
    return "numeric"


def column_drift(
    name: str, reference: pd.Series, current: pd.Series, declared: str | None, rules: DriftRules
) -> ColumnDrift:
    """The drift verdict of one column."""
    kind = column_kind(reference, declared, rules)
    if kind == "numeric":
        ref, cur = _numeric(reference), _numeric(current)
    else:
        ref, cur = reference.dropna().astype(str), current.dropna().astype(str)
    base = {
        "column": name,
        "kind": kind,
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "reference_summary": _summary(ref, kind),
        "current_summary": _summary(cur, kind),
    }
    if len(ref) < rules.min_samples or len(cur) < rules.min_samples:
        side = "reference" if len(ref) < rules.min_samples else "current window"
        return ColumnDrift(
            **base,
            test=None,
            score=None,
            threshold=None,
            drifted=False,
            judged=False,
            reason=f"the {side} has {min(len(ref), len(cur))} non-missing value(s), fewer than "
            f"monitor.min_samples={rules.min_samples}",
        )
    large = len(ref) > rules.large_reference
    if kind == "numeric":
        test, score, threshold, drifted = _numeric_test(ref.to_numpy(), cur.to_numpy(), large, rules)
    else:
        test, score, threshold, drifted = _categorical_test(ref, cur, large, rules)
    return ColumnDrift(**base, test=test, score=score, threshold=threshold, drifted=drifted, judged=True)


def _numeric_test(
    ref: np.ndarray, cur: np.ndarray, large: bool, rules: DriftRules
) -> tuple[str, float, float, bool]:
    from scipy import stats

    if not large:
        p = float(stats.ks_2samp(ref, cur).pvalue)
        return KS, p, rules.p_value, p < rules.p_value
    spread = float(np.std(ref))
    distance = float(stats.wasserstein_distance(ref, cur)) / (spread if spread > 0 else 1.0)
    return WASSERSTEIN, distance, rules.distance_threshold, distance >= rules.distance_threshold


def _categorical_test(
    ref: pd.Series, cur: pd.Series, large: bool, rules: DriftRules
) -> tuple[str, float, float, bool]:
    from scipy import stats
    from scipy.spatial import distance

    categories = sorted(set(ref.unique()) | set(cur.unique()))
    ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    cur_counts = cur.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    if not large:
        if len(categories) < 2:  # one category on both sides: nothing moved
            return CHI_SQUARE, 1.0, rules.p_value, False
        # Evidently's chi-square: the current counts against the reference shares scaled to the
        # current size (a category new in the window gets a tiny expected count, hence a low p).
        expected = np.maximum(ref_counts / ref_counts.sum() * cur_counts.sum(), 1e-6)
        expected *= cur_counts.sum() / expected.sum()
        p = float(stats.chisquare(cur_counts, expected).pvalue)
        return CHI_SQUARE, p, rules.p_value, p < rules.p_value
    js = float(distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))
    js = 0.0 if math.isnan(js) else js
    return JENSEN_SHANNON, js, rules.distance_threshold, js >= rules.distance_threshold


@dataclass
class DatasetDrift:
    columns: list[ColumnDrift]
    share: float | None  # drifted / judged feature columns
    drift_detected: bool
    judged: bool
    reason: str | None = None

    @property
    def drifted(self) -> dict[str, float]:
        return {c.column: c.score for c in self.columns if c.drifted and c.score is not None}


def dataset_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, str | None],
    rules: DriftRules,
    drift_share: float,
) -> DatasetDrift:
    """Each of ``columns`` (name -> declared type) tested; the data has drifted when the share of
    drifted columns among those judged reaches ``drift_share``."""
    if len(current) < rules.min_samples:
        return DatasetDrift(
            [],
            None,
            False,
            False,
            f"the current window has {len(current)} row(s), fewer than "
            f"monitor.min_samples={rules.min_samples}",
        )
    results = []
    for name, declared in columns.items():
        if name not in current.columns:
            results.append(
                ColumnDrift(name, "unknown", None, None, None, False, False, len(reference), 0, "absent")
            )
            continue
        results.append(column_drift(name, reference[name], current[name], declared, rules))
    judged = [c for c in results if c.judged]
    if not judged:
        return DatasetDrift(results, None, False, False, "no column had enough values to be judged")
    share = sum(c.drifted for c in judged) / len(judged)
    return DatasetDrift(results, share, share >= drift_share, True)
