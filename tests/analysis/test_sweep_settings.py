"""The sweep's configuration: the search space, the study storage, trial parameters as settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.cli import parse_overrides
from pipeline.settings import Settings
from pipeline.sweep import overrides_for_params, storage_url, study_name, train_settings_for


def test_the_default_space_is_valid_and_names_train_settings(home):
    space = Settings.load().sweep.space
    assert set(space) == {"learning_rate", "dropout", "batch_size", "hidden_sizes"}
    assert space["learning_rate"].log is True


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"device": {"type": "categorical", "choices": ["cpu"]}}, "'device' cannot be searched"),
        ({"preprocess.scale": {"type": "categorical", "choices": [True]}}, "cannot be searched"),
        ({"dropout": {"type": "float", "low": 0.5, "high": 0.1}}, "needs low < high"),
        ({"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "needs low > 0"),
        ({"batch_size": {"type": "categorical", "choices": []}}, "non-empty 'choices'"),
        (
            {
                "dropout": {"type": "float", "low": 0, "high": 1},
                "train.dropout": {"type": "float", "low": 0, "high": 1},
            },
            "declared twice",
        ),
        ({}, "sweep.space is empty"),
    ],
)
def test_a_bad_search_space_is_refused_when_the_configuration_is_read(home, space, message):
    with pytest.raises(ValidationError, match=message):
        Settings.load(sweep={"space": space})


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_a_study_name_that_could_escape_its_folder_is_refused(home, name):
    # the study name also names the sweep's lock file beside the SQLite study
    with pytest.raises(ValidationError, match=r"sweep\.study_name .* is not a safe name"):
        Settings.load(sweep={"study_name": name})
    assert Settings.load(sweep={"study_name": "nightly-v2"}).sweep.study_name == "nightly-v2"


def test_stale_after_must_outlast_the_heartbeat(home):
    with pytest.raises(ValidationError, match=r"longer than sweep\.heartbeat_s"):
        Settings.load(sweep={"heartbeat_s": 10, "stale_after_s": 10})


def test_the_study_storage_follows_the_backends(home):
    assert storage_url(Settings.load()) == f"sqlite:///{home / 'optuna.db'}"
    cluster = Settings.load(
        feature_store_url="postgresql+psycopg2://features@postgresql:5432/features",
        feature_store_password="s3cr/t",
    )
    assert storage_url(cluster) == "postgresql+psycopg2://features:s3cr%2Ft@postgresql:5432/features"
    explicit = Settings.load(
        sweep={"storage_url": "postgresql+psycopg2://optuna@db:5432/optuna", "storage_password": "pw"}
    )
    assert storage_url(explicit) == "postgresql+psycopg2://optuna:pw@db:5432/optuna"
    assert explicit.redacted()["sweep"]["storage_password"] == "***"
    assert study_name(explicit, "run-1") == "sweep-run-1"
    assert study_name(Settings.load(sweep={"study_name": "lr-search"}), "run-1") == "lr-search"


def test_trial_parameters_become_train_settings_and_set_options(home):
    settings = Settings.load(sweep={"max_epochs": 7})
    params = {"hidden_sizes": "128,64", "learning_rate": 0.0123, "batch_size": 64, "dropout": 0.2}
    train = train_settings_for(settings, params)
    assert train.hidden_sizes == [128, 64]
    assert (train.learning_rate, train.batch_size, train.dropout, train.max_epochs) == (0.0123, 64, 0.2, 7)
    assert train.patience == settings.train.patience  # what the space does not search is kept
    # the same values through the command line's --set, as a user retrains a trial
    again = Settings.load(**parse_overrides(overrides_for_params(settings, params)))
    assert again.train == train
