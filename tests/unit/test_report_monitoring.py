"""The report's monitoring section from what ``pipeline monitor`` records: pure functions over MLflow
run entities (the classes the client returns) and the summaries the checks logged, and the HTML they
render to. The section drawn in headless Chromium from real checks is in tests/analysis/test_report.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag

from pipeline import names as n
from pipeline.report import ReportData, render_html
from pipeline.report.monitoring import (
    PREDICTION_SERIES,
    MonitoringData,
    checks_frame,
    drift_frame,
    served_segments,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def check_run(
    run_id: str, minutes: int, version: str, metrics: dict[str, float], drifted: dict | None = None
):
    stamp = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    tags = {
        n.MONITOR_MODEL_TAG: "penguins",
        n.MONITOR_VERSION_TAG: version,
        n.MONITOR_JUDGED_TAG: "true",
        n.MONITOR_DRIFT_TAG: str(bool(drifted)).lower(),
        n.MONITOR_DEGRADED_TAG: "false",
        n.MONITOR_RETRAIN_TAG: str(bool(drifted)).lower(),
        n.MONITOR_DRIFTED_COLUMNS_TAG: json.dumps(drifted or {}),
    }
    return Run(
        RunInfo(
            run_id,
            "7",
            "me",
            "FINISHED",
            stamp,
            stamp + 1000,
            "active",
            run_name=f"monitor-penguins-v{version}",
        ),
        RunData(
            metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        ),
    )


def column(name: str, test: str, score: float, threshold: float, drifted: bool) -> dict:
    return {"column": name, "test": test, "score": score, "threshold": threshold, "drifted": drifted}


# the newest first, as the client returns them; the second check's summary could not be read
RUNS = [
    check_run(
        "c3",
        20,
        "2",
        {
            "drift.score.bill_length_mm": 0.04,
            "drift.score.island": 0.2,
            "drift.share": 0.5,
            "live.macro_f1": 0.81,
        },
        drifted={"bill_length_mm": 0.04, "island": 0.2},
    ),
    check_run("c2", 10, "1", {"drift.score.bill_length_mm": 0.5, "live.macro_f1": 0.9}),
    check_run(
        "c1",
        0,
        "1",
        {"drift.score.bill_length_mm": 0.7, "drift.score.island": 0.01, "drift.prediction_score": 0.6},
    ),
]
SUMMARIES = {
    "c1": {
        "columns": [
            column("bill_length_mm", "ks", 0.7, 0.05, False),
            column("island", "chisquare", 0.01, 0.05, True),
        ],
        "prediction_drift": column("prediction", "chisquare", 0.6, 0.05, False),
        "live": {"metric": "macro_f1", "live": None, "test": 0.93},
        "window": {
            "source": "prediction_log",
            "since": "2026-01-01T00:00:00",
            "until": "2026-01-01T01:00:00",
        },
    },
    "c3": {
        "columns": [
            column("bill_length_mm", "wasserstein", 0.04, 0.1, False),
            column("island", "jensenshannon", 0.2, 0.1, True),
        ],
        "live": {"metric": "macro_f1", "live": 0.81, "test": 0.95},
        "window": {"source": "/data/batch.csv", "since": None, "until": None},
    },
}


def test_the_checks_oldest_first_with_the_version_they_judged_and_the_test_metric_they_held_it_against():
    checks = checks_frame(RUNS, SUMMARIES)
    assert list(checks["run_id"]) == ["c1", "c2", "c3"]
    assert list(checks["version"]) == ["1", "1", "2"]
    assert list(checks["drift_detected"]) == [False, False, True]
    assert list(checks["drifted_columns"]) == ["", "", "bill_length_mm, island"]
    assert list(checks["metric"]) == ["macro_f1"] * 3  # c2: from its live.* metric, no summary
    assert checks["live"].tolist()[1:] == [0.9, 0.81] and pd.isna(checks["live"][0])
    assert checks["test"].tolist()[0] == 0.93 and pd.isna(checks["test"][1]) and checks["test"][2] == 0.95
    assert list(checks["window"]) == ["2026-01-01T00:00:00 to 2026-01-01T01:00:00", "", "/data/batch.csv"]


def test_each_score_with_its_test_family_and_threshold_and_the_models_output_as_its_own_series():
    drift = drift_frame(RUNS, SUMMARIES)
    rows = {(r.run_id, r.column): r for r in drift.itertuples()}
    assert set(rows) == {
        ("c1", "bill_length_mm"),
        ("c1", "island"),
        ("c1", PREDICTION_SERIES),
        ("c2", "bill_length_mm"),
        ("c3", "bill_length_mm"),
        ("c3", "island"),
    }
    assert rows["c1", "island"].family == "p-value" and rows["c1", "island"].drifted is True
    assert rows["c1", PREDICTION_SERIES].threshold == 0.05
    assert rows["c2", "bill_length_mm"].family == "score"  # no summary: test unknown, no threshold
    assert rows["c2", "bill_length_mm"].drifted is None and pd.isna(rows["c2", "bill_length_mm"].threshold)
    assert rows["c3", "island"].family == "distance" and rows["c3", "island"].threshold == 0.1
    assert list(drift["time"]) == sorted(drift["time"])


def test_served_stretches_follow_each_switch():
    at = [T0 + timedelta(seconds=s) for s in (0, 1, 2, 5, 6, 9)]
    requests = pd.DataFrame({"logged_at": at[::-1], "model_version": ["1", "1", "1", "2", "2", "1"][::-1]})
    segments = served_segments(requests)
    assert segments.to_dict("records") == [
        {"version": "1", "start": at[0], "end": at[2], "requests": 3},
        {"version": "2", "start": at[3], "end": at[4], "requests": 2},
        {"version": "1", "start": at[5], "end": at[5], "requests": 1},
    ]
    assert served_segments(requests.iloc[:0]).empty


def report(monitoring: MonitoringData) -> ReportData:
    return ReportData(
        experiments=["penguins"],
        primary_metric="macro_f1",
        model_name="penguins",
        runs=pd.DataFrame(),
        params=[],
        monitoring=monitoring,
    )


def test_without_checks_the_section_is_one_line_and_no_chart():
    page = render_html(report(MonitoringData()))
    assert 'id="monitoring-none"' in page
    assert "No monitoring runs yet for penguins (experiment penguins-monitoring)" in page
    assert 'data-chart="monitor-' not in page


@pytest.mark.parametrize("served", [True, False])
def test_the_section_renders_each_family_in_its_panel_and_says_why_nothing_was_served(served):
    monitoring = MonitoringData(
        experiments=["penguins-monitoring"],
        checks=checks_frame(RUNS, SUMMARIES),
        drift=drift_frame(RUNS, SUMMARIES),
        metric="macro_f1",
    )
    if served:
        monitoring.served = served_segments(
            pd.DataFrame({"logged_at": [T0, T0 + timedelta(hours=1)], "model_version": ["1", "2"]})
        )
    else:
        monitoring.served_note = "the prediction log is empty: nothing was served with `pipeline serve` yet"
    page = render_html(report(monitoring))
    for chart in ("monitor-drift", "monitor-live", "monitor-served"):
        assert f'data-chart="{chart}"' in page
    assert 'id="monitoring-none"' not in page
    assert "threshold (p-value)" in page and "threshold (distance)" in page
    assert "test not recorded" in page  # c2's scores in a panel of their own
    assert ("served (prediction log)" in page) is served
    assert ("nothing was served with `pipeline serve` yet" in page) is not served
    assert '<table id="monitoring-table" class="sortable">' in page
