"""Running steps: one step for a run id (``pipeline step``, a pod), or all of them (``pipeline run``).

Both go through :func:`execute_step`, which gives the step a private staging folder, publishes
its outputs atomically and returns the manifest. ``run_pipeline`` resumes a run: steps that
already succeeded for the run id are kept, and everything from the first step that has not is
executed again. The first step a run id executes records the run's resolved configuration
(secrets masked) under ``runs/<run id>/settings.yaml``; ``pipeline run --run-id`` resumes with it
(:func:`pipeline.recorded.settings_for_resume`).

With the step cache on (``cache.enabled``, the default), a step whose key (its inputs, code and the
settings it reads, :mod:`pipeline.cache`) names outputs an earlier run published is not run: its
manifest for this run points at those outputs (``reused_from``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import cache, steps
from pipeline.context import StepContext, StepContractError, StepResult, check_run_id
from pipeline.recorded import record_run
from pipeline.settings import Settings
from pipeline.steps import StepSpec, get_step, load_step
from pipeline.storage import ArtifactStore, Manifest, utcnow
from pipeline.tracking import wrap_unreachable

logger = logging.getLogger(__name__)

XCOM_DIR = Path("/airflow/xcom")


def new_run_id() -> str:
    return f"local-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def make_store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.resolved_artifact_root, settings.s3, scratch=settings.home / "tmp")


def execute_step(
    settings: Settings,
    run_id: str,
    name: str,
    store: ArtifactStore | None = None,
    use_cache: bool | None = None,
) -> Manifest:
    """Run one step and publish its outputs, or reuse an earlier run's (a step cache hit; ``use_cache``
    None: ``cache.enabled``). A step that runs records its key for later runs (``use_cache`` False
    included) unless ``cache.enabled`` is off. Raises the step's error after publishing what it
    chose to publish (a failed validation publishes its report)."""
    check_run_id(run_id)
    spec = get_step(name)
    store = store or make_store(settings)
    record_run(store, run_id, settings)  # the first step of a run records its configuration
    started = utcnow()
    key = None
    reuse = settings.cache.enabled if use_cache is None else use_cache
    if reuse and spec.kind == "model" and settings.trigger.cause in cache.EVIDENCE_CAUSES:
        # A retrain the monitor decided on evidence trains (the gate decides); its data steps
        # are still reused when unchanged.
        logger.info("step %s: not reused: the run answers %s", name, settings.trigger.cause)
        reuse = False
    if reuse or settings.cache.enabled:
        source = cache.source_hash(settings) if not spec.needs else None
        key, origin = cache.find_reusable(store, settings, spec, run_id, source, look=reuse)
        if origin is not None:
            logger.debug(
                "step %s: reusing the outputs of run %s (cache key %s)", name, origin.run_id, key[:12]
            )
            return cache.reuse(store, run_id, origin, key, started)
    function = load_step(name)
    with store.workdir(run_id, name) as workdir:
        ctx = StepContext(
            settings=settings, run_id=run_id, step=name, store=store, workdir=workdir, spec=spec
        )
        try:
            result = function(ctx)
            check_outputs(spec, result)
        except Exception as exc:
            mlflow_errors = sys.modules.get("mlflow.exceptions")
            if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
                logger.debug("MLflow call failed", exc_info=True)
                raise wrap_unreachable(exc, settings) from exc
            raise
        manifest = store.publish(
            run_id,
            name,
            ctx.staging,
            result.outputs,
            summary=result.summary,
            started_at=started,
            status=result.status,
            cache_key=key,
        )
    if key is not None:
        try:
            cache.remember(store, manifest)
        except Exception:  # the outputs are published; only a later reuse is lost
            logger.warning("could not record step %s in the step cache", name, exc_info=True)
    if result.status == "succeeded" and result.on_published is not None:
        try:
            result.on_published()
        except Exception:
            logger.warning("clean-up after publishing %s failed", name, exc_info=True)
    if result.error is not None:
        raise result.error
    return manifest


def check_outputs(spec: StepSpec, result: StepResult) -> None:
    """A step publishes what its spec declares: nothing else, and all of it when it succeeded."""
    published, declared = set(result.outputs), set(spec.outputs)
    missing = declared - published if result.status == "succeeded" else set()
    if published - declared or missing:
        raise StepContractError(
            f"step {spec.name!r} published {sorted(published)}; its StepSpec declares {sorted(declared)}"
        )


def step_summary(manifest: Manifest) -> dict[str, Any]:
    """The one-line JSON a step prints (and returns to Airflow): references, hashes, figures."""
    return {
        "run_id": manifest.run_id,
        "step": manifest.step,
        "status": manifest.status,
        "attempt": manifest.attempt,
        "outputs": {k: v["uri"] for k, v in manifest.outputs.items()},
        "hashes": {k: v["sha256"] for k, v in manifest.outputs.items() if "sha256" in v},
        **manifest.summary,
        **({"reused_from": manifest.reused_from} if manifest.reused_from else {}),
    }


def emit_summary(summary: dict[str, Any], xcom_dir: Path = XCOM_DIR) -> None:
    from pipeline.redaction import redact_data

    line = json.dumps(redact_data(summary), sort_keys=True, default=str)
    if xcom_dir.is_dir() and os.access(xcom_dir, os.W_OK):
        (xcom_dir / "return.json").write_text(line)
    print(line, flush=True)


def run_pipeline(
    settings: Settings,
    run_id: str,
    force: bool = False,
    on_step: Callable[[str, str, Manifest | None], None] | None = None,
    stop_after: str | None = None,
    use_cache: bool | None = None,
    rerun_from: str | None = None,
) -> dict[str, Manifest]:
    """Execute the whole step list for ``run_id`` (or up to ``stop_after``), resuming where a
    previous attempt stopped. Steps are reused from the step cache (``use_cache`` None:
    ``cache.enabled``; ``force`` runs every step), except ``rerun_from`` and every step after it."""
    check_run_id(run_id)
    if rerun_from is not None and get_step(rerun_from).kind == "model":
        # The model steps share one MLflow run: re-running one re-runs them all (pipeline.cache).
        rerun_from = next(spec.name for spec in steps.STEPS if spec.kind == "model")
    store = make_store(settings)
    manifests: dict[str, Manifest] = {}
    rerun = force
    caching = (settings.cache.enabled if use_cache is None else use_cache) and not force
    for spec in steps.STEPS:
        if spec.name == rerun_from:
            caching = False
            rerun = True
        existing = None if rerun else store.read_manifest(run_id, spec.name)
        if existing is not None and existing.succeeded:
            manifests[spec.name] = existing
            if on_step:
                on_step(spec.name, "kept", existing)
            if spec.name == stop_after:
                break
            continue
        rerun = True  # everything after a re-executed step runs again
        if on_step:
            on_step(spec.name, "started", None)
        manifest = execute_step(settings, run_id, spec.name, store, use_cache=caching)
        manifests[spec.name] = manifest
        if on_step:
            on_step(spec.name, "reused" if manifest.reused_from else "succeeded", manifest)
        if spec.name == stop_after:
            break
    return manifests
