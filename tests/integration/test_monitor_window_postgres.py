"""The monitor's window on a PostgreSQL feature store (the cluster's prediction log): the rows of one
model in [since, until), the newest monitor.max_rows, late labels joined by request id and row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.monitor.data import LABEL, window_from_log
from pipeline.serve.predlog import Entry, PredictionLogger, create_engine, write_feedback
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_window_reads_the_rows_of_its_model_and_time_with_their_labels(postgres, home) -> None:
    url = postgres.create_database("monitor_window")
    engine = create_engine(url)
    logger = PredictionLogger(engine, flush_s=0.05)
    for i in range(6):  # one request of two rows every 10 minutes, from T0
        rows = [
            {"bill_length_mm": 40.0 + i, "island": "Dream"},
            {"bill_length_mm": 50.0 + i, "island": "Biscoe"},
        ]
        outputs = [{"prediction": "Adelie"}, {"prediction": "Gentoo"}]
        assert logger.submit(Entry(f"r{i}", T0 + timedelta(minutes=10 * i), "penguins", "1", rows, outputs))
    assert logger.submit(Entry("other", T0, "wine", "4", [{"alcohol": 12.0}], [{"prediction": "A"}]))
    assert logger.close()["unwritten_rows"] == 0
    write_feedback(engine, [{"request_id": "r1", "row": 1, "label": '"Chinstrap"'}])

    settings = Settings.load(feature_store_url=url, monitor={"max_rows": 3})
    window = window_from_log(settings, T0 + timedelta(minutes=5), T0 + timedelta(minutes=45), "penguins")
    frame = window.frame
    # r1..r4 are in the window (8 rows); the newest 3: r4's two rows and r3's second row.
    assert len(frame) == 3 and set(frame["bill_length_mm"]) <= {43.0, 53.0, 44.0, 54.0}
    assert window.describe() == {
        "source": "prediction_log",
        "since": (T0 + timedelta(minutes=5)).isoformat(),
        "until": (T0 + timedelta(minutes=45)).isoformat(),
        "rows": 3,
    }
    wide = Settings.load(feature_store_url=url)
    labelled = window_from_log(wide, T0, T0 + timedelta(hours=1), "penguins").frame
    assert len(labelled) == 12 and "alcohol" not in labelled.columns
    assert labelled[LABEL].notna().sum() == 1
    assert labelled.loc[labelled[LABEL].notna()].iloc[0].to_dict() == {
        "bill_length_mm": 51.0,
        "island": "Biscoe",
        "prediction": "Gentoo",
        LABEL: "Chinstrap",
    }
    engine.dispose()
