"""Permutation importance on a large test split scores a seeded sample of at most
``evaluate.importance_max_rows`` rows; a split that fits is scored whole, exactly as before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.settings import EvaluateSettings
from pipeline.steps.evaluate import permutation_importance


class ThresholdModel:
    """Predicts class 1 when column ``a`` is positive; ``b`` is ignored. Records what it scores."""

    def __init__(self):
        self.sizes: list[int] = []

    def raw_outputs(self, frame: pd.DataFrame) -> np.ndarray:
        self.sizes.append(len(frame))
        p = (frame["a"].to_numpy() > 0).astype(float)
        return np.column_stack([1 - p, p]) * 0.98 + 0.01


def data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    return frame, (frame["a"].to_numpy() > 0).astype(int)


def test_a_large_split_is_scored_on_a_seeded_sample_of_the_cap():
    frame, y = data(5_000)
    model = ThresholdModel()
    first, rows = permutation_importance(model, frame, y, "classification", 2, "accuracy", 2, 7, max_rows=500)
    assert rows == 500
    assert set(model.sizes) == {500}  # the reference and every shuffled scoring
    assert len(model.sizes) == 1 + 2 * 2
    again, _ = permutation_importance(
        ThresholdModel(), frame, y, "classification", 2, "accuracy", 2, 7, max_rows=500
    )
    assert again == first  # same seed, same sample, same importances
    assert first["a"] > 0.3  # shuffling the column the model uses costs accuracy
    assert first["b"] == 0.0  # shuffling the ignored one costs nothing


def test_a_split_within_the_cap_is_scored_whole_and_unchanged():
    frame, y = data(300)
    capped_model, whole_model = ThresholdModel(), ThresholdModel()
    capped, capped_rows = permutation_importance(
        capped_model, frame, y, "classification", 2, "accuracy", 3, 1, max_rows=10_000
    )
    whole, _ = permutation_importance(whole_model, frame, y, "classification", 2, "accuracy", 3, 1)
    assert capped == whole
    assert capped_rows == 300
    assert set(capped_model.sizes) == {300}


def test_the_cap_has_a_floor():
    assert EvaluateSettings().importance_max_rows == 10_000
    with pytest.raises(ValueError, match="importance_max_rows"):
        EvaluateSettings(importance_max_rows=10)


def test_a_rare_class_missed_by_the_draw_is_added_so_every_metric_can_be_computed():
    from pipeline.steps.evaluate import importance_sample

    y = np.zeros(200_000, dtype=int)
    y[[17, 90_000, 199_999]] = 1  # 3 positives: a 500-row draw almost surely misses them all
    for seed in range(5):
        keep = importance_sample(y, "classification", 500, np.random.default_rng(seed))
        assert set(y[keep]) == {0, 1}
        assert len(keep) in (500, 501) and len(set(keep)) == len(keep)
        assert (np.diff(keep) > 0).all()
    regression = importance_sample(y.astype(float), "regression", 500, np.random.default_rng(0))
    assert len(regression) == 500


def test_roc_auc_importance_on_a_rare_positive_class_does_not_fail():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=50_000), "b": rng.normal(size=50_000)})
    y = np.zeros(50_000, dtype=int)
    y[[5, 25_000]] = 1
    frame.loc[[5, 25_000], "a"] = 5.0
    importance, rows = permutation_importance(
        ThresholdModel(), frame, y, "classification", 2, "roc_auc", 1, 3, max_rows=1_000
    )
    assert set(importance) == {"a", "b"}
    assert rows in (1_000, 1_001)  # the draw, plus one positive if it missed both
