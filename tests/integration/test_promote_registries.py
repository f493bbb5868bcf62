"""`scripts/promote` between two real MLflow servers (each on its own PostgreSQL database and S3
bucket, as two environments are): the approved model is copied, files, lineage and gate record,
into the target registry, and the target overlay names the version THERE that holds the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.services import MlflowServer, PostgresServer, S3Server, mlflow_server, unique

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "promote"
MODEL_FILES = ("artifacts/model.pt", "artifacts/model_spec.json", "artifacts/transformer.json")
MODEL = "penguins"

pytest.importorskip("ruamel.yaml", reason="scripts/promote needs ruamel.yaml (the dev extra)")
pytestmark = pytest.mark.integration


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_of(folder: Path) -> dict[str, str]:
    return {relative: sha256((folder / relative).read_bytes()) for relative in MODEL_FILES}


def manifest_digest(manifest: dict[str, str]) -> str:
    return sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())


@pytest.fixture(scope="module")
def registries(postgres: PostgresServer, s3: S3Server, logs: Path) -> Iterator[dict[str, MlflowServer]]:
    """Two environments: their own database and their own bucket each."""
    with (
        mlflow_server(
            postgres, s3, logs, unique("dev"), f"s3://{s3.create_bucket(unique('dev-'))}/mlflow"
        ) as dev,
        mlflow_server(
            postgres, s3, logs, unique("staging"), f"s3://{s3.create_bucket(unique('stg-'))}/mlflow"
        ) as staging,
    ):
        yield {"dev": dev, "staging": staging}


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith(("AWS_", "MLFLOW_", "PROMOTE_")):
            monkeypatch.delenv(key)
    for key in ("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"):
        monkeypatch.setenv(key, "false")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return dict(os.environ)


def register(
    url: str, tmp: Path, seed: str, champion: bool, gate: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """A model version made the way the pipeline's train and register steps make one: a run with
    params, metrics, lineage tags and artifacts; a logged model of the pipeline's files; a version
    carrying the lineage, the gate record and the files' digests."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(MODEL)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(MODEL)
    lineage = {"data.raw.sha256": sha256(seed.encode()), "code.git_commit": "c0ffee" * 6 + "beef"}
    run = client.create_run(experiment_id, tags={**lineage, "pipeline.run_id": seed})
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("test_macro_f1", 0.91, 0, 0)],
        params=[Param("train.learning_rate", "0.003"), Param("seed", "7")],
    )
    reports = tmp / f"run-{seed}"
    (reports / "validation").mkdir(parents=True)
    (reports / "validation" / "report.json").write_text(json.dumps({"success": True, "seed": seed}))
    (reports / "config.yaml").write_text("data:\n  name: penguins\n")
    client.log_artifacts(run.info.run_id, str(reports))
    model = tmp / f"model-{seed}"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "artifacts" / "model.pt").write_bytes(hashlib.sha512(seed.encode()).digest() * 64)
    (model / "artifacts" / "model_spec.json").write_text(json.dumps({"hidden_sizes": [64, 32], "seed": seed}))
    (model / "artifacts" / "transformer.json").write_text(json.dumps({"columns": ["island"], "seed": seed}))
    manifest = manifest_of(model)
    files = {"model.files": json.dumps(manifest, sort_keys=True, separators=(",", ":"))}
    files["model.files_sha256"] = manifest_digest(manifest)
    logged = client.create_logged_model(
        experiment_id, name="model", source_run_id=run.info.run_id, tags=files
    )
    client.log_model_artifacts(logged.model_id, str(model))
    client.finalize_logged_model(logged.model_id, "READY")
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    version = client.create_model_version(
        MODEL,
        source=f"models:/{logged.model_id}",
        run_id=run.info.run_id,
        model_id=logged.model_id,
        tags={**lineage, **files, **gate},
    )
    if champion:
        client.set_registered_model_alias(MODEL, "champion", version.version)
    return str(version.version), manifest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "k8s" / "envs", tmp_path / "envs")
    shutil.copytree(REPO / "k8s" / "argocd", tmp_path / "argocd")
    return tmp_path


def promote(repo: Path, env: dict[str, str], registries: dict[str, MlflowServer], *args: str):
    dirs = ["--envs-dir", str(repo / "envs"), "--argocd-dir", str(repo / "argocd")]
    return subprocess.run(
        [sys.executable, str(SCRIPT), "dev", "staging", *args, *dirs],
        capture_output=True,
        text=True,
        check=False,
        env={
            **env,
            "PROMOTE_DEV_TRACKING_URI": registries["dev"].url,
            "PROMOTE_STAGING_TRACKING_URI": registries["staging"].url,
        },
    )


def resolve_files(url: str, version: str, dest: Path) -> dict[str, str]:
    """What models:/penguins/<version> holds in that registry: the sha256 of each data file."""
    import mlflow
    from mlflow import MlflowClient

    location = MlflowClient(url).get_model_version_download_uri(MODEL, version)
    local = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dest), tracking_uri=url)
    )
    return manifest_of(local)


def test_promotion_copies_the_approved_model_and_names_it_by_the_targets_version(
    registries, client_env, repo, tmp_path
):
    from mlflow import MlflowClient

    dev, staging = registries["dev"].url, registries["staging"].url
    gate = {"gate.decision": "promoted", "gate.reason": "beat the champion", "gate.score": "0.91"}
    # dev: v1 (an older champion), v2 (the approved one: @champion), v3 (rejected since).
    register(dev, tmp_path, "dev-1", champion=True, gate=gate)
    approved, approved_files = register(dev, tmp_path, "dev-2", True, {**gate, "gate.champion_version": "1"})
    register(dev, tmp_path, "dev-3", champion=False, gate={"gate.decision": "rejected"})
    # staging: its own history, so its numbers mean something else there.
    for seed in ("stg-1", "stg-2", "stg-3", "stg-4"):
        register(staging, tmp_path, seed, champion=False, gate=gate)
    assert approved == "2"

    result = promote(repo, client_env, registries)
    assert result.returncode == 0, result.stderr

    overlay = yaml.safe_load((repo / "envs" / "staging" / "values.yaml").read_text())
    assert overlay["pipeline"]["model"] == {"name": MODEL, "version": "5"}  # staging's number, not dev's
    # What staging's values name resolves, in staging's registry, to the approved bytes.
    assert resolve_files(staging, "5", tmp_path / "resolved") == approved_files
    assert resolve_files(staging, "5", tmp_path / "resolved2") != resolve_files(
        staging, "2", tmp_path / "other"
    )
    # Lineage and gate record came along; a source version number is kept only as provenance.
    target = MlflowClient(staging)
    version = target.get_model_version(MODEL, "5")
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["data.raw.sha256"] == sha256(b"dev-2")
    assert version.tags["model.files_sha256"] == manifest_digest(approved_files)
    assert version.tags["promotion.source.environment"] == "dev"
    assert version.tags["promotion.source.version"] == "2"
    assert "gate.champion_version" not in version.tags
    assert version.tags["promotion.source.gate.champion_version"] == "1"
    logged = target.get_logged_model(version.model_id or version.source.removeprefix("models:/"))
    assert logged.tags["model.files_sha256"] == manifest_digest(approved_files)
    run = target.get_run(version.run_id)
    assert run.data.params == {"train.learning_rate": "0.003", "seed": "7"}
    assert run.data.metrics == {"test_macro_f1": 0.91}
    assert run.data.tags["registry.version"] == "5"
    assert {a.path for a in target.list_artifacts(run.info.run_id)} >= {"config.yaml", "validation"}
    assert "penguins v2 in dev is penguins v5 in the staging registry" in result.stderr
    assert '+    version: "5"' in result.stdout

    # A retry registers nothing new and changes nothing.
    again = promote(repo, client_env, registries)
    assert again.returncode == 0, again.stderr
    assert "nothing to promote" in again.stderr
    assert len(target.search_model_versions(f"name = '{MODEL}'")) == 5


def test_a_model_whose_bytes_changed_is_not_promoted(registries, client_env, repo, tmp_path, s3):
    from mlflow import MlflowClient

    dev, staging = registries["dev"].url, registries["staging"].url
    seed = unique("tampered-")
    register(dev, tmp_path, seed, True, {"gate.decision": "promoted"})
    weights = (tmp_path / f"model-{seed}" / "artifacts" / "model.pt").read_bytes()
    bucket = registries["dev"].artifacts_destination.split("/")[2]
    stored = [k for k in s3.keys(bucket) if k.endswith("artifacts/model.pt")]
    (key,) = [k for k in stored if s3.get(bucket, k) == weights]  # the approved weights, at rest
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"not the approved weights")
    versions = len(MlflowClient(staging).search_model_versions(f"name = '{MODEL}'"))
    before = (repo / "envs" / "staging" / "values.yaml").read_text()

    result = promote(repo, client_env, registries)
    assert result.returncode == 2
    assert "do not match the digests recorded" in result.stderr
    assert (repo / "envs" / "staging" / "values.yaml").read_text() == before
    assert len(MlflowClient(staging).search_model_versions(f"name = '{MODEL}'")) == versions
