"""What a user reads: a failure is one block, printed once, naming where its report was saved; output
that is not a terminal carries no terminal control characters; a run with integer features is free
of MLflow's integer-schema warning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.errors import EXIT_BAD_INPUT
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

HEADER = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
# Every row the same penguin: the contract's "at least 2 distinct classes" rule fails.
ONE_CLASS = HEADER + "Adelie,Biscoe,39.1,18.7,181,3750,male,2007\n" * 120
# ANSI escapes, carriage returns (progress redraws), spinner glyphs (braille, as rich draws them)
CONTROL = re.compile(r"[\x1b\r\u2800-\u28ff]")


def assert_plain(text: str) -> None:
    found = sorted({repr(c) for c in CONTROL.findall(text)})
    assert not found, f"terminal control characters {found} in output that is not a terminal:\n{text[-3000:]}"


def saved_report(output: str) -> tuple[Path, Path]:
    """The report and Data Docs locations the failure block names."""
    report = re.findall(r"^\s+report: (\S+)$", output, re.MULTILINE)
    docs = re.findall(r"^\s+data docs: (\S+)$", output, re.MULTILINE)
    assert len(report) == 1 and len(docs) == 1, f"report and Data Docs not named once each:\n{output}"
    return Path(report[0]), Path(docs[0])


def check_failure_output(output: str, home: Path) -> None:
    report, docs = saved_report(output)
    assert report.is_file() and docs.is_file(), (report, docs)
    assert str(home) in str(report), "the report is the one this run published under its home"
    failures = json.loads(report.read_text())["failures"]
    assert failures, "the saved report lists the broken rules"
    for failure in failures:
        # the whole rule, never cut, and once: no log line, block and summary repeating it
        assert output.count(failure) == 1, f"{failure!r} appears {output.count(failure)} times:\n{output}"
    assert any("at least 2 distinct classes" in f for f in failures), failures
    last = output.strip().splitlines()[-1]
    assert last.startswith("pipeline: error: step validate: ") and failures[0] in last, last
    assert_plain(output)


def test_failed_run_prints_its_error_once_with_the_saved_report(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "one-class.csv"
    source.write_text(ONE_CLASS)
    result = run_cli(["run", *FAST, "--set", f"data.source.uri={source}"], home)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    output = result.stdout + result.stderr
    check_failure_output(output, home)
    report, _ = saved_report(output)
    (manifest_path,) = (home / "artifacts" / "runs").glob("*/validate/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["status"] == "failed"
    assert manifest["outputs"]["report"]["uri"] == str(report), "the path the failed step's manifest records"
    assert "Resume with" not in output and "resume with" not in output, "a resume cannot fix bad input"


def test_failed_step_command_names_its_saved_report(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "one-class.csv"
    source.write_text(ONE_CLASS)
    settings = ["--set", f"data.source.uri={source}"]
    ingest = run_cli(["step", "ingest", "--run-id", "r1", *settings], home)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    result = run_cli(["step", "validate", "--run-id", "r1", *settings], home)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    check_failure_output(result.stdout + result.stderr, home)


def test_run_with_integer_features_is_plain_and_has_no_integer_schema_warning(tmp_path: Path) -> None:
    """`year` (an int column) as a feature: the model's signature declares it double, as MLflow
    advises for integers that may be missing, so MLflow has nothing to warn about."""
    home = tmp_path / "home"
    result = run_cli(
        ["run", *FAST, "--set", "train.max_epochs=2", "--set", "data.columns.year.role=feature"], home
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Inferred schema contains integer" not in output, output[-3000:]
    assert_plain(output)

    import mlflow

    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    info = mlflow.models.get_model_info("models:/penguins/1")
    types = {spec.name: spec.type.name for spec in info.signature.inputs.inputs}
    assert types["year"] == "double", types
