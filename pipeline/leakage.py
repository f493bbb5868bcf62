"""Target leakage: a feature that gives the answer away, found on the training split before training.

A model trained with a copy of its target (or anything computed from it) scores near-perfectly
on its test set and is worthless in production, where that column is not known yet. Two rules,
each measured out of fold (k-fold on the training split: every row is scored by a model that did
not see it), so that a high-cardinality column (an id, a name) cannot look predictive by memory:

``predicts-target``
    One feature alone predicts the target (near-)perfectly: the out-of-fold *skill* of a
    one-feature model is at least ``data.leakage.max_score``. Catches an exact copy, a scaled or
    otherwise monotone copy (``target * 100``, a log), a noisy near-copy, a category that maps
    1:1 to the classes, and a fine binning of a numeric target.

``function-of-target``
    The feature is (nearly) a deterministic function of the target, also many-to-one (``1``
    for one class and ``0`` for the others, ``target > median``, ``target ** 2``): the
    out-of-fold skill of predicting the *feature from the target* is at least
    ``data.leakage.max_determination``, and the feature carries at least
    ``data.leakage.min_information`` of the target's information, so that a function of the
    target that tells nothing about it is not refused.

Skill is the baseline-adjusted score of the one-column model, 1 for a perfect prediction and 0
for no better than the baseline:

* a numeric prediction: R² of the out-of-fold predictions (0: predicting the mean);
* a class prediction: balanced accuracy adjusted for chance, (mean recall - 1/K) / (1 - 1/K)
  with K classes (0: a constant or random guess, whatever the class balance).

The one-column models are the simplest that can express a copy or a function:

* from a numeric column: the fitted rows with the same value, else the 5 nearest values (their
  majority class or mean; a single noisy row cannot be memorised, and classes may interleave
  in any way); for a numeric target also a least-squares line and the squared Spearman rank
  correlation (1 for any strictly monotone copy, however long its tails);
* from a categorical column (or the classes): the per-value majority class or mean;
* a numeric column from a numeric target: the line between the two nearest fitted target values,
  exact for any continuous function of the target and no better than its noise otherwise.

A missing value is a value of its own (a copy of the target with gaps is still found by the
second rule, on the rows where it is present). Information is Theil's uncertainty coefficient,
I(feature; target) / H(target), on the columns binned into ten quantiles (numeric) or by value.

Real strong features stay below the thresholds: measured with the defaults on the pipeline's own
split, the best single features of penguins (species 0.69, body mass 0.74), wine (0.62),
diabetes (0.35) and iris (petal width 0.98, the closest a real feature comes);
``docs/configuration.md`` keeps the table. A relation that is real and known when predicting is
downgraded per column with ``data.columns.<name>.leakage: warn`` (checked, logged and recorded
on the run) or ``skip`` (not checked).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ValidationFailedError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import DataSettings, LeakageSettings

logger = logging.getLogger(__name__)

PREDICTS = "predicts-target"
FUNCTION = "function-of-target"
RULES = {
    PREDICTS: "a single feature must not predict the target (near-)perfectly",
    FUNCTION: "a feature must not be (nearly) a deterministic function of the target",
}
R2 = "out-of-fold R²"
SPEARMAN = "squared Spearman rank correlation"
ADJUSTED_BALANCED_ACCURACY = "out-of-fold balanced accuracy adjusted for chance"
INFORMATION_BINS = 10
NEIGHBOURS = 5
NEIGHBOURS_MODEL = f"{NEIGHBOURS}-nearest-neighbours"
DENSE_TABLE_CELLS = 4_000_000
SUMMARY_COLUMNS = 20  # the columns listed in a step summary: the highest scores first


@dataclass
class ColumnCheck:
    """The evidence about one column."""

    column: str
    kind: str  # numeric | categorical
    declared: bool  # a feature of the contract (False: a column outside it, only warned about)
    rows: int
    score: float | None = None  # skill of predicting the target from the column
    score_statistic: str = ""
    score_model: str = ""
    determination: float | None = None  # skill of predicting the column from the target
    determination_statistic: str = ""
    information: float | None = None  # share of the target's entropy the column explains
    rule: str | None = None  # the rule it breaks, if any
    action: str = "fail"  # fail | warn (what a broken rule does) | skip (not checked)

    def evidence(self, settings: LeakageSettings) -> str:
        if self.rule == PREDICTS:
            model = f" (a {self.score_model} model)" if self.score_model else ""
            return (
                f"the column alone predicts the target: {self.score_statistic} {self.score:.3f}{model} "
                f">= data.leakage.max_score {settings.max_score}"
            )
        return (
            f"the target predicts the column: {self.determination_statistic} {self.determination:.3f} "
            f">= data.leakage.max_determination {settings.max_determination}, and the column explains "
            f"{self.information:.3f} of the target's information (>= data.leakage.min_information "
            f"{settings.min_information})"
        )


@dataclass
class LeakageReport:
    """What the check found, for the step summary and the training run."""

    enabled: bool
    status: str  # passed | warned | failed | disabled | skipped
    rows: int = 0
    checked: list[ColumnCheck] = field(default_factory=list)
    skipped_columns: list[str] = field(default_factory=list)  # leakage: skip
    unchecked_undeclared: int = 0
    note: str = ""

    @property
    def flagged(self) -> list[ColumnCheck]:
        return [c for c in self.checked if c.rule is not None]

    @property
    def refused(self) -> list[ColumnCheck]:
        return [c for c in self.flagged if c.declared and c.action == "fail"]

    @property
    def warned(self) -> list[ColumnCheck]:
        return [c for c in self.flagged if c not in self.refused]

    def _max(self, attribute: str) -> tuple[float | None, str | None]:
        values = [(getattr(c, attribute), c.column) for c in self.checked if c.declared]
        values = [(v, name) for v, name in values if v is not None]
        if not values:
            return None, None
        return max(values)

    def summary(self) -> dict[str, Any]:
        max_score, max_score_column = self._max("score")
        max_determination, max_determination_column = self._max("determination")
        declared = [c for c in self.checked if c.declared]
        ranked = sorted(self.checked, key=lambda c: -max(c.score or 0.0, c.determination or 0.0))
        return {
            "enabled": self.enabled,
            "status": self.status,
            "rows": self.rows,
            "checked_columns": len(declared),
            "checked_undeclared_columns": len(self.checked) - len(declared),
            "unchecked_undeclared_columns": self.unchecked_undeclared,
            "skipped_columns": self.skipped_columns,
            "max_score": _round(max_score),
            "max_score_column": max_score_column,
            "max_determination": _round(max_determination),
            "max_determination_column": max_determination_column,
            "warned_columns": [c.column for c in self.warned],
            "refused_columns": [c.column for c in self.refused],
            "columns": [_rounded(asdict(c)) for c in ranked[:SUMMARY_COLUMNS]],
            **({"note": self.note} if self.note else {}),
        }


def check_leakage(
    train: pd.DataFrame,
    data: DataSettings,
    label: str,
    seed: int,
    undeclared: list[str] | None = None,
) -> LeakageReport:
    """Check every declared feature of ``train`` (the training split, raw values) against the
    target; columns named in ``undeclared`` (outside the contract) are checked for a warning only.

    Raises :class:`~pipeline.errors.ValidationFailedError` naming each refused column, its
    evidence and how to downgrade it; logs a warning for each column downgraded to ``warn``.
    """
    settings = data.leakage
    if not settings.enabled:
        logger.info("leakage check of %s: off (data.leakage.enabled is false)", label)
        return LeakageReport(enabled=False, status="disabled")
    features = data.feature_columns()
    skipped = [c for c in features if _action(data, c) == "skip"]
    to_check = [c for c in features if c not in skipped]
    undeclared = list(undeclared or [])
    extra = undeclared[: settings.max_undeclared_columns]
    frame = train[train[data.target].notna()]
    if len(frame) > settings.max_rows:
        frame = frame.sample(n=settings.max_rows, random_state=seed)
    report = LeakageReport(
        enabled=True,
        status="passed",
        rows=len(frame),
        skipped_columns=skipped,
        unchecked_undeclared=len(undeclared) - len(extra),
    )
    target = _Target(frame[data.target], data.task, settings.folds, seed)
    if not target.usable:
        report.status = "skipped"
        report.note = target.why_not
        logger.warning("leakage check of %s skipped: %s", label, target.why_not)
        return report
    for column in [*to_check, *extra]:
        declared = column in to_check
        kind = _kind(data, column, frame[column])
        check = _check_column(frame[column], kind, target, settings)
        if kind == "categorical" and _reads_as_numbers(frame[column]):
            # a category of numbers (a code, a copy of the target as text) is also read as numbers
            as_numbers = _check_column(frame[column], "numeric", target, settings)
            as_numbers.kind = "categorical read as numbers"
            if _strength(as_numbers) > _strength(check):
                check = as_numbers
        check.column, check.declared = column, declared
        check.action = _action(data, column) if declared else "warn"
        report.checked.append(check)
    for check in report.warned:
        if check.declared:
            spec = data.columns[check.column]
            setting = f"data.columns.{check.column}.leakage" if spec.leakage else "data.leakage.action"
            logger.warning(
                "leakage check of %s: column %r breaks rule %s (%s); kept because %s is %r",
                label,
                check.column,
                check.rule,
                check.evidence(settings),
                setting,
                check.action,
            )
        else:
            logger.warning(
                "leakage check of %s: column %r, outside the data contract (the model does not use it), "
                "breaks rule %s (%s): declared as a feature, it would be refused",
                label,
                check.column,
                check.rule,
                check.evidence(settings),
            )
    refused = report.refused
    if refused:
        report.status = "failed"
        failures = [
            f"column {c.column!r}: {c.evidence(settings)} (rule: {c.rule}: {RULES[c.rule]})" for c in refused
        ]
        how = (
            "If the relation is legitimate (the column is known when predicting), set `leakage: warn` in "
            + ("its" if len(refused) == 1 else "each one's")
            + " data.columns entry ("
            + ", ".join(f"`--set data.columns.{c.column}.leakage=warn`" for c in refused)
            + "): it is then kept, with a warning recorded on the run; `data.leakage.enabled=false` "
            "turns the check off."
        )
        message = (
            f"target leakage in {label}: on the training split ({report.rows} rows), "
            f"{len(refused)} feature(s) give the target {data.target!r} away:\n  - "
            + "\n  - ".join(failures)
            + f"\n{how}"
        )
        raise ValidationFailedError(message, failures)
    if report.warned:
        report.status = "warned"
    logger.info(
        "leakage check of %s: %d feature(s) checked on %d training rows, highest score %s",
        label,
        len([c for c in report.checked if c.declared]),
        report.rows,
        report.summary()["max_score"],
    )
    return report


# ---- the statistics -----------------------------------------------------------------------------


class _Target:
    """The target of the checked rows, encoded once, and the folds every column is scored on."""

    def __init__(self, series: pd.Series, task: str, folds: int, seed: int):
        from sklearn.model_selection import KFold, StratifiedKFold

        self.task = task
        self.usable = True
        self.why_not = ""
        n = len(series)
        if task == "classification":
            keys = series.map(_category_key)
            self.classes, self.values = np.unique(keys.to_numpy(dtype=str), return_inverse=True)
            counts = np.bincount(self.values)
            distinct = len(self.classes)
            splitter = (
                StratifiedKFold(folds, shuffle=True, random_state=seed)
                if counts.min() >= folds
                else KFold(folds, shuffle=True, random_state=seed)
            )
        else:
            self.values = series.to_numpy(dtype=np.float64)
            distinct = len(np.unique(self.values))
            splitter = KFold(folds, shuffle=True, random_state=seed)
        if n < 2 * folds or distinct < 2:
            self.usable = False
            self.why_not = f"{n} training rows with {distinct} distinct target value(s): too few to assess"
            return
        self.folds = list(splitter.split(np.zeros(n), self.values if task == "classification" else None))
        self.binned = (
            self.values
            if task == "classification"
            else _bin_codes(self.values, self.values, INFORMATION_BINS)
        )
        self.entropy = _entropy(self.binned)


def _check_column(series: pd.Series, kind: str, target: _Target, settings: LeakageSettings) -> ColumnCheck:
    check = ColumnCheck(column=str(series.name), kind=kind, declared=True, rows=len(series))
    numeric = kind == "numeric"
    x = _numeric(series) if numeric else _codes(series)
    y = target.values
    # the column predicts the target
    if target.task == "classification":
        check.score_statistic = ADJUSTED_BALANCED_ACCURACY
        if numeric:
            check.score_model, predicted = NEIGHBOURS_MODEL, _oof_neighbours(x, y, True, target)
        else:
            check.score_model, predicted = "per-value majority", _oof_table(x, y, True, target)
        check.score = _adjusted_balanced_accuracy(y, predicted)
    else:
        check.score_statistic = R2
        if numeric:
            candidates = [
                (_r2(y, _oof_neighbours(x, y, False, target)), R2, NEIGHBOURS_MODEL),
                (_r2(y, _oof_line(x, y, target)), R2, "least-squares line"),
                (_spearman_squared(x, y), SPEARMAN, ""),
            ]
            check.score, check.score_statistic, check.score_model = max(
                (c for c in candidates if c[0] is not None), default=(None, R2, "")
            )
        else:
            check.score_model = "per-value mean"
            check.score = _r2(y, _oof_table(x, y, False, target))
    # the target predicts the column
    classes = target.task == "classification"
    predictor = y if classes else y.astype(np.float64)
    if numeric:
        present = ~np.isnan(x)
        if present.sum() >= 2 * len(target.folds) and len(np.unique(x[present])) > 1:
            check.determination_statistic = R2
            if classes:
                predicted = _oof_table(predictor, np.nan_to_num(x), False, target, rows=present)
            else:
                predicted = _oof_neighbours(predictor, x, False, target, rows=present, interpolate=True)
            check.determination = _r2(x[present], predicted[present])
    elif len(np.unique(x)) > 1:
        check.determination_statistic = ADJUSTED_BALANCED_ACCURACY
        if classes:
            predicted = _oof_table(predictor, x, True, target)
        else:
            predicted = _oof_neighbours(predictor, x, True, target)
        check.determination = _adjusted_balanced_accuracy(x, predicted)
    feature_bins = _bin_codes(x, x, INFORMATION_BINS) if numeric else x
    check.information = _information_share(feature_bins, target.binned, target.entropy)
    if check.score is not None and check.score >= settings.max_score:
        check.rule = PREDICTS
    elif (
        check.determination is not None
        and check.determination >= settings.max_determination
        and check.information >= settings.min_information
    ):
        check.rule = FUNCTION
    return check


def _oof_table(
    x: np.ndarray, y: np.ndarray, classify: bool, target: _Target, rows: np.ndarray | None = None
) -> np.ndarray:
    """Out-of-fold predictions of a per-value table: the majority class (``classify``) or the
    mean of ``y`` among the fitted rows with the same value of ``x`` (integer codes); a value
    the fitted rows never had gets their majority (mean)."""
    predicted = np.full(len(y), np.nan)
    keys = x.astype(np.int64)
    for fit, held in _folds(target, rows):
        predicted[held] = _lookup(keys[fit], y[fit], keys[held], classify)
    return predicted


def _oof_neighbours(
    x: np.ndarray,
    y: np.ndarray,
    classify: bool,
    target: _Target,
    rows: np.ndarray | None = None,
    interpolate: bool = False,
) -> np.ndarray:
    """Out-of-fold predictions from the fitted rows nearest by the value of ``x`` (a numeric
    column): those with the same value when there are any, else the :data:`NEIGHBOURS` nearest;
    their majority class, or their mean. It follows any function of ``x`` closely (however the
    classes interleave) but cannot memorise a single noisy row. With ``interpolate`` (a numeric
    ``y``), a value between fitted values is predicted on the line between the two that bracket
    it instead: exact for any continuous function of ``x``, however steep its tails, and no
    better than noise otherwise. A missing ``x`` is predicted from the fitted rows where it is
    missing too (from all, if it is missing in none)."""
    predicted = np.full(len(y), np.nan)
    for fit, held in _folds(target, rows):
        xf, yf = x[fit], y[fit]
        known = ~np.isnan(xf)
        order = np.argsort(xf[known], kind="stable")
        xs, ys = xf[known][order], yf[known][order]
        out = np.full(len(held), _summary(yf[~known] if (~known).any() else yf, classify))
        xh = x[held]
        query = ~np.isnan(xh)
        if len(xs) and query.any():
            values = xh[query]
            guess = np.empty(len(values))
            # rows with the same value
            distinct, group = np.unique(xs, return_inverse=True)
            slot = np.clip(np.searchsorted(distinct, values), 0, len(distinct) - 1)
            same = distinct[slot] == values
            if same.any():
                guess[same] = _lookup(group.ravel(), ys, slot[same], classify)
            # else the nearest rows, or the line between the two that bracket it
            if (~same).any() and interpolate:
                means = np.bincount(group.ravel(), weights=ys) / np.bincount(group.ravel())
                guess[~same] = np.interp(values[~same], distinct, means)
            elif (~same).any():
                guess[~same] = _nearest(xs, ys, values[~same], classify)
            out[query] = guess
        predicted[held] = out
    return predicted


def _nearest(xs: np.ndarray, ys: np.ndarray, values: np.ndarray, classify: bool) -> np.ndarray:
    """The majority (the lowest class on ties) or mean of ``ys`` over the :data:`NEIGHBOURS`
    values of sorted ``xs`` nearest to each of ``values``."""
    k = min(NEIGHBOURS, len(xs))
    window = np.searchsorted(xs, values)[:, None] + np.arange(-k, k)
    valid = (window >= 0) & (window < len(xs))
    window = np.clip(window, 0, len(xs) - 1)
    distance = np.where(valid, np.abs(xs[window] - values[:, None]), np.inf)
    nearest = np.take_along_axis(window, np.argpartition(distance, k - 1, axis=1)[:, :k], axis=1)
    labels = ys[nearest]
    if not classify:
        return labels.mean(axis=1)
    votes = (labels[:, :, None] == labels[:, None, :]).sum(axis=2)
    rank = votes * (labels.max() + 1) - labels  # most votes, then the lowest class
    return labels[np.arange(len(labels)), np.argmax(rank, axis=1)]


def _summary(y: np.ndarray, classify: bool) -> float:
    if classify:
        classes, counts = np.unique(y, return_counts=True)
        return float(classes[np.argmax(counts)])
    return float(y.mean())


def _lookup(keys: np.ndarray, y: np.ndarray, queries: np.ndarray, classify: bool) -> np.ndarray:
    """The majority (the lowest class on ties) or the mean of ``y`` per key, at ``queries``.
    Keys are small integers (bin or value codes, -1 for missing)."""
    keys, queries = keys + 1, queries + 1
    size = int(max(keys.max(), queries.max())) + 1
    counts = np.bincount(keys, minlength=size)
    if classify:
        labels = y.astype(np.int64)
        classes = int(labels.max()) + 1
        fallback = float(np.argmax(np.bincount(labels)))
        if size * classes <= DENSE_TABLE_CELLS:
            table = np.bincount(keys * classes + labels, minlength=size * classes).reshape(size, classes)
            values = np.argmax(table, axis=1).astype(np.float64)
        else:  # many keys and many classes: sort the (key, class) pairs instead of a dense table
            pairs, n = np.unique(np.stack([keys, labels]), axis=1, return_counts=True)
            order = np.lexsort((pairs[1], -n, pairs[0]))
            first = order[np.r_[True, pairs[0][order][1:] != pairs[0][order][:-1]]]
            values = np.zeros(size)
            values[pairs[0][first]] = pairs[1][first]
    else:
        fallback = float(y.mean())
        values = np.bincount(keys, weights=y, minlength=size) / np.maximum(counts, 1)
    return np.where(counts[queries] > 0, values[queries], fallback)


def _bin_codes(reference: np.ndarray, values: np.ndarray, bins: int) -> np.ndarray:
    """Codes of ``values`` among ``bins`` equal-frequency bins of ``reference`` (equal values
    share a bin, so a column with few distinct values keeps them apart); missing values: -1."""
    codes = np.full(len(values), -1, dtype=np.int64)
    present = ~np.isnan(values)
    known = reference[~np.isnan(reference)]
    if len(known):
        edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))
        codes[present] = np.searchsorted(edges, values[present], side="right")
    return codes


def _oof_line(x: np.ndarray, y: np.ndarray, target: _Target) -> np.ndarray:
    """Out-of-fold predictions of a least-squares line (the fold's mean where x is missing)."""
    predicted = np.full(len(y), np.nan)
    for fit, held in _folds(target, None):
        present = fit[~np.isnan(x[fit])]
        mean = float(y[fit].mean())
        if len(present) < 2 or np.ptp(x[present]) == 0:
            predicted[held] = mean
            continue
        slope, intercept = np.polyfit(x[present], y[present], 1)
        line = slope * x[held] + intercept
        predicted[held] = np.where(np.isnan(line), mean, line)
    return predicted


def _spearman_squared(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation, squared, on the rows where ``x`` is present: 1 for any
    strictly monotone function of the target, whatever its tails."""
    from scipy.stats import spearmanr

    present = ~np.isnan(x)
    if present.sum() < 3 or np.ptp(x[present]) == 0 or np.ptp(y[present]) == 0:
        return None
    return float(spearmanr(x[present], y[present]).statistic ** 2)


def _folds(target: _Target, rows: np.ndarray | None):
    for fit, held in target.folds:
        if rows is not None:
            fit, held = fit[rows[fit]], held[rows[held]]
        if len(fit) and len(held):
            yield fit, held


def _r2(y: np.ndarray, predicted: np.ndarray) -> float | None:
    scored = ~np.isnan(predicted)
    y, predicted = y[scored], predicted[scored]
    total = float(((y - y.mean()) ** 2).sum())
    if len(y) < 2 or total == 0:
        return None
    return 1.0 - float(((y - predicted) ** 2).sum()) / total


def _adjusted_balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float | None:
    scored = ~np.isnan(predicted)
    y, predicted = y[scored], predicted[scored]
    classes = np.unique(y)
    if len(classes) < 2:
        return None
    recall = np.mean([np.mean(predicted[y == c] == c) for c in classes])
    chance = 1.0 / len(classes)
    return float((recall - chance) / (1 - chance))


def _entropy(codes: np.ndarray) -> float:
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _information_share(feature: np.ndarray, target: np.ndarray, target_entropy: float) -> float:
    """Theil's U: I(feature; target) / H(target), on the binned columns (0 to 1)."""
    if target_entropy <= 0:
        return 0.0
    feature = np.unique(feature, return_inverse=True)[1].ravel()
    target = np.unique(target, return_inverse=True)[1].ravel()
    joint = feature.astype(np.int64) * (int(target.max()) + 1) + target
    mutual = _entropy(feature) + target_entropy - _entropy(joint)
    return float(min(max(mutual / target_entropy, 0.0), 1.0))


# ---- column values ------------------------------------------------------------------------------


def _kind(data: DataSettings, column: str, series: pd.Series) -> str:
    import pandas as pd

    spec = data.columns.get(column)
    if spec is not None:
        return "numeric" if spec.type in ("float", "int") else "categorical"
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "numeric" if numeric else "categorical"


def _reads_as_numbers(series: pd.Series) -> bool:
    """Whether (nearly) every present value of a categorical column is a number."""
    present = series.dropna()
    return len(present) > 0 and bool(np.isfinite(_numeric(present)).mean() >= 0.95)


def _strength(check: ColumnCheck) -> tuple[bool, float]:
    return check.rule is not None, max(check.score or -1.0, check.determination or -1.0)


def _action(data: DataSettings, column: str) -> str:
    spec = data.columns.get(column)
    own = spec.leakage if spec is not None else None
    return own or data.leakage.action


def _numeric(series: pd.Series) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _codes(series: pd.Series) -> np.ndarray:
    """Integer codes of a categorical column's values; missing values are one more value."""
    keys = series.map(lambda v: "\0missing" if _is_missing(v) else _category_key(v))
    _, codes = np.unique(keys.to_numpy(dtype=str), return_inverse=True)
    return codes


def _category_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def _rounded(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in item.items()}
