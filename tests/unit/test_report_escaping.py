"""``pipeline report`` shows run names and tags as text, never as markup.

Real MLflow runs (a SQLite tracking store in an isolated home) carry script payloads in their run
names and tags, and so do monitoring runs (their names, the version and drifted columns tags and
the summary they logged, as ``pipeline monitor`` records them); the real CLI writes the report;
the HTML is parsed with the standard library's parser, and, where Debian's headless Chromium is
installed, opened in it: no payload ran.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.unit.test_data_docs_escaping import headless_chromium, parse

IMG = '<img src=x onerror="window.__mlp_xss=1">'
SCRIPT = "<script>window.__mlp_xss=2</script>"
BREAKOUT = '"></td><svg onload="window.__mlp_xss=3">'


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    import mlflow
    from mlflow.tracking import MlflowClient

    home = tmp_path_factory.mktemp("report-home")
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.create_experiment("penguins", artifact_location=(home / "artifacts").as_uri())
    for index, name in enumerate((IMG, SCRIPT, BREAKOUT)):
        run = client.create_run(
            experiment, run_name=name, tags={"pipeline.run_id": name, "gate.decision": IMG}
        )
        client.log_param(run.info.run_id, "train.learning_rate", str(0.001 * (index + 1)))
        client.log_param(run.info.run_id, "train.dropout", SCRIPT if index else BREAKOUT)
        for step, loss in enumerate((1.0, 0.6, 0.4 + index / 10)):
            client.log_metric(run.info.run_id, "val_loss", loss, step=step)
        client.log_metric(run.info.run_id, "best_val_loss", 0.4 + index / 10)
        client.set_terminated(run.info.run_id)
    monitoring = client.create_experiment(
        "penguins-monitoring", artifact_location=(home / "monitoring-artifacts").as_uri()
    )
    for index, name in enumerate((IMG, SCRIPT, BREAKOUT)):
        run = client.create_run(
            monitoring,
            run_name=name,
            tags={
                "monitor.model": "penguins",
                "monitor.champion_version": SCRIPT,
                "monitor.drifted_columns": json.dumps({BREAKOUT: 0.01, IMG: 0.02}),
            },
        )
        for key, value in (("drift.score.bill_length_mm", 0.01 * (index + 1)), ("live.macro_f1", 0.9)):
            client.log_metric(run.info.run_id, key, value)
        summary = {
            "columns": [{"column": "bill_length_mm", "test": IMG, "threshold": 0.05, "drifted": True}],
            "live": {"metric": "macro_f1", "live": 0.9, "test": 0.95},
            "window": {"source": BREAKOUT, "since": None, "until": None},
        }
        client.log_dict(run.info.run_id, summary, "monitor_summary.json")
        client.set_terminated(run.info.run_id)
    mlflow.set_tracking_uri(None)
    output = home / "report.html"
    result = run_cli(["report", "--output", str(output)], home, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return output


def test_no_payload_becomes_an_element_or_attribute(report):
    page = parse(report)
    for tag, attrs in page.elements:
        assert tag not in ("svg", "img"), (tag, attrs)  # the report has none of its own
        assert not any("__mlp_xss" in (value or "") for value in attrs.values()), (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    # Plotly's figure JSON lives inside <script>: a payload there must not close the element
    # (a payload that closed it would start a script element of its own)
    assert not any(script.strip().startswith("window.__mlp_xss") for script in page.scripts)
    text = "".join(page.text)
    for payload in (IMG, SCRIPT, BREAKOUT):
        assert payload in text  # the leaderboard shows the run names as text
    assert 'id="monitoring-table"' in report.read_text(encoding="utf-8")  # the monitoring runs are shown


def test_no_payload_runs_in_headless_chromium(report):
    with headless_chromium() as driver:
        driver.get(report.resolve().as_uri())
        # the charts draw (legends and hover labels carry the run names) before we look
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not driver.execute_script(
            "return document.querySelectorAll('.js-plotly-plot .main-svg').length"
        ):
            time.sleep(0.2)
        assert driver.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
        assert driver.execute_script("return window.__mlp_xss === undefined") is True
        assert (
            driver.execute_script("return document.querySelectorAll('img[src=x], svg[onload]').length") == 0
        )
        assert IMG in driver.find_element("id", "leaderboard").text
        checks = driver.find_element("id", "monitoring-table").text
        assert SCRIPT in checks and BREAKOUT in checks  # the version judged, a drifted column, the window
