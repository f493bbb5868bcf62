"""The data files a logged model is made of, and the digests that let the pipeline trust them.

The train step logs each model as an MLflow pyfunc, so that a person who chooses to trust it can
``mlflow.pyfunc.load_model`` it. The pipeline itself never loads a model that way: that executes
the ``mlflow_model.py`` and the code stored with the model, which anyone able to write to the
artifact store or the registry could have replaced. Instead it downloads only the three data
files below, checks each one against the sha256 recorded when the model was trained, and only
then parses them with its own installed code (JSON, and ``torch.load(weights_only=True)``).

What is recorded, at train time, from the files the train step wrote (tags on the MLflow run and
on the logged model, copied onto the model version at registration):

* ``model.files``: the manifest, a compact JSON object ``{relative path: sha256}`` with sorted keys;
* ``model.files_sha256``: the sha256 of that manifest text, one fingerprint for the whole set.

Files are downloaded from the model's own artifact location; the relative paths are this
module's constants, never read from the artifacts (``MLmodel``) or from a tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import BadInputError, ConfigError
from pipeline.names import DIGEST_TAG, FILES_TAG
from pipeline.storage import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

WEIGHTS = "artifacts/model.pt"
MODEL_SPEC = "artifacts/model_spec.json"
TRANSFORMER = "artifacts/transformer.json"
MODEL_FILES = (WEIGHTS, MODEL_SPEC, TRANSFORMER)
# The pyfunc artifact name (train.log_model) of each file.
ARTIFACT_NAMES = {"weights": WEIGHTS, "model_spec": MODEL_SPEC, "transformer": TRANSFORMER}


_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w-]+)$")
_LOGGED_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)$")


class ModelFilesError(BadInputError):
    """A model's files are not the ones recorded when it was trained, or no record exists."""


def canonical(manifest: Mapping[str, str]) -> str:
    return json.dumps(dict(manifest), sort_keys=True, separators=(",", ":"))


def manifest_digest(manifest: Mapping[str, str]) -> str:
    return hashlib.sha256(canonical(manifest).encode()).hexdigest()


def files_tags(files: Mapping[str, Path]) -> dict[str, str]:
    """The tags to record for the local files ``{relative path: file}`` of a model being logged."""
    if set(files) != set(MODEL_FILES):
        raise ValueError(f"a model is made of {sorted(MODEL_FILES)}, not {sorted(files)}")
    manifest = {relative: sha256_file(path) for relative, path in files.items()}
    return {FILES_TAG: canonical(manifest), DIGEST_TAG: manifest_digest(manifest)}


@dataclass(frozen=True)
class ModelRef:
    """Where a model's files live and what was recorded about them."""

    label: str  # for messages: "penguins v3", "logged model m-..."
    location: str  # the artifact URI the model's files are under
    tags: dict[str, str]


def resolve(client: MlflowClient, model_uri: str) -> ModelRef:
    """``models:/<name>/<version>``, ``models:/<name>@<alias>`` or ``models:/<model id>``."""
    if match := _VERSION_URI.match(model_uri) or _ALIAS_URI.match(model_uri):
        name = match["name"]
        if "alias" in match.groupdict():
            version = client.get_model_version_by_alias(name, match["alias"])
        else:
            version = client.get_model_version(name, match["version"])
        return ModelRef(
            label=f"{name} v{version.version}",
            location=client.get_model_version_download_uri(name, version.version),
            tags=dict(version.tags),
        )
    if match := _LOGGED_URI.match(model_uri):
        model = client.get_logged_model(match["model_id"])
        return ModelRef(f"logged model {model.model_id}", model.artifact_location, dict(model.tags))
    raise ConfigError(
        f"cannot load model {model_uri!r}: use models:/<name>/<version>, models:/<name>@<alias> "
        "or models:/<model id>"
    )


def expected_manifest(ref: ModelRef) -> dict[str, str]:
    """The recorded ``{relative path: sha256}``, after checking the record is whole and consistent."""
    manifest_text, digest = ref.tags.get(FILES_TAG), ref.tags.get(DIGEST_TAG)
    if not manifest_text or not digest:
        raise ModelFilesError(
            f"{ref.label} has no recorded file digests (tags {FILES_TAG}, {DIGEST_TAG}): it was logged "
            "before the pipeline recorded them, or the tags were removed; its files are not loaded"
        )
    try:
        manifest = json.loads(manifest_text)
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict) or manifest_digest(manifest) != digest:
        raise ModelFilesError(
            f"{ref.label}: tag {FILES_TAG} does not match tag {DIGEST_TAG} (sha256 of the manifest); "
            "the record was changed, so its files are not loaded"
        )
    if set(manifest) != set(MODEL_FILES):
        raise ModelFilesError(
            f"{ref.label}: tag {FILES_TAG} records {sorted(manifest)}, but a model of this pipeline is "
            f"made of {sorted(MODEL_FILES)}; its files are not loaded"
        )
    return manifest


def fetch_verified(client: MlflowClient, model_uri: str, dest: Path) -> dict[str, Path]:
    """Download the data files of a model into ``dest`` and check every one against its digest.

    Returns ``{relative path: local file}``; raises :class:`ModelFilesError` naming the model and
    the file on the first mismatch. Nothing is parsed here, and nothing else is downloaded.
    """
    import mlflow

    ref = resolve(client, model_uri)
    manifest = expected_manifest(ref)
    out: dict[str, Path] = {}
    for relative in MODEL_FILES:
        target = dest / Path(relative).parent
        target.mkdir(parents=True, exist_ok=True)
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{ref.location.rstrip('/')}/{relative}",
                dst_path=str(target),
                tracking_uri=client.tracking_uri,
            )
        )
        found = sha256_file(local)
        if found != manifest[relative]:
            raise ModelFilesError(
                f"{ref.label}: {relative} failed its digest check: its sha256 is {found[:16]}…, the "
                f"digest recorded when the model was trained (tag {FILES_TAG}) is "
                f"{manifest[relative][:16]}…; the file was changed after training and is not loaded"
            )
        out[relative] = local
    logger.info("%s: %d files match digest %s", ref.label, len(out), ref.tags[DIGEST_TAG][:16])
    return out
