"""Step 6, train: fit the PyTorch model on the feature-set version, tracked in MLflow.

Reads the exact feature-set version the features step published, trains with early stopping on
the validation loss, and records on one MLflow run: parameters, per-epoch metrics, the model
(pyfunc with signature and input example, preprocessing included), the preprocessing artifact and
the lineage (DVC hashes, feature-set version, code commit, image digest, resolved configuration,
validation result, seed, package versions).

With ``train.processes`` > 1 the model trains under DistributedDataParallel (see
:mod:`pipeline.distributed`): this process is rank 0 and alone logs, checkpoints and publishes.

Training checkpoints (every ``train.checkpoint_every`` epochs, in ``runs/<run id>/train/_checkpoints/``) are
data only (:mod:`pipeline.checkpoint`). A re-run of interrupted training resumes from the last one on the
same MLflow run, each epoch logged once; checkpoints are removed once the step's outputs are published.

The digests of the model's data files (weights, model spec, transform) are recorded on the run and
the logged model (:mod:`pipeline.modelfiles`), so later steps can check them before loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from pipeline import modelfiles, steps
from pipeline.checkpoint import Checkpointer
from pipeline.context import StepContext, StepResult
from pipeline.errors import ConfigError
from pipeline.model import TabularNet, Training, TrainState, model_input_frame
from pipeline.names import (
    CACHE_REUSED_FROM_PREFIX,
    DATASET_TAG,
    DEVICE_TAG,
    DIGEST_TAG,
    FEATURE_SET_HASH_TAG,
    FEATURE_SET_NAME_TAG,
    FEATURE_SET_VERSION_TAG,
    GATE_MARGIN_PARAM,
    GIT_COMMIT_TAG,
    IMAGE_DIGEST_TAG,
    LEAKAGE_CHECKED_METRIC,
    LEAKAGE_DOWNGRADED_TAG,
    LEAKAGE_MAX_DETERMINATION_METRIC,
    LEAKAGE_MAX_SCORE_COLUMN_TAG,
    LEAKAGE_MAX_SCORE_METRIC,
    LEAKAGE_PARAM_PREFIX,
    LEAKAGE_STATUS_TAG,
    LEAKAGE_WARNED_METRIC,
    LEAKAGE_WARNED_TAG,
    MODEL_ID_TAG,
    PRIMARY_METRIC_TAG,
    PROCESSED_DVC_MD5_TAG,
    PROCESSED_DVC_PATH_TAG,
    RANKS_TAG,
    RAW_DVC_MD5_TAG,
    RAW_DVC_PATH_TAG,
    RAW_ROWS_TAG,
    RAW_SHA256_TAG,
    RESUMED_FROM_TAG,
    RUN_TAG,
    TASK_TAG,
    UPSTREAM_STEPS_ARTIFACT,
)
from pipeline.settings import redact_url
from pipeline.splits import read_splits, version_file
from pipeline.torchrun import world_size
from pipeline.tracking import (
    configure,
    ensure_experiment,
    environment_listing,
    flatten,
    git_commit,
    is_run_of,
    logged_through,
    package_versions,
    runs_for_pipeline_run,
    trigger_tags,
)
from pipeline.transform import TabularTransformer

logger = logging.getLogger(__name__)

INPUT_EXAMPLE_ROWS = 5


def training_fingerprint(settings, content_hash: str) -> str:
    """What a checkpoint must match to be resumed: the data and every setting that shapes training."""
    basis = {
        "train": settings.train.model_dump(),
        "ranks": world_size(settings.train),  # torchrun's world, which no setting records
        "seed": settings.seed,
        "data": content_hash,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


def lineage_tags(ctx: StepContext) -> dict[str, str]:
    settings = ctx.settings
    ingest = ctx.upstream("ingest")
    validate = ctx.upstream("validate")
    features = ctx.upstream("features")
    version = ctx.upstream("version")
    tags = {
        RUN_TAG: ctx.run_id,
        DATASET_TAG: settings.data.name,
        TASK_TAG: settings.data.task,
        "data.source": redact_url(settings.data.source.uri),
        RAW_SHA256_TAG: ingest.summary["sha256"],
        RAW_ROWS_TAG: str(ingest.summary["rows"]),
        RAW_DVC_MD5_TAG: version.summary["raw"]["md5"],
        RAW_DVC_PATH_TAG: version.summary["raw"]["path"],
        PROCESSED_DVC_MD5_TAG: version.summary["processed"]["md5"],
        PROCESSED_DVC_PATH_TAG: version.summary["processed"]["path"],
        "data.dvc_remote": version.summary["remote"],
        FEATURE_SET_NAME_TAG: features.summary["feature_set"],
        FEATURE_SET_VERSION_TAG: str(features.summary["feature_set_version"]),
        FEATURE_SET_HASH_TAG: features.summary["content_hash"],
        "validation.success": str(validate.summary["success"]).lower(),
        "validation.evaluated": str(validate.summary.get("evaluated_expectations")),
        "validation.failed": str(validate.summary.get("unsuccessful_expectations")),
        "seed": str(settings.seed),
        GIT_COMMIT_TAG: git_commit(settings) or "unknown",
    }
    if settings.image_digest:
        tags[IMAGE_DIGEST_TAG] = settings.image_digest
    for step in steps.DATA_STEPS:  # the step cache: whose outputs this run reused
        origin = ctx.upstream(step).reused_from
        if origin:
            tags[f"{CACHE_REUSED_FROM_PREFIX}{step}"] = f"run {origin['run_id']}, step {origin['step']}"
    for name, value in package_versions().items():
        tags[f"env.{name}"] = value
    return tags


def log_lineage_artifacts(ctx: StepContext, mlflow) -> None:
    """Attach the evidence behind the lineage tags to the run."""
    settings = ctx.settings
    work = ctx.scratch / "lineage"
    work.mkdir(parents=True, exist_ok=True)
    # In declaration order: the order of data.columns is the order of the model's inputs.
    (work / "resolved_config.yaml").write_text(yaml.safe_dump(settings.redacted(), sort_keys=False))
    (work / "requirements.lock.txt").write_text(environment_listing())
    mlflow.log_artifact(str(work / "resolved_config.yaml"), "config")
    mlflow.log_artifact(str(work / "requirements.lock.txt"), "environment")
    mlflow.log_artifact(str(ctx.input_path("version", "raw_dvc")), "lineage/dvc")
    mlflow.log_artifact(str(ctx.input_path("version", "processed_dvc")), "lineage/dvc")
    mlflow.log_artifact(str(ctx.input_path("validate", "report")), "validation")
    mlflow.log_artifacts(str(ctx.input_path("validate", "data_docs")), "validation/data_docs")
    mlflow.log_artifact(str(ctx.input_path("preprocess", "transformer")), "preprocessing")
    manifests = {step: ctx.upstream(step).summary for step in steps.DATA_STEPS}
    mlflow.log_dict(manifests, UPSTREAM_STEPS_ARTIFACT)


def leakage_record(settings, summary: dict[str, Any]) -> tuple[dict[str, str], dict[str, float]]:
    """Tags and metrics recording the preprocess step's leakage check (its ``leakage`` summary)."""
    downgraded = [
        f"{name}={spec.leakage}"
        for name, spec in settings.data.columns.items()
        if spec.leakage in ("warn", "skip")
    ]
    tags = {
        LEAKAGE_STATUS_TAG: str(summary.get("status", "unknown")),
        LEAKAGE_WARNED_TAG: ",".join(summary.get("warned_columns") or []),
        LEAKAGE_DOWNGRADED_TAG: ",".join(downgraded),
    }
    if summary.get("max_score_column"):
        tags[LEAKAGE_MAX_SCORE_COLUMN_TAG] = str(summary["max_score_column"])
    metrics = {
        LEAKAGE_CHECKED_METRIC: float(summary.get("checked_columns") or 0),
        LEAKAGE_WARNED_METRIC: float(len(summary.get("warned_columns") or [])),
    }
    for metric, key in (
        (LEAKAGE_MAX_SCORE_METRIC, "max_score"),
        (LEAKAGE_MAX_DETERMINATION_METRIC, "max_determination"),
    ):
        if summary.get(key) is not None:
            metrics[metric] = float(summary[key])
    return tags, metrics


def params_for(settings) -> dict[str, Any]:
    params = flatten("train", settings.train.model_dump())
    params.update(flatten("preprocess", settings.preprocess.model_dump()))
    params.update(flatten(LEAKAGE_PARAM_PREFIX, settings.data.leakage.model_dump()))
    params.update(
        {
            "data.name": settings.data.name,
            "data.target": settings.data.target,
            "data.task": settings.data.task,
            "seed": settings.seed,
            GATE_MARGIN_PARAM: settings.gate.margin,
            PRIMARY_METRIC_TAG: settings.primary_metric,
        }
    )
    return {k: ("None" if v is None else v) for k, v in params.items()}


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    cfg = settings.train
    features = ctx.upstream("features")
    transformer = TabularTransformer.from_json(ctx.input_path("preprocess", "transformer").read_text())

    if settings.require_gpu and not torch.cuda.is_available():
        raise ConfigError(
            "PIPELINE_REQUIRE_GPU is set but no CUDA device is visible to torch "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'no'}): check the node's "
            "GPU driver and device plugin, the pod's nvidia.com/gpu limit, or use the CUDA image"
        )
    ranks = world_size(cfg)
    sizes = ctx.upstream("preprocess").summary.get("rows_per_split")  # the tensors allocated once
    processed = version_file(ctx.input_path("preprocess", "features"), features.summary)
    splits = read_splits(settings.resolved_feature_store_url, features.summary, transformer, sizes, processed)
    training = Training.create(cfg, settings.seed, transformer, splits)
    state = TrainState()

    client = configure(settings)
    import mlflow

    experiment_id = ensure_experiment(client, settings)
    fingerprint = training_fingerprint(settings, features.summary["content_hash"])
    checkpointer = Checkpointer(ctx.store, ctx.run_id, ctx.step, fingerprint)
    checkpoint = checkpointer.load()
    if checkpoint is not None and not is_run_of(client, checkpoint.mlflow_run_id, ctx.run_id):
        checkpointer.discard(
            f"MLflow run {checkpoint.mlflow_run_id} is not a run of pipeline run {ctx.run_id}"
        )
        checkpoint = None
    if checkpoint is not None:
        try:
            checkpoint.restore(training)
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            checkpointer.discard(f"its tensors do not fit this model ({str(exc).splitlines()[0]})")
            checkpoint = None
            training = Training.create(cfg, settings.seed, transformer, splits)  # as a first attempt
    model, device, spec = training.model, training.device, training.spec
    mlflow_run_id = None
    if checkpoint is not None:
        state = checkpoint.state
        mlflow_run_id = checkpoint.mlflow_run_id
        logger.info(
            "resuming training of run %s from epoch %d (MLflow run %s)",
            ctx.run_id,
            state.epoch,
            mlflow_run_id,
        )
    # Runs of this pipeline run left RUNNING by a killed process are closed, not left forever.
    for stale in runs_for_pipeline_run(client, experiment_id, ctx.run_id):
        if stale.info.status == "RUNNING" and stale.info.run_id != mlflow_run_id:
            client.set_terminated(stale.info.run_id, status="KILLED")
            logger.warning("marked MLflow run %s of an interrupted attempt as KILLED", stale.info.run_id)

    run_name = f"{settings.data.name}-{ctx.run_id}"
    with mlflow.start_run(
        run_id=mlflow_run_id, experiment_id=experiment_id, run_name=None if mlflow_run_id else run_name
    ) as active:
        mlflow_run_id = active.info.run_id
        # Why this run exists, first thing on the run: a retrain that fails before register still says so.
        mlflow.set_tags(trigger_tags(settings))
        mlflow.set_tag(RANKS_TAG, str(ranks))
        if checkpoint is None:
            mlflow.set_tags(lineage_tags(ctx))
            mlflow.set_tag(DEVICE_TAG, str(device))
            mlflow.log_params(params_for(settings))
            leakage = ctx.upstream("preprocess").summary.get("leakage") or {}
            leakage_tags, leakage_metrics = leakage_record(settings, leakage)
            mlflow.set_tags(leakage_tags)
            mlflow.log_metrics(leakage_metrics)
            if leakage:
                mlflow.log_dict(leakage, "validation/leakage.json")
            log_lineage_artifacts(ctx, mlflow)
        else:
            mlflow.set_tag(RESUMED_FROM_TAG, str(state.epoch))

        logged = logged_through(client, mlflow_run_id) if checkpoint is not None else 0

        def on_epoch(epoch, metrics, model, optimizer, generator, state) -> None:
            if epoch > logged:  # the interrupted attempt logged this epoch already
                mlflow.log_metrics(metrics, step=epoch)
            if epoch % cfg.checkpoint_every == 0 or state.stopped_early or epoch == cfg.max_epochs:
                checkpointer.save(model, optimizer, generator, state, mlflow_run_id)

        if ranks > 1:  # rank 0 is this process: the run, the checkpoint and the outputs stay here
            from pipeline.distributed import Group

            with Group(training, cfg, settings.seed, settings.data.task, state, ctx.scratch) as group:
                state = training.fit(
                    cfg, settings.data.task, state=state, on_epoch=on_epoch, world=group.world
                )
        else:
            state = training.fit(cfg, settings.data.task, state=state, on_epoch=on_epoch)
        model = model.cpu().eval()
        mlflow.log_metrics(
            {
                "best_val_loss": state.best_val_loss,
                "best_epoch": state.best_epoch,
                "epochs_trained": state.epoch,
            }
        )
        outputs = write_model_files(ctx.staging, model, spec, state)
        test_raw = pd.read_parquet(ctx.input_path("preprocess", "test_raw"))
        example = model_input_frame(test_raw.head(INPUT_EXAMPLE_ROWS), settings.data.feature_columns())
        model_info, files_tags = log_model(mlflow, model_files(ctx, outputs), example, ctx.scratch)
        mlflow.set_tags({MODEL_ID_TAG: model_info.model_id, **files_tags})
        client.set_logged_model_tags(model_info.model_id, files_tags)
    summary = {
        "mlflow_run_id": mlflow_run_id,
        "experiment_id": experiment_id,
        "model_uri": model_info.model_uri,
        "model_id": model_info.model_id,
        "epochs_trained": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "stopped_early": state.stopped_early,
        "device": str(device),
        "processes": ranks,
        "train_rows": len(splits["train"]),
        "model_files_sha256": files_tags[DIGEST_TAG],
    }
    logger.info(
        "trained %d epochs (best %d, val loss %.4f) on %s",
        state.epoch,
        state.best_epoch,
        state.best_val_loss,
        device,
    )
    return StepResult(
        outputs={"weights": "model.pt", "model_spec": "model_spec.json", "history": "history.json"},
        summary=summary,
        on_published=checkpointer.clear,
    )


def write_model_files(folder: Path, model: TabularNet, spec, state: TrainState) -> dict[str, Path]:
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "model_spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
    (folder / "history.json").write_text(json.dumps(state.history, indent=2))
    return {"weights": folder / "model.pt", "model_spec": folder / "model_spec.json"}


def model_files(ctx: StepContext, files: dict[str, Path]) -> dict[str, Path]:
    """The data files of the model, by pyfunc artifact name, under the names they are logged with."""
    transformer = ctx.scratch / "model_files" / Path(modelfiles.TRANSFORMER).name
    transformer.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.input_path("preprocess", "transformer"), transformer)
    return {"transformer": transformer, "model_spec": files["model_spec"], "weights": files["weights"]}


def log_model(mlflow, files: dict[str, Path], example, scratch: Path):
    """Log the pyfunc model (transform + network) with its signature and an input example.

    ``files`` maps the pyfunc artifact names (``transformer``, ``model_spec``, ``weights``) to
    local files. Returns the model info and the tags recording the digests of those files
    (:mod:`pipeline.modelfiles`), computed from the files this step wrote.
    """
    from mlflow.models import infer_signature

    from pipeline.serving import Predictor

    predictor = Predictor.from_files(files["transformer"], files["model_spec"], files["weights"])
    signature = infer_signature(example, predictor.predict(example))
    package_dir = Path(__file__).resolve().parent.parent
    code = scratch / "code"
    shutil.copytree(package_dir, code / "pipeline", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(code / "pipeline" / "mlflow_model.py"),
        artifacts={name: str(path) for name, path in files.items()},
        signature=signature,
        input_example=example,
        code_paths=[str(code / "pipeline")],
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            "pandas",
            "numpy",
            f"mlflow=={mlflow.__version__}",
        ],
    )
    logged = {name: entry["path"] for name, entry in info.flavors["python_function"]["artifacts"].items()}
    if logged != modelfiles.ARTIFACT_NAMES:
        raise RuntimeError(f"MLflow laid out the model's files as {logged}, not {modelfiles.ARTIFACT_NAMES}")
    tags = modelfiles.files_tags({modelfiles.ARTIFACT_NAMES[name]: path for name, path in files.items()})
    return info, tags


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    loss = summary.get("best_val_loss")
    return f"{summary.get('epochs_trained')} epochs on {summary.get('device')}, best val loss {loss:.4f}"
