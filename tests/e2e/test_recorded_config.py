"""`reproduce` and `report` act on what a model or an experiment recorded, whatever the default
config is: a wine classifier and a wine regression (alcohol content) are trained by configuration,
then reproduced and reported with no --config at all, as the README says."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, CliResult, run_cli

pytestmark = pytest.mark.slow

WINE = str(REPO / "pipeline" / "configs" / "wine.yaml")
QUICK = ["--set", "train.max_epochs=40", "--set", "evaluate.permutation_repeats=1"]
# Wine's alcohol content predicted from the other measurements (the cultivar becomes a feature).
REGRESSION = [
    "--set",
    "data.name=wine_alcohol",
    "--set",
    "data.target=alcohol",
    "--set",
    "data.task=regression",
    "--set",
    "data.columns.alcohol.role=target",
    "--set",
    "data.columns.cultivar.role=feature",
    "--set",
    "gate.min_score=null",
]


@dataclass
class Trained:
    home: Path
    wine: CliResult
    regression: CliResult


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    home = tmp_path_factory.mktemp("recorded") / "home"
    wine = run_cli(["run", "--config", WINE, *QUICK], home)
    assert wine.returncode == 0, wine.stderr[-4000:]
    assert wine.json["promoted"] is True, wine.json["reason"]
    regression = run_cli(["run", "--config", WINE, *REGRESSION, *QUICK], home)
    assert regression.returncode == 0, regression.stderr[-4000:]
    assert regression.json["model_name"] == "wine_alcohol"
    return Trained(home, wine, regression)


def test_reproduce_of_another_dataset_needs_no_config(trained: Trained) -> None:
    result = run_cli(["reproduce", "wine@champion"], trained.home)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model"] == "wine" and report["matches"] is True, report
    assert report["reproduced"]["test_macro_f1"] == report["original"]["test_macro_f1"]


def report_of(trained: Trained, experiment: str, tmp_path: Path) -> tuple[str, list[str]]:
    output = tmp_path / "report.html"
    result = run_cli(["report", "-e", experiment, "--output", str(output)], trained.home, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    text = output.read_text(encoding="utf-8")
    board = text[text.index('id="leaderboard"') : text.index("</table>", text.index('id="leaderboard"'))]
    return text, re.findall(r'data-column="([^"]+)"', board)


def meta(text: str) -> str:
    return html.unescape(re.search(r'<p class="meta">(.*?)</p>', text).group(1))


def test_report_of_an_experiment_shows_its_own_model_and_versions(trained: Trained, tmp_path: Path) -> None:
    text, columns = report_of(trained, "wine", tmp_path)
    assert meta(text).startswith("Model wine · classification · primary metric macro_f1"), meta(text)
    assert "Model versions of wine:" in text
    versions = text[text.index('id="versions-table"') :]
    assert re.search(r'<td data-value="1">1</td>', versions), "wine's version 1 is listed"
    assert "test_macro_f1" in columns


def test_report_of_a_regression_shows_its_metrics_and_no_classification_column(
    trained: Trained, tmp_path: Path
) -> None:
    text, columns = report_of(trained, "wine_alcohol", tmp_path)
    assert meta(text).startswith("Model wine_alcohol · regression · primary metric rmse (lower is better)")
    assert {"val_rmse", "test_rmse", "test_mae", "test_r2"} <= set(columns), columns
    assert not [c for c in columns if "macro_f1" in c or "accuracy" in c], columns
    assert "macro_f1" not in text
    assert "Model versions of wine_alcohol:" in text
    cells = re.search(r'<td data-value="([^"]*)"', text[text.index('id="versions-table"') :])
    assert cells and cells.group(1) == "1"
