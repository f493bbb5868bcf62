"""The monitor's window on the embedded (SQLite) prediction log, whatever zone its bounds or the
logged times are given in. SQLite keeps a datetime's wall time and drops its offset: unconverted,
`--since 14:00+02:00` was compared as 14:00 UTC, two hours off, and missed the rows it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.monitor.data import window_from_log
from pipeline.serve.predlog import Entry, PredictionLogger, create_engine
from pipeline.settings import Settings

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]


@pytest.mark.parametrize("logged_zone", ZONES, ids=str)
def test_the_window_holds_the_rows_logged_in_it_in_any_zone(home: Path, logged_zone) -> None:
    url = f"sqlite:///{home / 'features.db'}"
    logger = PredictionLogger(create_engine(url), flush_s=0.05)
    for minutes in (-30, 30, 90):  # one row before the hour, one in it, one after
        moment = (T0 + timedelta(minutes=minutes)).astimezone(logged_zone)
        x = [{"bill_length_mm": float(minutes)}]
        assert logger.submit(Entry(f"r{minutes}", moment, "penguins", "1", x, [{"prediction": "Adelie"}]))
    assert logger.close()["unwritten_rows"] == 0

    settings = Settings.load(feature_store_url=url)
    for zone in ZONES:
        since, until = T0.astimezone(zone), (T0 + timedelta(hours=1)).astimezone(zone)
        window = window_from_log(settings, since, until, "penguins")
        assert list(window.frame["bill_length_mm"]) == [30.0], zone
        assert (window.since, window.until) == (T0.isoformat(), (T0 + timedelta(hours=1)).isoformat())
    naive = window_from_log(settings, T0.replace(tzinfo=None), T0.replace(tzinfo=None, hour=13), "penguins")
    assert list(naive.frame["bill_length_mm"]) == [30.0]  # a naive bound is UTC
