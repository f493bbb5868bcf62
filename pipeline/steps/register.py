"""Step 8, register: a new model version with alias ``challenger``; ``champion`` if the gate passes.

Under the registry lock (see :mod:`pipeline.registry`) the step registers the version, scores the
current champion on this run's frozen test snapshot, applies the gate and moves the aliases. The
decision and its reason are tags on the version (and on the run), alongside the data lineage, so
the registry alone answers "which data made this model and why was it promoted".
"""

from __future__ import annotations

import logging

import pandas as pd

from pipeline import metrics as m
from pipeline.context import StepContext, StepResult
from pipeline.modelfiles import MODEL_FILES_TAGS, ModelFilesError
from pipeline.registry import (
    CHALLENGER,
    CHAMPION,
    champion,
    decide,
    ensure_registered_model,
    find_version_for_run,
    registry_lock,
    wait_until_ready,
)
from pipeline.serving import load_trusted_predictor
from pipeline.steps.train import model_input_frame
from pipeline.tracking import RUN_TAG, configure

logger = logging.getLogger(__name__)

COPIED_RUN_TAGS = (
    RUN_TAG,
    "data.raw.sha256",
    "data.raw.dvc_md5",
    "data.processed.dvc_md5",
    "feature_set.name",
    "feature_set.version",
    "code.git_commit",
    "code.image_digest",
)


def score_champion(ctx: StepContext, name: str, version: str, metric: str) -> tuple[float, str]:
    """The champion's primary metric on this run's test snapshot (same rows as the challenger).

    The champion is loaded from its data files only, each checked against the digest recorded
    when it was trained (:func:`pipeline.serving.load_trusted_predictor`); no code stored with it
    runs. A file that fails its check raises :class:`ModelFilesError` naming the version and file.
    """
    data = ctx.settings.data
    test_raw = pd.read_parquet(ctx.input_path("preprocess", "test_raw"))
    try:
        predictor = load_trusted_predictor(configure(ctx.settings), f"models:/{name}/{version}", ctx.scratch)
    except ModelFilesError as exc:
        logger.error("the champion is not loaded: %s", exc)
        raise
    transformer = predictor.transformer
    y_true = transformer.target_for_metrics(test_raw[data.target])
    outputs = predictor.raw_outputs(model_input_frame(test_raw, data.feature_columns()))
    return m.score(data.task, y_true, outputs, len(transformer.classes))[metric], ""


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    train = ctx.upstream("train")
    evaluate = ctx.upstream("evaluate")
    client = configure(settings)
    name = settings.resolved_model_name
    metric = evaluate.summary["primary_metric"]
    score = float(evaluate.summary["test"][metric])
    baseline_score = evaluate.summary["baseline"].get(metric)
    mlflow_run_id = train.summary["mlflow_run_id"]
    run_tags = client.get_run(mlflow_run_id).data.tags

    with registry_lock(settings, name):
        ensure_registered_model(client, name)
        existing = find_version_for_run(client, name, ctx.run_id)
        if existing is not None and existing.tags.get("gate.decision"):
            logger.info("run %s is already registered as %s v%s", ctx.run_id, name, existing.version)
            return _result(name, existing.version, existing.tags, client, mlflow_run_id, already=True)
        version = existing or client.create_model_version(
            name,
            source=train.summary["model_uri"],
            run_id=mlflow_run_id,
            model_id=train.summary.get("model_id"),  # a tracking server refuses models:/ sources without it
            tags={k: run_tags[k] for k in (*COPIED_RUN_TAGS, *MODEL_FILES_TAGS) if k in run_tags},
            description=f"Run {ctx.run_id}: test {metric} {score:.4f}.",
        )
        wait_until_ready(client, name, version.version)
        client.set_registered_model_alias(name, CHALLENGER, version.version)

        current = champion(client, name)
        champion_version = champion_score = None
        note = ""
        if current is not None and str(current.version) != str(version.version):
            champion_version = str(current.version)
            try:
                champion_score, note = score_champion(ctx, name, current.version, metric)
            except Exception as exc:
                recorded = current.tags.get("gate.score")
                if recorded is None:
                    raise
                champion_score = float(recorded)
                note = f" (champion could not be scored on this snapshot: {exc}; its recorded score was used)"
        decision = decide(settings, metric, score, baseline_score, champion_version, champion_score, note)
        for key, value in decision.tags().items():
            client.set_model_version_tag(name, version.version, key, value)
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version.version)
        client.set_tag(mlflow_run_id, "registry.model", name)
        client.set_tag(mlflow_run_id, "registry.version", version.version)
        client.set_tag(mlflow_run_id, "gate.decision", decision.tags()["gate.decision"])
        client.set_tag(mlflow_run_id, "gate.reason", decision.reason)
        tags = client.get_model_version(name, version.version).tags
    logger.info("%s v%s: %s (%s)", name, version.version, tags["gate.decision"], decision.reason)
    return _result(name, version.version, tags, client, mlflow_run_id)


def _result(name, version, tags, client, mlflow_run_id, already: bool = False) -> StepResult:
    current = champion(client, name)
    promoted = tags.get("gate.decision") == "promoted"
    return StepResult(
        summary={
            "model_name": name,
            "version": str(version),
            "aliases": sorted(client.get_model_version(name, str(version)).aliases),
            "promoted": promoted,
            "reason": tags.get("gate.reason", ""),
            "champion_version": str(current.version) if current is not None else None,
            "mlflow_run_id": mlflow_run_id,
            "already_registered": already,
        }
    )
