"""Drift verdicts on synthetic frames: the tests scipy.stats runs under Evidently's selection rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.monitor.drift import (
    CHI_SQUARE,
    JENSEN_SHANNON,
    KS,
    WASSERSTEIN,
    column_drift,
    column_kind,
    dataset_drift,
)
from pipeline.monitor.live import live_metric
from pipeline.settings import MonitorSettings

RULES = MonitorSettings()  # the shipped thresholds
COLUMNS = {"length": "float", "mass": "float", "island": "category", "year": "int"}


def frame(n: int, seed: int, *, shift: float = 0.0, islands=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "length": rng.normal(45 + shift, 5, n),
            "mass": rng.normal(4200, 800, n),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n, p=list(islands)),
            "year": rng.choice([2007, 2008, 2009], n),
        }
    )


@pytest.mark.parametrize("n_reference", [300, 3000])
def test_a_shifted_numeric_and_a_changed_category_mix_drift_and_nothing_else(n_reference: int) -> None:
    reference = frame(n_reference, 1)
    current = frame(400, 2, shift=6.0, islands=(0.1, 0.2, 0.7))
    result = dataset_drift(reference, current, COLUMNS, RULES, drift_share=0.3)
    assert result.judged
    assert set(result.drifted) == {"length", "island"}
    assert result.share == pytest.approx(0.5)
    assert result.drift_detected
    tests = {c.column: c.test for c in result.columns}
    if n_reference <= RULES.large_reference:
        assert tests == {"length": KS, "mass": KS, "island": CHI_SQUARE, "year": CHI_SQUARE}
    else:
        assert tests == {
            "length": WASSERSTEIN,
            "mass": WASSERSTEIN,
            "island": JENSEN_SHANNON,
            "year": JENSEN_SHANNON,
        }


@pytest.mark.parametrize("n_reference", [300, 3000])
def test_a_sample_of_the_same_distribution_does_not_drift(n_reference: int) -> None:
    result = dataset_drift(frame(n_reference, 1), frame(400, 2), COLUMNS, RULES, drift_share=0.3)
    assert result.judged
    assert result.drifted == {}
    assert result.share == 0
    assert not result.drift_detected


def test_a_window_too_small_is_not_judged() -> None:
    result = dataset_drift(frame(300, 1), frame(10, 2, shift=20), COLUMNS, RULES, drift_share=0.3)
    assert not result.judged
    assert not result.drift_detected
    assert "10 row(s), fewer than monitor.min_samples=30" in result.reason


def test_a_column_mostly_missing_in_the_window_is_not_judged_but_the_rest_are() -> None:
    current = frame(100, 2, shift=8)
    current.loc[current.index[10:], "length"] = np.nan
    result = dataset_drift(frame(300, 1), current, COLUMNS, RULES, drift_share=0.3)
    by_name = {c.column: c for c in result.columns}
    assert not by_name["length"].judged and "fewer than monitor.min_samples" in by_name["length"].reason
    assert result.judged and {"mass", "island", "year"} <= {c.column for c in result.columns if c.judged}


def test_a_category_new_in_the_window_drifts() -> None:
    reference = pd.Series(["a", "b"] * 100)
    current = pd.Series(["a", "b", "c"] * 40)
    verdict = column_drift("kind", reference, current, "category", RULES)
    assert verdict.drifted and verdict.test == CHI_SQUARE and verdict.score < 0.05


def test_kinds_follow_the_contract_and_evidently_few_values_rule() -> None:
    assert column_kind(pd.Series([1.0, 2.5, 3.1, 4.2, 5.5, 6.0, 7.7]), "float", RULES) == "numeric"
    assert column_kind(pd.Series([2007, 2008, 2009] * 5), "int", RULES) == "categorical"
    assert column_kind(pd.Series(["x", "y"]), "category", RULES) == "categorical"
    assert column_kind(pd.Series(["x", "y"]), None, RULES) == "categorical"


def _labelled(n: int, right: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.choice(["A", "B"], n)
    correct = rng.random(n) < right
    predicted = np.where(correct, truth, np.where(truth == "A", "B", "A"))
    proba_a = np.where(predicted == "A", 0.9, 0.1)
    return pd.DataFrame(
        {"prediction": predicted, "probability_A": proba_a, "probability_B": 1 - proba_a, "label": truth}
    )


def test_live_metric_degraded_when_worse_than_the_test_metric_by_more_than_the_threshold() -> None:
    bad = live_metric(_labelled(200, 0.6), "label", "classification", "accuracy", 0.95, 30, 0.05)
    assert bad["judged"] and bad["degraded"] and bad["live"] == pytest.approx(0.6, abs=0.08)
    good = live_metric(_labelled(200, 0.97), "label", "classification", "accuracy", 0.95, 30, 0.05)
    assert good["judged"] and not good["degraded"]
    few = live_metric(_labelled(10, 0.1), "label", "classification", "accuracy", 0.95, 30, 0.05)
    assert not few["judged"] and not few["degraded"] and "fewer than monitor.min_labelled=30" in few["reason"]


def test_live_metric_of_an_error_metric_is_worse_when_higher() -> None:
    frame_ = pd.DataFrame({"prediction": np.arange(50.0), "label": np.arange(50.0) + 3})
    result = live_metric(frame_, "label", "regression", "rmse", 1.0, 30, 0.5)
    assert result["live"] == pytest.approx(3.0) and result["degraded"]
