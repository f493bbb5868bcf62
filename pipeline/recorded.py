"""Settings rebuilt from what a run recorded, and the check that a resumed run keeps them.

A run records its resolved configuration, secrets masked (:meth:`Settings.redacted`), twice: in
the artifact store when it starts (``runs/<run id>/settings.yaml``, what ``pipeline run --run-id``
resumes with) and on its MLflow run (``config/resolved_config.yaml``, what ``reproduce`` and
``report`` read). A command acting on a recorded run rebuilds its settings from that record; only
the backends (tracking URI, stores, credentials, timeouts) come from the current environment, and
no secret ever comes from the record (it holds none).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.errors import ConfigError
from pipeline.names import RESOLVED_CONFIG_ARTIFACT, RUN_SETTINGS_FILE
from pipeline.redaction import MASK

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings
    from pipeline.storage import ArtifactStore

logger = logging.getLogger(__name__)

# Settings of the environment a command runs in, never of the run: where the stores are, how to
# reach them, with which credentials, and the process's own behaviour.
BACKEND_SETTINGS = (
    "home",
    "config_file",
    "artifact_root",
    "tracking_uri",
    "feature_store_url",
    "feature_store_password",
    "dvc_remote",
    "s3",
    "registry_lock_timeout_s",
    "mlflow_http_timeout_s",
    "mlflow_http_max_retries",
    "mlflow_artifacts_destination",
    "require_gpu",
    "git_commit",
    "image_digest",
    "log_level",
    "secret_settings",
    "cache",  # whether this process reuses earlier runs' outputs (pipeline.cache)
    "trigger",  # why this process runs (a resume of a drift retrain, started by hand, is manual)
)
BACKEND_SWEEP_SETTINGS = ("storage_url", "storage_password")
MAX_SHOWN = 12  # differences a refusal lists


def _without_backends(config: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in config.items() if k not in BACKEND_SETTINGS}
    if isinstance(data.get("sweep"), dict):
        data["sweep"] = {k: v for k, v in data["sweep"].items() if k not in BACKEND_SWEEP_SETTINGS}
    return data


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def masked_settings(config: dict[str, Any]) -> list[str]:
    """Dotted paths of the (non-backend) settings whose recorded value hides a secret."""
    return sorted(
        key
        for key, value in _flatten(_without_backends(config)).items()
        if isinstance(value, str) and MASK in value
    )


def config_differences(recorded: dict[str, Any], now: Settings) -> list[str]:
    """``key: recorded -> now`` for every run setting (backends aside) that differs, secrets masked
    on both sides (a secret given again is never a difference, nor shown)."""
    lines: list[str] = []
    _diff(_without_backends(recorded), _without_backends(now.redacted()), "", lines)
    return sorted(lines, key=lambda line: len(line) > 100)  # the short ones first, in key order


_UNSET = "(unset)"


def _diff(before: Any, after: Any, prefix: str, lines: list[str]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            _diff(
                before.get(key, _UNSET),
                after.get(key, _UNSET),
                f"{prefix}.{key}" if prefix else str(key),
                lines,
            )
    elif before != after:
        lines.append(f"{prefix}: {_show(before)} -> {_show(after)}")


def _show(value: Any) -> str:
    if value == _UNSET:
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def in_training_order(recorded: dict[str, Any], features: list[str]) -> dict[str, Any]:
    """``recorded`` with its data.columns in the order of ``features`` (what the model was trained
    on, from the preprocess step's summary): a record written with sorted keys lost that order."""
    columns = (recorded.get("data") or {}).get("columns") or {}
    if not features or not set(features) <= set(columns):
        return recorded
    ordered = {name: columns[name] for name in features}
    ordered.update({name: spec for name, spec in columns.items() if name not in ordered})
    return {**recorded, "data": {**recorded["data"], "columns": ordered}}


def rebuild(recorded: dict[str, Any], current: Settings, **replace: Any) -> Settings:
    """Settings of a recorded run: its recorded configuration, with the backends (and the secret
    settings names, merged) of ``current``; ``replace`` overrides top-level sections."""
    from pydantic import ValidationError

    from pipeline.settings import Settings

    data = _without_backends(recorded)
    data.pop("config_file", None)
    backends = current.model_dump(mode="python", include=set(BACKEND_SETTINGS) - {"config_file"})
    backends["secret_settings"] = sorted(
        set(current.secret_settings) | set(recorded.get("secret_settings") or [])
    )
    sweep = current.sweep
    if isinstance(data.get("sweep"), dict):
        data["sweep"] = {
            **data["sweep"],
            "storage_url": sweep.storage_url,
            "storage_password": sweep.storage_password,
        }
    merged = {**data, **backends, **replace}
    if merged.get("tracking_uri") is None:
        merged.pop("tracking_uri", None)
    try:
        # The class itself (not Settings.load): no YAML file underneath, so nothing of the
        # default config is merged into the recorded one.
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"the recorded configuration no longer loads: {problems}") from None


# --------------------------------------------------------------------------------------------
# The run's record in the artifact store (what `pipeline run --run-id` resumes with)
# --------------------------------------------------------------------------------------------


def _record_path(store: ArtifactStore, run_id: str) -> str:
    return f"{store._path('runs', run_id)}/{RUN_SETTINGS_FILE}"


def read_run_record(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    data = store.read_bytes(_record_path(store, run_id))
    if data is None:
        return None
    record = yaml.safe_load(data.decode("utf-8"))
    return record if isinstance(record, dict) else None


def record_run(store: ArtifactStore, run_id: str, settings: Settings, replace: bool = False) -> None:
    """Record the run's resolved configuration (secrets masked) when it first starts."""
    if not replace and store.read_bytes(_record_path(store, run_id)) is not None:
        return
    text = yaml.safe_dump(settings.redacted(), sort_keys=False)  # data.columns' order is the inputs'
    store.write_bytes(_record_path(store, run_id), text.encode("utf-8"))


def settings_for_resume(
    store: ArtifactStore,
    run_id: str,
    current: Settings,
    *,
    explicit: bool,
    allow_change: bool = False,
) -> Settings:
    """The settings a run id resumes with. No record (a new run): ``current``. Otherwise the
    recorded configuration, unless ``current`` differs from it: then, when the configuration was
    given explicitly (``--config``/``--set``), refused unless ``allow_change``; when it was not
    (``pipeline run --run-id X`` alone), the record wins."""
    recorded = read_run_record(store, run_id)
    if recorded is None:
        return current
    differences = config_differences(recorded, current)
    if not differences:
        return current  # the same run settings, with this environment's secrets
    shown = "; ".join(differences[:MAX_SHOWN])
    if len(differences) > MAX_SHOWN:
        shown += f"; and {len(differences) - MAX_SHOWN} more"
    if explicit:
        if not allow_change:
            raise ConfigError(
                f"run {run_id!r} was recorded with another configuration "
                f"({store.to_uri(_record_path(store, run_id))}); differences (recorded -> now): {shown}. "
                f"Resume it as recorded with `pipeline run --run-id {run_id}` (no --config/--set), "
                "start a new run id, or pass --allow-config-change"
            )
        logger.warning("run %s resumes with a changed configuration: %s", run_id, shown)
        record_run(store, run_id, current, replace=True)
        return current
    masked = masked_settings(recorded)
    if masked:
        raise ConfigError(
            f"run {run_id!r} was recorded with secrets, which its record does not hold "
            f"({', '.join(masked)}): resume it with the same configuration given again "
            "(--config/--set or the environment)"
        )
    logger.info(
        "run %s resumes with its recorded configuration (%s), not the current one (%s)",
        run_id,
        store.to_uri(_record_path(store, run_id)),
        shown,
    )
    return rebuild(recorded, current)


# --------------------------------------------------------------------------------------------
# The record on an MLflow run (what reproduce, report and lineage read)
# --------------------------------------------------------------------------------------------


def mlflow_run_config(run_id: str, dst: str) -> dict[str, Any] | None:
    """The resolved configuration recorded on an MLflow run, or None when it has none."""
    from pathlib import Path

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=RESOLVED_CONFIG_ARTIFACT, dst_path=dst
        )
    except (MlflowException, OSError):
        return None
    record = yaml.safe_load(Path(path).read_text())
    return record if isinstance(record, dict) else None


def settings_of_mlflow_run(current: Settings, run_id: str) -> Settings | None:
    """Settings rebuilt from an MLflow run's record (None: the run recorded none)."""
    import tempfile

    from pipeline.tracking import configure

    configure(current)
    with tempfile.TemporaryDirectory(prefix="mlp-record-") as tmp:
        recorded = mlflow_run_config(run_id, tmp)
    return None if recorded is None else rebuild(recorded, current)
