"""Where a study lives (storage URL, lock) and what it searches (the space, and the settings a
trial trains with)."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import RetryableError
from pipeline.locks import shared_lock
from pipeline.settings import Settings, TrainSettings, redact_url, url_with_password

if TYPE_CHECKING:  # pragma: no cover
    import optuna


logger = logging.getLogger(__name__)

LIST_SETTINGS = {"hidden_sizes"}


def study_name(settings: Settings, run_id: str) -> str:
    return settings.sweep.study_name or f"sweep-{run_id}"


def storage_url(settings: Settings) -> str:
    """The study's storage: ``sweep.storage_url``; else the feature store's PostgreSQL database
    (the cluster); else a SQLite file in the pipeline home."""
    sweep = settings.sweep
    if sweep.storage_url:
        secret = sweep.storage_password.get_secret_value() if sweep.storage_password else None
        return url_with_password(sweep.storage_url, secret)
    features = settings.resolved_feature_store_url
    if features.startswith(("postgresql", "postgres")):
        return features
    return f"sqlite:///{settings.home / 'optuna.db'}"


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Heartbeats and stale-trial failing are stable in use but still flagged experimental."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def open_storage(settings: Settings, on_interrupted: Callable | None = None):
    """An Optuna RDB storage with heartbeats: a trial silent for ``sweep.stale_after_s`` is failed."""
    import optuna

    url = storage_url(settings)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        from pipeline.tracking import prepare_sqlite

        prepare_sqlite(url)  # WAL: workers read while another writes
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        with quiet_experimental():
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=settings.sweep.heartbeat_s,
                grace_period=settings.sweep.stale_after_s,
                failed_trial_callback=on_interrupted,
            )
    except Exception as exc:  # unreachable server, bad credentials, locked file
        raise RetryableError(f"study storage {redact_url(url)} failed: {exc}") from exc


def trial_reservation(settings: Settings, name: str) -> contextlib.AbstractContextManager[None]:
    """Makes "count the study's trials, then start one" atomic across the workers of study
    ``name``, so that shared workers never start more trials than the budget. A worker holds it
    from the count until Optuna has created the new trial as RUNNING: an advisory lock per study
    on the study's PostgreSQL (pods on any node), else a file lock beside the SQLite study."""
    url = storage_url(settings)
    if url.startswith("sqlite:///"):
        lock_file = Path(f"{url.removeprefix('sqlite:///')}.{name}.lock")
    else:
        lock_file = settings.home / "locks" / f"{name}.lock"
    key, what = f"ml-pipeline/sweep/{name}", f"the trial reservation of {name!r}"
    return shared_lock(url, key, lock_file, settings.sweep.lock_timeout_s, what)


def suggest(trial: optuna.Trial, space: dict) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.type == "float":
            params[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
        elif dim.type == "int":
            step = int(dim.step) if dim.step else 1
            params[name] = trial.suggest_int(name, int(dim.low), int(dim.high), step=step, log=dim.log)
        else:
            params[name] = trial.suggest_categorical(name, dim.choices)
    return params


def train_settings_for(settings: Settings, params: dict[str, Any]) -> TrainSettings:
    """The train settings of one trial: the configured ones, the trial's parameters, the sweep's
    epoch budget."""
    values = settings.train.model_dump()
    for name, value in params.items():
        if name in LIST_SETTINGS and not isinstance(value, list):
            value = [int(part) for part in str(value).split(",") if part.strip()]
        values[name] = value
    values["max_epochs"] = settings.sweep.max_epochs or settings.train.max_epochs
    return TrainSettings.model_validate(values)


def settings_for_params(settings: Settings, params: dict[str, Any]) -> Settings:
    """The whole settings of a run that trains with these trial parameters."""
    return settings.model_copy(update={"train": train_settings_for(settings, params)})


def overrides_for_params(settings: Settings, params: dict[str, Any]) -> list[str]:
    """The same as ``--set`` options, e.g. to retrain a trial with ``pipeline run``."""
    train = train_settings_for(settings, params)
    names = [*params, "max_epochs"]
    return [f"train.{name}={json.dumps(getattr(train, name))}" for name in names]
