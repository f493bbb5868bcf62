"""Step 8, register: a new model version with alias ``challenger``; ``champion`` if the gate passes.

Under the registry lock (see :mod:`pipeline.registry`) the step registers the version, scores the
current champion on this run's frozen test snapshot, applies the gate and moves the aliases. The
decision and its reason are tags on the version (and on the run), alongside the data lineage, so
the registry alone answers "which data made this model and why was it promoted".

The step is a sequence of idempotent writes that a retry repeats until it has converged on the
state a clean run leaves, whichever call failed (an MLflow 5xx after its retries, a killed pod):

1. complete every decision left pending by an interrupted run (``gate.state = pending``: recorded,
   but its alias move or run tags may be missing), oldest first;
2. find this run's version (by the tag ``pipeline.run_id``) or create it, and wait until READY;
3. point ``challenger`` at it unless a newer version already holds it;
4. if no decision is recorded yet: score the champion, decide, record the decision tags
   (``gate.decision`` last, ``gate.state = pending`` until 5 is done);
5. complete the decision: ``champion`` moves only by compare-and-set (it must still name the
   version the decision compared against); then the run's tags; then ``pending`` is cleared.

A recorded decision is never taken again: the champion it was compared against may have been
replaced since (and by step 1 every later run completed this one first, so a recorded promotion
was either applied, or applies now on an unchanged champion). A newer champion that beat it is
never demoted by it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline import metrics as m
from pipeline.context import StepContext, StepResult
from pipeline.errors import RetryableError
from pipeline.model import model_input_frame
from pipeline.modelfiles import ModelFilesError
from pipeline.names import (
    DECISION,
    FEATURE_SET_NAME_TAG,
    FEATURE_SET_VERSION_TAG,
    GATE_SCORE,
    GIT_COMMIT_TAG,
    IMAGE_DIGEST_TAG,
    MODEL_FILES_TAGS,
    NOT_APPLIED,
    PROCESSED_DVC_MD5_TAG,
    RAW_DVC_MD5_TAG,
    RAW_SHA256_TAG,
    REASON,
    RUN_TAG,
)
from pipeline.registry import (
    GateDecision,
    apply_decision,
    champion,
    complete_pending,
    decide,
    ensure_registered_model,
    find_version_for_run,
    point_challenger,
    record_decision,
    registry_lock,
    wait_until_ready,
)
from pipeline.serving import load_trusted_predictor
from pipeline.tracking import configure, trigger_tags

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

# MLflow error codes of a failure worth retrying (what a 5xx or an overloaded server answers)
TRANSIENT_MLFLOW_ERRORS = ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")

COPIED_RUN_TAGS = (
    RUN_TAG,
    RAW_SHA256_TAG,
    RAW_DVC_MD5_TAG,
    PROCESSED_DVC_MD5_TAG,
    FEATURE_SET_NAME_TAG,
    FEATURE_SET_VERSION_TAG,
    GIT_COMMIT_TAG,
    IMAGE_DIGEST_TAG,
)


def score_champion(
    ctx: StepContext, client: MlflowClient, name: str, version: str, metric: str
) -> tuple[float, str]:
    """The champion's primary metric on this run's test snapshot (same rows as the challenger).

    The champion is loaded from its data files only, each checked against the digest recorded
    when it was trained (:func:`pipeline.serving.load_trusted_predictor`); no code stored with it
    runs. A file that fails its check raises :class:`ModelFilesError` naming the version and file.
    """
    data = ctx.settings.data
    test_raw = pd.read_parquet(ctx.input_path("preprocess", "test_raw"))
    try:
        predictor = load_trusted_predictor(client, f"models:/{name}/{version}", ctx.scratch)
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

    with registry_lock(settings, name) as lease:
        ensure_registered_model(client, name)
        complete_pending(client, lease, name)
        version = find_version_for_run(client, name, ctx.run_id) or client.create_model_version(
            name,
            source=train.summary["model_uri"],
            run_id=mlflow_run_id,
            model_id=train.summary.get("model_id"),  # a tracking server refuses models:/ sources without it
            tags={k: run_tags[k] for k in (*COPIED_RUN_TAGS, *MODEL_FILES_TAGS) if k in run_tags},
            description=f"Run {ctx.run_id}: test {metric} {score:.4f}.",
        )
        number = str(version.version)
        wait_until_ready(client, name, number)
        # Why this run exists: on the version, and on the run (where the train step put them when it
        # opened it); idempotent, a tag that already has its value is not written again.
        for key, value in trigger_tags(settings).items():
            if run_tags.get(key) != value:
                client.set_tag(mlflow_run_id, key, value)
            if version.tags.get(key) != value:
                client.set_model_version_tag(name, number, key, value)
        point_challenger(client, lease, name, number)
        if not version.tags.get(DECISION):
            decision = _decide(ctx, client, name, number, metric, score, baseline_score)
            record_decision(client, lease, name, number, decision)
        else:
            logger.info("run %s: %s v%s has a recorded decision; completing it", ctx.run_id, name, number)
        tags = apply_decision(client, lease, name, client.get_model_version(name, number))
    logger.info("%s v%s: %s (%s)", name, number, tags[DECISION], tags.get(REASON, ""))
    return _result(name, number, tags, client, mlflow_run_id)


def _decide(
    ctx: StepContext,
    client: MlflowClient,
    name: str,
    version: str,
    metric: str,
    score: float,
    baseline_score: float | None,
) -> GateDecision:
    current = champion(client, name)
    champion_version = champion_score = None
    note = ""
    if current is not None and str(current.version) != version:
        champion_version = str(current.version)
        try:
            champion_score, note = score_champion(ctx, client, name, current.version, metric)
        except Exception as exc:
            if _transient(exc):  # a retry scores it; a fallback would be a different decision
                raise
            recorded = current.tags.get(GATE_SCORE)
            if recorded is None:
                raise
            champion_score = float(recorded)
            note = f" (champion could not be scored on this snapshot: {exc}; its recorded score was used)"
    return decide(ctx.settings, metric, score, baseline_score, champion_version, champion_score, note)


def _transient(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, RetryableError):
        return True
    return isinstance(exc, MlflowException) and exc.error_code in TRANSIENT_MLFLOW_ERRORS


def _result(
    name: str, version: str, tags: dict[str, str], client: MlflowClient, mlflow_run_id: str
) -> StepResult:
    current = champion(client, name)
    return StepResult(
        summary={
            "model_name": name,
            "version": version,
            "aliases": sorted(client.get_model_version(name, version).aliases),
            "promoted": tags.get(DECISION) == "promoted" and NOT_APPLIED not in tags,
            "reason": tags.get(REASON, ""),
            "champion_version": str(current.version) if current is not None else None,
            "mlflow_run_id": mlflow_run_id,
        }
    )


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    role = "-> champion" if summary.get("promoted") else "challenger"
    return f"{summary.get('model_name')} v{summary.get('version')} {role}"
