"""Settings: precedence of sources, safe names, redaction, and no side effects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.cli import parse_overrides
from pipeline.errors import ConfigError
from pipeline.settings import Settings, packaged_config, redact_url
from tests.conftest import REPO, clean_env


def test_defaults_are_the_embedded_mode(home: Path) -> None:
    settings = Settings.load()
    assert settings.config_file == packaged_config("penguins.yaml")
    assert settings.resolved_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.resolved_feature_store_url == f"sqlite:///{home / 'features.db'}"
    assert settings.resolved_artifact_root == str(home / "artifacts")
    assert settings.resolved_dvc_remote == str(home / "dvc-remote")
    assert settings.data.target == "species"
    assert settings.primary_metric == "macro_f1"


def test_precedence_overrides_beat_env_beat_yaml(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(packaged_config("penguins.yaml").read_text() + "\nseed: 1\n")
    assert Settings.load(config).train.max_epochs == 150  # from the YAML
    monkeypatch.setenv("PIPELINE_TRAIN__MAX_EPOCHS", "7")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    settings = Settings.load(config)
    assert settings.train.max_epochs == 7
    assert settings.train.batch_size == 32, "a nested env var leaves the YAML's siblings alone"
    assert settings.seed == 1
    assert settings.resolved_tracking_uri == "http://mlflow:5000"
    assert Settings.load(config, **parse_overrides(["train.max_epochs=3"])).train.max_epochs == 3


def test_switching_to_production_backends_is_configuration_only(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_FEATURE_STORE_URL", "postgresql+psycopg2://features@db:5432/features")
    monkeypatch.setenv("PIPELINE_FEATURE_STORE_PASSWORD", "p@ss/word")
    monkeypatch.setenv("PIPELINE_ARTIFACT_ROOT", "s3://bucket/artifacts")
    monkeypatch.setenv("PIPELINE_DVC_REMOTE", "s3://bucket/dvc")
    monkeypatch.setenv("PIPELINE_S3__ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("PIPELINE_S3__SECRET_ACCESS_KEY", "very-secret")
    settings = Settings.load()
    assert (
        settings.resolved_feature_store_url == "postgresql+psycopg2://features:p%40ss%2Fword@db:5432/features"
    )
    redacted = settings.redacted()
    text = repr(redacted)
    assert "p%40ss" not in text and "very-secret" not in text
    assert redacted["feature_store_url"] == "postgresql+psycopg2://features:***@db:5432/features"
    assert settings.s3.endpoint_url == "http://minio:9000"


def test_redact_url() -> None:
    assert redact_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"data": {"name": "../etc"}}, "not a safe name"),
        ({"model_name": "a/b"}, "not a safe name"),
        ({"data": {"target": "nope"}}, "not declared in data.columns"),
        ({"evaluate": {"primary_metric": "rmse"}}, "does not apply to a classification task"),
        ({"train": {"learning_rate": -1}}, "greater than 0"),
        ({"unknown_key": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_refused(home: Path, override: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(")):
        Settings.load(**override)


def test_missing_config_file_is_a_config_error(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "missing.yaml")


def test_parse_overrides_types_and_errors() -> None:
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=null", "e=text"]) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": None,
        "e": "text",
    }
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])


def test_importing_the_package_has_no_side_effects(tmp_path: Path) -> None:
    """No folders, no connections, no MLflow URI, no heavy imports for `--help` and the DAG."""
    home = tmp_path / "home"
    code = (
        "import sys, pipeline, pipeline.cli, pipeline.steps, pipeline.settings\n"
        "from pipeline.settings import Settings\nSettings.load()\n"
        "names = ('mlflow', 'torch', 'great_expectations', 'dvc', 'pandas', 'sqlalchemy')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=clean_env(home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    assert not home.exists()
    assert sorted(os.listdir(tmp_path)) == []
    help_proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"],
        cwd=tmp_path,
        env=clean_env(home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert help_proc.returncode == 0 and "step" in help_proc.stdout
    assert not home.exists()


def test_env_example_documents_every_backend_variable() -> None:
    example = (REPO / ".env.example").read_text()
    for variable in (
        "PIPELINE_HOME",
        "PIPELINE_CONFIG",
        "PIPELINE_ARTIFACT_ROOT",
        "MLFLOW_TRACKING_URI",
        "PIPELINE_FEATURE_STORE_URL",
        "PIPELINE_FEATURE_STORE_PASSWORD",
        "PIPELINE_DVC_REMOTE",
        "PIPELINE_S3__ENDPOINT_URL",
        "PIPELINE_S3__ACCESS_KEY_ID",
        "PIPELINE_S3__SECRET_ACCESS_KEY",
        "PIPELINE_S3__REGION",
        "PIPELINE_MODEL_NAME",
        "PIPELINE_EXPERIMENT_NAME",
    ):
        assert variable in example, variable


def test_log_level_from_the_yaml_or_the_environment_sets_the_pipelines_level(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`log_level:` in a configuration file is obeyed (it used to be read by nobody), the
    environment wins over the file, and a command that fixes its level keeps it."""
    import logging
    import signal

    from pipeline import cli

    config = tmp_path / "c.yaml"
    config.write_text(packaged_config("penguins.yaml").read_text() + "\nlog_level: debug\n")
    root = logging.getLogger()
    before, handlers, on_term = root.level, root.handlers[:], signal.getsignal(signal.SIGTERM)
    try:
        cli._prepare()
        assert root.level == logging.INFO
        cli.load_settings(config, None)
        assert root.level == logging.DEBUG
        monkeypatch.setenv("PIPELINE_LOG_LEVEL", "ERROR")
        cli.load_settings(config, None)
        assert root.level == logging.ERROR
        cli._prepare("WARNING")
        cli.load_settings(config, None)
        assert root.level == logging.WARNING
    finally:
        cli._COMMAND_LEVEL = None
        root.setLevel(before)
        root.handlers[:] = handlers
        signal.signal(signal.SIGTERM, on_term)
    with pytest.raises(ValidationError, match="log_level"):
        Settings.load(log_level="LOUD")


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["step", "ingest", "--run-id", "r1"],
        ["config"],
        ["doctor"],
        ["show", "penguins@champion"],
        ["fetch-data", "penguins@champion", "--dest", "out"],
        ["reproduce", "penguins@champion"],
        ["ui"],
        ["sweep"],
        ["report"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_reports_a_bad_setting_the_same_way(
    home: Path, tmp_path: Path, command: list[str]
) -> None:
    """One error path for all commands: a bad setting is exit 65, one `pipeline: error:` line last
    on stderr naming the setting and the rule, no traceback, nothing written to the home."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *command, "--set", "seed=many"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(home),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 65, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pipeline: error: ") and "seed" in last and "integer" in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(home.iterdir()), sorted(p.name for p in home.iterdir())


# --- the DAG settings' schedules (MLP_DAG_SCHEDULE, MLP_DAG_MONITOR_SCHEDULE) ------------------------

SCHEDULES = {"MLP_DAG_SCHEDULE": "schedule", "MLP_DAG_MONITOR_SCHEDULE": "monitor_schedule"}


def _dag_settings_module():
    """dags/ml_pipeline_support/settings.py, as the DAG files import it (no Airflow import)."""
    import importlib

    if str(REPO / "dags") not in sys.path:
        sys.path.append(str(REPO / "dags"))
    return importlib.import_module("ml_pipeline_support.settings")


def _chart_pattern() -> str:
    return _dag_settings_module().cron.json_schema["pattern"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 3 * * MON-FRI", "0 3 * * MON-FRI"),
        ("0 0 1,15 * *", "0 0 1,15 * *"),
        ("@daily", "@daily"),
        ("@quarterly", "@quarterly"),
        ("none", None),
        ("Off", None),
    ],
)
def test_a_dag_schedule_is_a_cron_expression_a_preset_or_none(value: str, expected: str | None) -> None:
    import re

    cls = _dag_settings_module().DagSettings
    for env, field in SCHEDULES.items():
        assert getattr(cls.from_env(("train",), {env: value}), field) == expected, env
    assert re.fullmatch(_chart_pattern(), value)  # the chart's schema takes it too


def test_the_dag_schedules_defaults() -> None:
    settings = _dag_settings_module().DagSettings.from_env(("train",), {})
    assert (settings.schedule, settings.monitor_schedule) == ("0 3 * * 1", "@hourly")


@pytest.mark.parametrize(
    ("value", "message", "chart_refuses"),
    [
        ("every hour", "is not a 5-field cron expression", True),
        ("0 3 * * 1 2026", "is not a 5-field cron expression", True),
        ("61 * * * *", "is not a 5-field cron expression", False),  # the DAG file checks the values
        ("0 25 * * *", "is not a 5-field cron expression", False),
        ("@fortnightly", "is not a preset; use one of @hourly, @daily", True),
        ("@once", "is not a preset", True),
    ],
)
def test_a_bad_dag_schedule_is_refused_naming_the_variable(
    value: str, message: str, chart_refuses: bool
) -> None:
    import re

    cls = _dag_settings_module().DagSettings
    for env in SCHEDULES:
        with pytest.raises(ValueError, match=re.escape(f"{env}={value!r} {message}")):
            cls.from_env(("train",), {env: value})
    assert (re.fullmatch(_chart_pattern(), value) is None) is chart_refuses
