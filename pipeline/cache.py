"""The step cache: a step whose inputs, code and configuration have not changed is not run again.

A step's **key** is a SHA-256 over

* the step's **code**: the source of its module and of every module of the ``pipeline`` package
  it imports, transitively (found by reading the ``import`` statements, never by importing);
* the **environment**: the versions of the libraries the steps compute with (an upgrade of torch
  or pandas may change an output);
* the **settings it reads**: the values, in the resolved configuration with secrets masked
  (:meth:`pipeline.settings.Settings.redacted`), of the dotted paths its
  :class:`~pipeline.steps.StepSpec` declares in ``settings_read`` (a test records every setting
  each step really reads and fails on an undeclared one);
* its **inputs**: the key of each upstream step it reads (or, for a step that was not cached,
  the content hashes of what it published), so a change anywhere upstream changes the key of
  every step downstream of it, and of no other; the first step (ingest) has no upstream: its
  input is the source, hashed byte for byte when that is cheap and exact (a local or packaged
  file). An HTTP API, a SQL query, an S3 object or a generated dataset has no such hash: ingest
  then always runs, and the steps after it are keyed on the snapshot it took.

The key lives in the artifact store, where every pod of a run can read it:
``<artifact root>/cache/<step>/<key>.json`` names the run whose step published the outputs
(written atomically after its manifest). A **hit** publishes, for the new run, a manifest that
points at the same output URIs (nothing is copied), with ``cache_key`` and
``reused_from: {run_id, step}``; a hit is only taken when that run's manifest still carries the
same key and its outputs still exist.

The model steps (train, evaluate, register) write into one MLflow run and one model version, so
they are reused together or not at all: evaluating a reused model would log onto an earlier
run's record. The cache trusts the backends (feature store, DVC remote, MLflow) to keep what
they recorded; after wiping one, run ``pipeline run --no-cache``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipeline.codehash import code_hash
from pipeline.storage import Manifest, sha256_file, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings
    from pipeline.steps import StepSpec
    from pipeline.storage import ArtifactStore

logger = logging.getLogger(__name__)

KEY_FORMAT = 1  # bump when what goes into a key changes: every earlier key then misses
CACHE_DIR = "cache"

# Libraries whose version can change what a step computes.
ENVIRONMENT_PACKAGES = (
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "torch",
    "great-expectations",
    "mlflow",
    "dvc",
    "sqlalchemy",
)

# Settings a step may read without them entering its key: how a step runs or records itself, never
# what it computes. The backends' locations are not here: a step writing into the feature store,
# DVC or MLflow declares their resolved URL (the key then changes with the backend).
# Causes of a run that re-train even when nothing it reads changed (see runner.execute_step).
EVIDENCE_CAUSES = ("drift", "degradation")

EXEMPT_SETTINGS = (
    "cache",  # whether the cache is used
    "trigger",  # why the run exists (provenance on the run and version); drift and degradation
    # re-train the model steps instead of reusing them (EVIDENCE_CAUSES)
    "config_file",  # where the configuration came from (its values are what counts)
    "home",  # only through the resolved backend URLs, which the steps declare
    "log_level",
    "secret_settings",  # what is masked in records
    "git_commit",  # provenance recorded on the MLflow run; the code's own hash is in the key
    "image_digest",
    "require_gpu",  # refuses to run without a GPU; changes no output
    "registry_lock_timeout_s",
    "mlflow_http_timeout_s",
    "mlflow_http_max_retries",
    "s3.max_attempts",
    "s3.connect_timeout_s",
    "s3.read_timeout_s",
    "s3.access_key_id",  # credentials, not content
    "s3.secret_access_key",
    "feature_store_password",
)


def covered(path: str, declared: tuple[str, ...]) -> bool:
    """Whether the dotted setting ``path`` is ``declared`` (itself or a section above it)."""
    return any(path == d or path.startswith(f"{d}.") for d in declared)


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    versions = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


# --------------------------------------------------------------------------------------------
# settings and source
# --------------------------------------------------------------------------------------------

_UNSET = "(unset)"


def settings_subset(settings: Settings, paths: tuple[str, ...], resolved: dict | None = None) -> dict:
    """The values of the dotted ``paths`` in the resolved configuration (secrets masked)."""
    data = resolved if resolved is not None else settings.redacted()
    subset: dict[str, Any] = {}
    for path in paths:
        value: Any = data
        for part in path.split("."):
            value = value.get(part, _UNSET) if isinstance(value, dict) else _UNSET
        subset[path] = value
    return subset


def source_hash(settings: Settings) -> str | None:
    """SHA-256 of the source's bytes when that is cheap and exact (a local or ``pkg://`` file),
    else None (HTTP, SQL, S3, a generated dataset: ingest is then not cached)."""
    from pipeline.sources import resolve_package_uri, source_kind

    source = settings.data.source
    if source_kind(source) != "file":
        return None
    uri = source.uri
    scheme = urlparse(uri).scheme.lower() if "://" in uri else ""
    if scheme == "pkg":
        path = _package_file(uri) or resolve_package_uri(uri)
    elif scheme in ("", "file"):
        path = Path(uri[len("file://") :] if scheme == "file" else uri).expanduser()
    else:
        return None
    try:
        return sha256_file(path)
    except OSError:
        return None  # ingest runs and reports the problem itself


def _package_file(uri: str) -> Path | None:
    """The file of a ``pkg://<package>/<path>`` URI, found without importing the package (which
    may import pandas, seconds of a fully cached run); None when that is not plain: then
    :func:`pipeline.sources.resolve_package_uri` decides."""
    from importlib.util import find_spec

    package, _, inner = uri[len("pkg://") :].partition("/")
    if not package.isidentifier() or not inner or inner.startswith(("/", "\\")) or ".." in Path(inner).parts:
        return None
    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if len(locations) != 1:
        return None
    root = Path(locations[0])
    path = root / inner
    return path if path.resolve().is_relative_to(root.resolve()) else None


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------


def _digest(basis: Any) -> str:
    return hashlib.sha256(json.dumps(basis, sort_keys=False, default=str).encode()).hexdigest()


def identity(manifest: Manifest) -> str:
    """What a downstream key takes from an upstream step: its key, or (a step that was not
    cached) the content hashes of what it published and its summary."""
    if manifest.cache_key:
        return manifest.cache_key
    outputs = {name: entry.get("sha256") or entry["uri"] for name, entry in sorted(manifest.outputs.items())}
    return _digest({"outputs": outputs, "summary": manifest.summary})


def step_key(
    spec: StepSpec,
    settings: Settings,
    inputs: dict[str, str],
    source: str | None = None,
    *,
    root: Path | None = None,
    resolved: dict | None = None,
) -> str | None:
    """The step's key; ``inputs`` maps each upstream step it needs to its :func:`identity`.
    None when the step cannot be keyed (an input missing, a first step without a source hash)."""
    if any(step not in inputs for step in spec.needs):
        return None
    if not spec.needs and source is None:
        return None
    basis = {
        "format": KEY_FORMAT,
        "step": spec.name,
        "inputs_declared": list(spec.inputs),
        "outputs_declared": list(spec.outputs),
        "code": code_hash(spec.module, root),
        "environment": environment(),
        "settings": settings_subset(settings, spec.settings_read, resolved),
        "inputs": {step: inputs[step] for step in spec.needs},
        "source": source if not spec.needs else None,
    }
    return _digest(basis)


def chain_keys(
    settings: Settings,
    source: str | None,
    specs: tuple[StepSpec, ...] | None = None,
    root: Path | None = None,
) -> dict[str, str | None]:
    """Every step's key for a run in which each step is keyed (or reused): the chain the runner
    follows when nothing is forced."""
    from pipeline import steps

    resolved = settings.redacted()
    keys: dict[str, str | None] = {}
    identities: dict[str, str] = {}
    for spec in specs or steps.STEPS:
        key = step_key(spec, settings, identities, source, root=root, resolved=resolved)
        keys[spec.name] = key
        if key is not None:
            identities[spec.name] = key
    return keys


# --------------------------------------------------------------------------------------------
# the key store (in the artifact store)
# --------------------------------------------------------------------------------------------


def entry_path(store: ArtifactStore, step: str, key: str) -> str:
    return store._path(CACHE_DIR, step, f"{key}.json")


def lookup(store: ArtifactStore, step: str, key: str) -> Manifest | None:
    """The manifest of the run that published ``step``'s outputs under ``key``, when it still
    carries that key and its outputs still exist; else None."""
    data = store.read_bytes(entry_path(store, step, key))
    if data is None:
        return None
    try:
        entry = json.loads(data)
        manifest = store.read_manifest(str(entry["run_id"]), step)
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring the unreadable cache entry %s", store.to_uri(entry_path(store, step, key)))
        return None
    if manifest is None or not manifest.succeeded or manifest.cache_key != key:
        return None
    if not all(store.exists(output["uri"]) for output in manifest.outputs.values()):
        logger.info("cache entry of %s names outputs that are gone: not reused", step)
        return None
    return manifest


def remember(store: ArtifactStore, manifest: Manifest) -> None:
    """Record a step's published outputs under its key (after its manifest, atomically)."""
    if not manifest.cache_key or not manifest.succeeded or manifest.reused_from:
        return
    entry = {"run_id": manifest.run_id, "step": manifest.step, "attempt": manifest.attempt, "at": utcnow()}
    store.write_bytes(entry_path(store, manifest.step, manifest.cache_key), json.dumps(entry).encode())


def reuse(store: ArtifactStore, run_id: str, origin: Manifest, key: str, started_at: str) -> Manifest:
    """Publish, for ``run_id``, a manifest naming ``origin``'s outputs (no copy)."""
    manifest = Manifest(
        run_id=run_id,
        step=origin.step,
        status="succeeded",
        attempt=origin.attempt,
        started_at=started_at,
        finished_at=utcnow(),
        outputs=json.loads(json.dumps(origin.outputs)),
        summary=origin.summary,
        cache_key=key,
        reused_from={"run_id": origin.run_id, "step": origin.step},
    )
    store.publish_manifest(manifest)
    return manifest


def find_reusable(
    store: ArtifactStore,
    settings: Settings,
    spec: StepSpec,
    run_id: str,
    source: str | None = None,
    look: bool = True,
) -> tuple[str | None, Manifest | None]:
    """``(key, origin)`` for ``spec`` in ``run_id``: its key (None: not keyable) and the manifest to
    reuse (None: a miss, or ``look`` False: the key only). A model step is a hit only when every
    model step after it is too."""
    from pipeline import steps

    identities: dict[str, str] = {}
    upstream_origins: set[str | None] = set()  # whose outputs this run's model steps before it are
    for step in spec.needs:
        upstream = store.read_manifest(run_id, step)
        if upstream is None or not upstream.succeeded:
            return None, None
        identities[step] = identity(upstream)
        if steps.get_step(step).kind == "model":
            upstream_origins.add((upstream.reused_from or {}).get("run_id"))
    resolved = settings.redacted()
    key = step_key(spec, settings, identities, source, resolved=resolved)
    if key is None or not look:
        return key, None
    origin = lookup(store, spec.name, key)
    if origin is None or origin.run_id == run_id:
        return key, None
    if spec.kind != "model":
        return key, origin
    if upstream_origins - {origin.run_id}:  # a model step of this run ran, or came from another run
        return key, None
    names = [s.name for s in steps.STEPS]
    chained = {**identities, spec.name: key}
    for later in steps.STEPS[names.index(spec.name) + 1 :]:
        if later.kind != "model":
            continue
        for step in later.needs:
            if step not in chained:
                upstream = store.read_manifest(run_id, step)
                if upstream is None or not upstream.succeeded:
                    return key, None
                chained[step] = identity(upstream)
        later_key = step_key(later, settings, chained, resolved=resolved)
        later_origin = lookup(store, later.name, later_key) if later_key is not None else None
        if later_origin is None or later_origin.run_id != origin.run_id:  # one MLflow run, one version
            logger.info(
                "step %s is cached but %s is not: the model steps run again together", spec.name, later.name
            )
            return key, None
        chained[later.name] = later_key
    return key, origin
