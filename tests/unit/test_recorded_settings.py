"""Settings rebuilt from a run's record (pipeline.recorded): the recorded configuration alone,
backends and secrets from the current environment, and a resume that keeps what was recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import EXIT_BAD_INPUT, ConfigError, exit_code_for
from pipeline.recorded import config_differences, read_run_record, rebuild, record_run, settings_for_resume
from pipeline.settings import Settings, packaged_config
from pipeline.storage import ArtifactStore

WINE = packaged_config("wine.yaml")


def recorded(settings: Settings) -> dict:
    """What a run records, through YAML as on disk."""
    return yaml.safe_load(yaml.safe_dump(settings.redacted(), sort_keys=False))


def store_at(tmp_path: Path, settings: Settings) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"), settings.s3, scratch=tmp_path / "scratch")


def test_a_record_rebuilds_its_own_dataset_whatever_the_default_config(home: Path, tmp_path: Path) -> None:
    record = recorded(Settings.load(WINE, train={"max_epochs": 7}, home=tmp_path / "elsewhere"))
    current = Settings.load(feature_store_password="from-the-environment")  # the penguins default
    rebuilt = rebuild(record, current)
    assert rebuilt.data.name == "wine" and rebuilt.data.target == "cultivar"
    assert "species" not in rebuilt.data.columns, "nothing of the default config is merged in"
    assert list(rebuilt.data.columns) == list(Settings.load(WINE).data.columns), "declaration order kept"
    assert rebuilt.train.max_epochs == 7
    assert rebuilt.home == home, "backends come from the current environment, not the record"
    assert rebuilt.feature_store_password.get_secret_value() == "from-the-environment"
    assert config_differences(record, rebuilt) == []


def test_differences_name_each_setting_and_never_a_secret(home: Path) -> None:
    source = {"source": {"uri": "https://reader:hunter2-secret@data.example/wine.csv"}}
    record = recorded(Settings.load(WINE, data=source, train={"max_epochs": 12}))
    again = Settings.load(WINE, data=source, train={"max_epochs": 12}, tracking_uri="sqlite:////x/other.db")
    assert config_differences(record, again) == [], "a secret given again and another backend are no change"
    changed = Settings.load(WINE, data=source, train={"max_epochs": 13})
    assert config_differences(record, changed) == ["train.max_epochs: 12 -> 13"]
    other = Settings.load(WINE, data={"source": {"uri": "https://reader:other-secret@data.example/b.csv"}})
    shown = "\n".join(config_differences(record, other))
    assert (
        "data.source.uri: https://reader:***@data.example/wine.csv -> https://reader:***@data.example/b.csv"
        in shown
    )
    assert "hunter2" not in shown and "other-secret" not in shown


def test_a_resume_keeps_the_recorded_configuration(home: Path, tmp_path: Path) -> None:
    first = Settings.load(WINE, train={"max_epochs": 12})
    store = store_at(tmp_path, first)
    assert settings_for_resume(store, "r1", Settings.load(), explicit=False).data.name == "penguins", (
        "a run id with no record is a new run"
    )
    record_run(store, "r1", first)
    record_run(store, "r1", Settings.load(), replace=False)  # a later step never overwrites it
    assert read_run_record(store, "r1")["data"]["name"] == "wine"

    resumed = settings_for_resume(store, "r1", Settings.load(), explicit=False)
    assert resumed.data.name == "wine" and resumed.train.max_epochs == 12

    with pytest.raises(ConfigError) as refused:
        settings_for_resume(store, "r1", Settings.load(WINE, train={"max_epochs": 13}), explicit=True)
    assert exit_code_for(refused.value) == EXIT_BAD_INPUT
    assert "train.max_epochs: 12 -> 13" in str(refused.value)
    assert "--allow-config-change" in str(refused.value)

    same = Settings.load(WINE, train={"max_epochs": 12})
    assert settings_for_resume(store, "r1", same, explicit=True) is same

    changed = Settings.load(WINE, train={"max_epochs": 13})
    assert settings_for_resume(store, "r1", changed, explicit=True, allow_change=True) is changed
    assert read_run_record(store, "r1")["train"]["max_epochs"] == 13, "the change is what is recorded now"


def test_a_recorded_secret_is_never_taken_from_the_record(home: Path, tmp_path: Path) -> None:
    first = Settings.load(WINE, data={"source": {"uri": "https://reader:hunter2@data.example/wine.csv"}})
    store = store_at(tmp_path, first)
    record_run(store, "r2", first)
    assert b"hunter2" not in (tmp_path / "artifacts" / "runs" / "r2" / "settings.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"data\.source\.uri") as refused:
        settings_for_resume(store, "r2", Settings.load(), explicit=False)
    assert "hunter2" not in str(refused.value)
    # Given again (here as the same settings), the secret comes from the user: resumed as recorded.
    again = Settings.load(WINE, data={"source": {"uri": "https://reader:hunter2@data.example/wine.csv"}})
    assert settings_for_resume(store, "r2", again, explicit=False) is again
