"""``pipeline report``: a self-contained HTML dashboard that opens in headless Chromium.

The file is opened from disk (``file://``, no server, no network) in Debian's ``chromium`` through
``chromedriver``; the browser's console must stay free of errors, every chart must have drawn its
marks, the leaderboard must sort on a header click, and a legend click must add a learning curve. The
home also holds two real ``pipeline monitor`` checks (the ``monitored`` fixture): the monitoring
section must draw each column's drift score, the live metric against the test metric and the
served version.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.analysis.conftest import N_TRIALS, REPLAY_EXPERIMENT
from tests.conftest import run_cli
from tests.support import unavailable

pytestmark = pytest.mark.browser

CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver; Selenium Manager cannot download offline
CHARTS = (
    "parallel",
    "metric-vs-params",
    "learning-curves",
    "confusions",
    "versions",
    "monitor-drift",
    "monitor-live",
    "monitor-served",
)
FEATURES = ["bill_depth_mm", "bill_length_mm", "body_mass_g", "flipper_length_mm", "island", "sex"]


@pytest.fixture(scope="module")
def report(swept, monitored, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("report") / "experiment-report.html"
    result = run_cli(
        ["report", "--output", str(output), "--experiment", "penguins", "--experiment", REPLAY_EXPERIMENT],
        swept.home,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == str(output.resolve())
    return output


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium", "pip install -e '.[dev]'")
    binary = next((p for p in (shutil.which(c) for c in CHROMIUM) if p), None)
    if binary is None or not Path(CHROMEDRIVER).exists():
        unavailable("headless Chromium and its driver", "apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # the parallel-coordinates chart draws with WebGL: a GPU-less machine uses SwiftShader
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def open_report(browser, path: Path) -> list[dict]:
    """Load the file, wait until every chart has drawn, return the console messages."""
    browser.get(path.resolve().as_uri())
    deadline = time.monotonic() + 60
    while True:
        drawn = browser.execute_script(
            "return Array.from(document.querySelectorAll('section.chart .js-plotly-plot'))"
            ".filter(function (g) { return g._fullLayout && g.querySelector('.main-svg'); }).length"
        )
        if drawn == len(CHARTS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(0.5)  # let WebGL finish
    return browser.get_log("browser")


def test_the_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert len(text) > 3_000_000  # plotly.js is embedded
    assert not re.search(r"<script[^>]+src=", text), "no script may come from elsewhere"
    assert not re.search(r"<link[^>]+href=\"?https?:", text), "no stylesheet may come from elsewhere"
    assert text.count("Plotly.newPlot(") == len(CHARTS)
    assert '<table id="leaderboard" class="sortable">' in text


def test_the_report_opens_in_headless_chromium_without_console_errors(report, browser):
    messages = open_report(browser, report)
    errors = [m for m in messages if m["level"] == "SEVERE"]
    assert errors == []
    assert browser.title == f"Experiment report: penguins, {REPLAY_EXPERIMENT}"


def test_every_chart_rendered(report, browser):
    open_report(browser, report)
    charts = browser.execute_script(
        """
        return Array.from(document.querySelectorAll('section.chart')).map(function (section) {
          var plot = section.querySelector('.js-plotly-plot');
          var svgs = section.querySelectorAll('.main-svg');
          return {
            id: section.dataset.chart,
            traces: plot && plot.data ? plot.data.length : 0,
            svgs: svgs.length,
            svgChildren: Array.from(svgs).map(function (s) { return s.childElementCount; }),
            axes: section.querySelectorAll('.parcoords .y-axis').length,
            scatter: section.querySelectorAll('.scatterlayer .trace').length,
            points: section.querySelectorAll('.scatterlayer .point, .scatterlayer .js-line').length,
            heatmaps: section.querySelectorAll('.heatmaplayer .hm').length,
            canvases: section.querySelectorAll('canvas').length,
            empty: section.querySelectorAll('.annotation').length,
          };
        });
        """
    )
    by_id = {chart["id"]: chart for chart in charts}
    assert list(by_id) == list(CHARTS)
    for chart in charts:
        assert chart["traces"] > 0, chart
        assert chart["svgs"] > 0 and min(chart["svgChildren"]) > 0, chart
    # parameters (4 searched) + val loss + val macro_f1 axes, drawn with WebGL lines
    assert by_id["parallel"]["axes"] == 6
    assert by_id["parallel"]["canvases"] > 0
    # one marker per training run and parameter: 10 trials, the retrained best, the replay
    assert by_id["metric-vs-params"]["points"] >= 4 * (N_TRIALS + 2)
    assert by_id["learning-curves"]["scatter"] == 5  # the five best drawn, more one click away
    assert by_id["confusions"]["heatmaps"] == 4
    assert by_id["versions"]["points"] >= 2  # v1 promoted, v2 rejected


def leaderboard_column(browser, column: str) -> list[str]:
    return browser.execute_script(
        """
        var wanted = arguments[0];
        var table = document.getElementById('leaderboard');
        var index = Array.from(table.tHead.rows[0].cells).findIndex(function (h) {
          return h.dataset.column === wanted;
        });
        return Array.from(table.tBodies[0].rows).map(function (row) {
          var cell = row.cells[index];
          var value = cell.getAttribute('data-value');
          return value === null ? cell.textContent.trim() : value;
        });
        """,
        column,
    )


def click_header(browser, column: str) -> str:
    from selenium.webdriver.common.by import By

    header = browser.find_element(By.CSS_SELECTOR, f'#leaderboard th[data-column="{column}"]')
    header.click()
    return header.get_attribute("aria-sort")


def test_the_leaderboard_sorts_on_a_header_click(report, browser):
    open_report(browser, report)
    rows = leaderboard_column(browser, "run")
    assert len(rows) == N_TRIALS + 2  # trials, the retrained best, the replay run
    # numbers sort as numbers, empty cells last in both directions
    assert click_header(browser, "test_macro_f1") == "ascending"
    values = leaderboard_column(browser, "test_macro_f1")
    numbers = [float(v) for v in values if v != ""]
    assert len(numbers) == 2 and numbers == sorted(numbers)
    assert values[: len(numbers)] == [v for v in values if v != ""]
    assert click_header(browser, "best_val_loss") == "ascending"
    ascending = [float(v) for v in leaderboard_column(browser, "best_val_loss")]
    assert ascending == sorted(ascending)
    assert click_header(browser, "best_val_loss") == "descending"
    descending = [float(v) for v in leaderboard_column(browser, "best_val_loss")]
    assert descending == sorted(ascending, reverse=True)
    assert descending != ascending
    # text columns sort alphabetically
    assert click_header(browser, "run") == "ascending"
    names = leaderboard_column(browser, "run")
    assert names == sorted(names, key=str.lower)
    assert sorted(names) == sorted(rows)


def test_a_legend_click_overlays_another_learning_curve(report, browser):
    from selenium.webdriver.common.by import By

    open_report(browser, report)
    section = browser.find_element(By.CSS_SELECTOR, 'section[data-chart="learning-curves"]')
    drawn = len(section.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace"))
    hidden = section.find_elements(By.CSS_SELECTOR, ".legend .traces")[drawn]  # the sixth run
    hidden.find_element(By.CSS_SELECTOR, ".legendtoggle").click()
    time.sleep(0.5)
    assert len(section.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace")) == drawn + 1


def test_the_report_is_an_artifact_of_the_sweeps_parent_run(swept, tmp_path):
    client = swept.client()
    parent = swept.summary["parent_run_id"]
    artifacts = [a.path for a in client.list_artifacts(parent, "report")]
    assert artifacts == ["report/experiment_report.html"]
    local = Path(client.download_artifacts(parent, artifacts[0], str(tmp_path)))
    text = local.read_text(encoding="utf-8")
    assert '<table id="leaderboard" class="sortable">' in text
    assert "Plotly.newPlot(" in text
    assert swept.summary["study"] in text  # the sweep it reports on is in it


def chart_data(browser, chart: str) -> list[dict]:
    """The traces Plotly drew in ``chart`` (its full data: arrays decoded): name, x and y as text."""
    return browser.execute_script(
        """
        var plot = document.querySelector('section[data-chart="' + arguments[0] + '"] .js-plotly-plot');
        return plot._fullData.map(function (t) {
          return {name: t.name, type: t.type, x: Array.from(t.x || []).map(String),
                  y: Array.from(t.y || []).map(function (v) { return v === null ? null : String(v); }),
                  axis: t.yaxis || 'y'};
        });
        """,
        chart,
    )


def test_the_monitoring_section_shows_the_checks_drift_live_metric_and_served_version(
    report, monitored, browser
):
    from selenium.webdriver.common.by import By

    open_report(browser, report)
    assert browser.find_elements(By.ID, "monitoring-none") == []
    undrifted, drifted = monitored.checks  # the first judged the live metric on its late labels
    assert drifted["drifted_columns"].keys() == {"bill_length_mm", "island"}

    # drift: one series per feature column and the model's output, a threshold line, two checks each
    drift = chart_data(browser, "monitor-drift")
    series = {t["name"]: t for t in drift if not t["name"].startswith("threshold")}
    assert sorted(series) == sorted([*FEATURES, "(prediction)"])
    assert all(len(t["x"]) == 2 for t in series.values())
    thresholds = [t for t in drift if t["name"].startswith("threshold")]
    assert [t["name"] for t in thresholds] == ["threshold (p-value)"]  # 150-row windows: KS, chi-square
    assert {float(v) for v in thresholds[0]["y"]} == {0.05}
    scores = {c["column"]: c["score"] for c in drifted["columns"]}
    assert float(series["bill_length_mm"]["y"][1]) == pytest.approx(max(scores["bill_length_mm"], 1e-12))
    assert float(series["sex"]["y"][0]) == pytest.approx(
        next(c["score"] for c in undrifted["columns"] if c["column"] == "sex")
    )

    # live metric against test metric: only the labelled hour judged it
    live = {t["name"]: t for t in chart_data(browser, "monitor-live")}
    assert set(live) == {"live macro_f1", "test macro_f1 (champion's run)"}
    assert [float(v) for v in live["live macro_f1"]["y"]] == pytest.approx([undrifted["live"]["live"]])
    tests = {float(v) for v in live["test macro_f1 (champion's run)"]["y"] if v is not None}
    assert tests == {undrifted["live"]["test"]}  # one champion: one test metric, on every check

    # served versions: v1 answered every logged request; every check judged v1
    served = {t["name"]: t for t in chart_data(browser, "monitor-served")}
    assert set(served) == {"served (prediction log)", "monitor check (champion judged)"}
    assert served["served (prediction log)"]["y"] == ["v1"]
    assert served["monitor check (champion judged)"]["y"] == ["v1", "v1"]
    section = browser.find_element(By.CSS_SELECTOR, 'section[data-chart="monitor-served"]')
    bars = section.find_elements(By.CSS_SELECTOR, ".barlayer .point path")
    assert len(bars) == 1 and bars[0].size["width"] >= 2 and bars[0].size["height"] >= 2  # drawn, visible

    # the table: newest check first
    table = browser.find_element(By.ID, "monitoring-table")
    header = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = [
        dict(zip(header, [c.text for c in row.find_elements(By.TAG_NAME, "td")], strict=True))
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert [r["champion judged"] for r in rows] == ["1", "1"]
    assert [r["drift"] for r in rows] == ["true", "false"]
    assert rows[0]["drifted columns"] == "bill_length_mm, island"
    assert rows[0]["live"] == "" and rows[1]["live"] != "" and rows[1]["test (recorded)"] != ""
    assert [r["labelled rows"] for r in rows] == ["0", "150"]
    assert [r["monitoring run"] for r in rows] == ["monitor-penguins-v1"] * 2
