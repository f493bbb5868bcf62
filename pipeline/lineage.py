"""Lineage of registered model versions: what data, code and configuration made each one."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError
from pipeline.names import CODE_TAG_PREFIX, DATA_TAG_PREFIXES, GATE_TAG_PREFIX, RUN_TAG, TRIGGER_TAG_PREFIX
from pipeline.tracking import configure

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

MODEL_REF = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))?$"
)


def resolve_version(settings: Settings, ref: str):
    """``name``, ``name@alias`` or ``name/version`` -> the MLflow ModelVersion (``name``: champion,
    else the latest version)."""
    from mlflow.exceptions import MlflowException

    match = MODEL_REF.match(ref)
    if not match:
        raise BadInputError(f"model reference {ref!r}: use NAME, NAME@ALIAS or NAME/VERSION")
    client = configure(settings)
    name = match["name"]
    try:
        if match["version"]:
            return client.get_model_version(name, match["version"])
        if match["alias"]:
            return client.get_model_version_by_alias(name, match["alias"])
        try:
            return client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise
            return max(versions, key=lambda v: int(v.version))
    except MlflowException as exc:
        raise BadInputError(
            f"model {ref!r} not found in the registry at {settings.resolved_tracking_uri}: {exc.message}"
        ) from None


def describe(settings: Settings, version) -> dict[str, Any]:
    client = configure(settings)
    run = client.get_run(version.run_id)
    tags = run.data.tags
    return {
        "model": {
            "name": version.name,
            "version": str(version.version),
            "aliases": sorted(version.aliases),
            "source": version.source,
            "created": version.creation_timestamp,
        },
        "gate": {
            k.removeprefix(GATE_TAG_PREFIX): v
            for k, v in version.tags.items()
            if k.startswith(GATE_TAG_PREFIX)
        },
        "trigger": {
            k.removeprefix(TRIGGER_TAG_PREFIX): v
            for k, v in {**tags, **version.tags}.items()
            if k.startswith(TRIGGER_TAG_PREFIX)
        },
        "run": {
            "mlflow_run_id": run.info.run_id,
            "pipeline_run_id": tags.get(RUN_TAG),
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
        },
        "data": {k: v for k, v in tags.items() if k.startswith(DATA_TAG_PREFIXES)},
        "code": {k: v for k, v in tags.items() if k.startswith(CODE_TAG_PREFIX)},
        "seed": tags.get("seed"),
        "environment": {k.removeprefix("env."): v for k, v in tags.items() if k.startswith("env.")},
        "metrics": {
            k: v for k, v in sorted(run.data.metrics.items()) if k.startswith(("test_", "baseline_", "best_"))
        },
        "params": dict(sorted(run.data.params.items())),
        "artifacts": {
            "config": f"runs:/{run.info.run_id}/config/resolved_config.yaml",
            "validation": f"runs:/{run.info.run_id}/validation/validation.json",
            "data_docs": f"runs:/{run.info.run_id}/validation/data_docs/index.html",
            "raw_dvc": f"runs:/{run.info.run_id}/lineage/dvc/raw.dvc",
            "processed_dvc": f"runs:/{run.info.run_id}/lineage/dvc/processed.dvc",
        },
    }


def render(lineage: dict[str, Any], console) -> None:
    from rich.table import Table

    model = lineage["model"]
    console.rule(f"[bold]{model['name']} v{model['version']}[/]  {', '.join(model['aliases']) or ''}")
    for section in ("gate", "trigger", "run", "data", "code", "metrics"):
        values = lineage[section]
        if not values:
            continue
        table = Table(title=section, show_header=False, title_justify="left", box=None, pad_edge=False)
        for key, value in values.items():
            table.add_row(str(key), f"{value:.4f}" if isinstance(value, float) else str(value))
        console.print(table)
    console.print(f"seed {lineage['seed']}; resolved config: {lineage['artifacts']['config']}")
    console.print(
        f"fetch the exact training data: pipeline fetch-data {model['name']}/{model['version']} --dest ./data"
    )


def fetch_version_data(settings: Settings, version, dest: Path, which: str = "raw") -> Path:
    """Download the version's ``.dvc`` file from MLflow and pull the bytes it names from DVC."""
    import mlflow

    from pipeline.dvcstore import fetch

    if which not in ("raw", "processed"):
        raise BadInputError(f"--which {which!r}: use raw or processed")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BadInputError(f"{dest} is not empty: fetch into a new or empty folder")
    configure(settings)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=f"lineage/dvc/{which}.dvc", dst_path=tmp
        )
        text = Path(local).read_text()
    return fetch(text, dest, settings.resolved_dvc_remote, settings.s3)
