"""Step 6, train: fit the PyTorch model on the feature-set version, tracked in MLflow.

Reads the exact feature-set version the features step published, trains with early stopping on
the validation loss, and records on one MLflow run: parameters, per-epoch metrics, the model
(pyfunc with signature and input example, preprocessing included), the preprocessing artifact and
the lineage (DVC hashes, feature-set version, code commit, image digest, resolved configuration,
validation result, seed, package versions).

Training checkpoints are written atomically after every epoch under
``runs/<run id>/train/_checkpoints/``. When the step is re-run for a run whose training was
interrupted, it resumes from the last checkpoint on the same MLflow run; checkpoints are removed
once the step's outputs are published.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from pipeline.context import StepContext, StepResult
from pipeline.errors import ConfigError
from pipeline.featurestore import FeatureStore
from pipeline.model import TabularNet, Training, TrainState, splits_from_frame
from pipeline.settings import redact_url
from pipeline.tracking import (
    RUN_TAG,
    configure,
    ensure_experiment,
    environment_listing,
    flatten,
    git_commit,
    package_versions,
    runs_for_pipeline_run,
)
from pipeline.transform import TabularTransformer

logger = logging.getLogger(__name__)

CHECKPOINT = "state.pt"
INPUT_EXAMPLE_ROWS = 5


class Checkpointer:
    """Atomic save/load of the training state in the artifact store."""

    def __init__(self, ctx: StepContext):
        self.store = ctx.store
        self.path = f"{ctx.store.checkpoint_path(ctx.run_id, ctx.step)}/{CHECKPOINT}"

    def load(self) -> dict[str, Any] | None:
        data = self.store.read_bytes(self.path)
        if data is None:
            return None
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)

    def save(self, payload: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        self.store.write_bytes(self.path, buffer.getvalue())  # tmp file + rename, or one PUT

    def clear(self) -> None:
        self.store.remove(self.path.rsplit("/", 1)[0])


def training_fingerprint(settings, content_hash: str) -> str:
    """What a checkpoint must match to be resumed: the data and every setting that shapes training."""
    import hashlib

    basis = {"train": settings.train.model_dump(), "seed": settings.seed, "data": content_hash}
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


def lineage_tags(ctx: StepContext) -> dict[str, str]:
    settings = ctx.settings
    ingest = ctx.upstream("ingest")
    validate = ctx.upstream("validate")
    features = ctx.upstream("features")
    version = ctx.upstream("version")
    tags = {
        RUN_TAG: ctx.run_id,
        "pipeline.dataset": settings.data.name,
        "pipeline.task": settings.data.task,
        "data.source": redact_url(settings.data.source.uri),
        "data.raw.sha256": ingest.summary["sha256"],
        "data.raw.rows": str(ingest.summary["rows"]),
        "data.raw.dvc_md5": version.summary["raw"]["md5"],
        "data.raw.dvc_path": version.summary["raw"]["path"],
        "data.processed.dvc_md5": version.summary["processed"]["md5"],
        "data.processed.dvc_path": version.summary["processed"]["path"],
        "data.dvc_remote": version.summary["remote"],
        "feature_set.name": features.summary["feature_set"],
        "feature_set.version": str(features.summary["feature_set_version"]),
        "feature_set.content_hash": features.summary["content_hash"],
        "validation.success": str(validate.summary["success"]).lower(),
        "validation.evaluated": str(validate.summary.get("evaluated_expectations")),
        "validation.failed": str(validate.summary.get("unsuccessful_expectations")),
        "seed": str(settings.seed),
        "code.git_commit": git_commit(settings) or "unknown",
    }
    if settings.image_digest:
        tags["code.image_digest"] = settings.image_digest
    for name, value in package_versions().items():
        tags[f"env.{name}"] = value
    return tags


def log_lineage_artifacts(ctx: StepContext, mlflow) -> None:
    """Attach the evidence behind the lineage tags to the run."""
    settings = ctx.settings
    work = ctx.scratch / "lineage"
    work.mkdir(parents=True, exist_ok=True)
    (work / "resolved_config.yaml").write_text(yaml.safe_dump(settings.redacted(), sort_keys=True))
    (work / "requirements.lock.txt").write_text(environment_listing())
    mlflow.log_artifact(str(work / "resolved_config.yaml"), "config")
    mlflow.log_artifact(str(work / "requirements.lock.txt"), "environment")
    mlflow.log_artifact(str(ctx.input_path("version", "raw_dvc")), "lineage/dvc")
    mlflow.log_artifact(str(ctx.input_path("version", "processed_dvc")), "lineage/dvc")
    mlflow.log_artifact(str(ctx.input_path("validate", "report")), "validation")
    mlflow.log_artifacts(str(ctx.input_path("validate", "data_docs")), "validation/data_docs")
    mlflow.log_artifact(str(ctx.input_path("preprocess", "transformer")), "preprocessing")
    manifests = {
        step: ctx.upstream(step).summary
        for step in ("ingest", "validate", "preprocess", "features", "version")
    }
    mlflow.log_dict(manifests, "lineage/upstream_steps.json")


def params_for(settings) -> dict[str, Any]:
    params = flatten("train", settings.train.model_dump())
    params.update(flatten("preprocess", settings.preprocess.model_dump()))
    params.update(
        {
            "data.name": settings.data.name,
            "data.target": settings.data.target,
            "data.task": settings.data.task,
            "seed": settings.seed,
            "gate.margin": settings.gate.margin,
            "evaluate.primary_metric": settings.primary_metric,
        }
    )
    return {k: ("None" if v is None else v) for k, v in params.items()}


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    cfg = settings.train
    features = ctx.upstream("features")
    transformer = TabularTransformer.from_json(ctx.input_path("preprocess", "transformer").read_text())

    store = FeatureStore(settings.resolved_feature_store_url)
    try:
        frame = store.read(features.summary["feature_set"], int(features.summary["feature_set_version"]))
    finally:
        store.close()
    if settings.require_gpu and not torch.cuda.is_available():
        raise ConfigError(
            "PIPELINE_REQUIRE_GPU is set but no CUDA device is visible to torch "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'no'}): check the node's "
            "GPU driver and device plugin, the pod's nvidia.com/gpu limit, or use the CUDA image"
        )
    training = Training.create(cfg, settings.seed, transformer, splits_from_frame(frame, transformer))
    model, optimizer, generator, device = (
        training.model,
        training.optimizer,
        training.generator,
        training.device,
    )
    splits, spec = training.splits, training.spec
    state = TrainState()

    client = configure(settings)
    import mlflow

    experiment_id = ensure_experiment(client, settings)
    checkpointer = Checkpointer(ctx)
    checkpoint = checkpointer.load()
    fingerprint = training_fingerprint(settings, features.summary["content_hash"])
    if checkpoint is not None and checkpoint.get("fingerprint") != fingerprint:
        logger.warning(
            "discarding the checkpoint of run %s: it was made with other data or settings", ctx.run_id
        )
        checkpointer.clear()
        checkpoint = None
    mlflow_run_id = None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])
        state = checkpoint["state"]
        mlflow_run_id = checkpoint["mlflow_run_id"]
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
        if checkpoint is None:
            mlflow.set_tags(lineage_tags(ctx))
            mlflow.set_tag("train.device", str(device))
            mlflow.log_params(params_for(settings))
            log_lineage_artifacts(ctx, mlflow)
        else:
            mlflow.set_tag("train.resumed_from_epoch", str(state.epoch))

        def on_epoch(epoch, metrics, model, optimizer, generator, state) -> None:
            mlflow.log_metrics(metrics, step=epoch)
            if epoch % cfg.checkpoint_every == 0 or state.stopped_early or epoch == cfg.max_epochs:
                checkpointer.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "state": state,
                        "mlflow_run_id": mlflow_run_id,
                        "fingerprint": fingerprint,
                    }
                )

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
        model_info = log_model(ctx, mlflow, outputs)
        mlflow.set_tag("model.id", model_info.model_id)
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
        "train_rows": len(splits["train"]),
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


def log_model(ctx: StepContext, mlflow, files: dict[str, Path]):
    """Log the pyfunc model (transform + network) with its signature and an input example."""
    import pandas as pd
    from mlflow.models import infer_signature

    from pipeline.serving import Predictor

    settings = ctx.settings
    transformer_path = ctx.input_path("preprocess", "transformer")
    test_raw = pd.read_parquet(ctx.input_path("preprocess", "test_raw"))
    example = model_input_frame(test_raw.head(INPUT_EXAMPLE_ROWS), settings.data.feature_columns())
    predictor = Predictor.from_files(transformer_path, files["model_spec"], files["weights"])
    signature = infer_signature(example, predictor.predict(example))
    package_dir = Path(__file__).resolve().parent.parent
    code = ctx.scratch / "code"
    shutil.copytree(package_dir, code / "pipeline", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(code / "pipeline" / "mlflow_model.py"),
        artifacts={
            "transformer": str(transformer_path),
            "model_spec": str(files["model_spec"]),
            "weights": str(files["weights"]),
        },
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


def model_input_frame(frame, columns: list[str]):
    """Raw feature columns in the schema the model is logged with (text as object dtype)."""
    out = frame[columns].copy()
    for column in out.columns:
        if out[column].dtype.kind not in "biuf":
            out[column] = out[column].astype(object)
    return out.reset_index(drop=True)
