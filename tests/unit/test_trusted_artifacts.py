"""Artifacts are data: the training checkpoint and a logged model are loaded by our own code from
data files only, after their recorded digests are checked; nothing stored is unpickled or run."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import modelfiles, names
from pipeline.checkpoint import CHECKPOINT, Checkpointer
from pipeline.model import Training
from pipeline.modelfiles import ModelFilesError
from pipeline.serving import Predictor, load_trusted_predictor
from pipeline.settings import PreprocessSettings, S3Settings, TrainSettings
from pipeline.steps.train import log_model
from pipeline.storage import ArtifactStore
from pipeline.transform import TabularTransformer
from tests.unit.test_model_and_transform import DATA, prepared

RUN_ID = "run-1"
FINGERPRINT = "a" * 64
MLFLOW_RUN_ID = "0123456789abcdef0123456789abcdef"
CFG = TrainSettings(hidden_sizes=[16], embedding_dim_max=4, batch_size=16, max_epochs=8, patience=100)


class Planted:
    """A pickle that, once unpickled, creates ``marker``: what an attacker would plant."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": Planted(marker)}, buffer)  # a real torch file around the payload
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"), S3Settings(), tmp_path / "scratch")


def folder(store: ArtifactStore) -> Path:
    return Path(store.checkpoint_path(RUN_ID, "train"))


def training() -> Training:
    transformer, splits = prepared()
    return Training.create(CFG.model_copy(update={"device": "cpu"}), 3, transformer, splits)


class InterruptedTrainingError(Exception):
    pass


def interrupted_training(store: ArtifactStore, stop_after: int) -> None:
    checkpointer = Checkpointer(store, RUN_ID, "train", FINGERPRINT)
    run = training()

    def on_epoch(epoch, metrics, model, optimizer, generator, state) -> None:
        checkpointer.save(model, optimizer, generator, state, MLFLOW_RUN_ID)
        if epoch == stop_after:
            raise InterruptedTrainingError

    with pytest.raises(InterruptedTrainingError):
        run.fit(CFG, "classification", on_epoch=on_epoch)


# checkpoints ------------------------------------------------------------------------------------


def test_checkpoint_is_json_plus_tensors_and_resumes_training_exactly(store: ArtifactStore) -> None:
    full = training()
    full_state = full.fit(CFG, "classification")

    interrupted_training(store, stop_after=5)
    meta = json.loads((folder(store) / CHECKPOINT).read_text())
    assert meta["fingerprint"] == FINGERPRINT and meta["state"]["epoch"] == 5
    tensors = torch.load(folder(store) / meta["tensors"], weights_only=True)  # plain tensors only
    assert set(tensors) == {"model", "optimizer", "generator", "torch_rng", "best_state"}

    checkpoint = Checkpointer(store, RUN_ID, "train", FINGERPRINT).load()
    assert checkpoint is not None and checkpoint.mlflow_run_id == MLFLOW_RUN_ID
    resumed = training()
    checkpoint.restore(resumed)
    resumed_state = resumed.fit(CFG, "classification", state=checkpoint.state)
    assert json.dumps(resumed_state.history) == json.dumps(full_state.history)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_save_interrupted_before_its_json_leaves_the_previous_checkpoint_whole(
    store: ArtifactStore,
) -> None:
    interrupted_training(store, stop_after=3)
    meta = json.loads((folder(store) / CHECKPOINT).read_text())
    # The next save writes the other tensor file first; a crash right after it:
    other = ({"state.pt", "state.alt.pt"} - {meta["tensors"]}).pop()
    (folder(store) / other).write_bytes(b"half of a newer save")
    checkpoint = Checkpointer(store, RUN_ID, "train", FINGERPRINT).load()
    assert checkpoint is not None and checkpoint.state.epoch == 3


@pytest.mark.parametrize("consistent_json", [False, True], ids=["pickle-alone", "pickle-with-valid-json"])
def test_a_planted_pickle_is_never_unpickled(
    store: ArtifactStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, consistent_json: bool
) -> None:
    marker = tmp_path / "pwned"
    data = planted_bytes(marker)
    target = folder(store)
    target.mkdir(parents=True)
    for name in ("state.pt", "state.alt.pt"):
        (target / name).write_bytes(data)
    if consistent_json:  # everything checks out except what the tensor file holds
        meta = {
            "format": 1,
            "fingerprint": FINGERPRINT,
            "mlflow_run_id": MLFLOW_RUN_ID,
            "tensors": "state.pt",
            "tensors_sha256": hashlib.sha256(data).hexdigest(),
            "state": training().fit(CFG.model_copy(update={"max_epochs": 1}), "classification").counters(),
        }
        (target / CHECKPOINT).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert Checkpointer(store, RUN_ID, "train", FINGERPRINT).load() is None
    assert not marker.exists(), "the planted pickle ran"
    assert not target.exists(), "a refused checkpoint is removed"
    expected = "refused by torch.load(weights_only=True)" if consistent_json else "has no state.json"
    assert expected in caplog.text and "not resuming run run-1" in caplog.text


def test_a_checkpoint_of_other_data_or_settings_is_not_loaded(
    store: ArtifactStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted_training(store, stop_after=2)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    with caplog.at_level(logging.WARNING):
        assert Checkpointer(store, RUN_ID, "train", "b" * 64).load() is None
    assert loads == [], "the tensor file is not even opened when the fingerprint differs"
    assert "fingerprint differs" in caplog.text
    assert not folder(store).exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda meta: "{not json",
        lambda meta: json.dumps({**meta, "format": 99}),
        lambda meta: json.dumps({**meta, "tensors": "../../../elsewhere.pt"}),
        lambda meta: json.dumps({**meta, "tensors_sha256": "0" * 64}),
        lambda meta: json.dumps({**meta, "mlflow_run_id": "not-a-run"}),
        lambda meta: json.dumps({**meta, "state": {**meta["state"], "epoch": "five"}}),
    ],
    ids=["not-json", "format", "path", "digest", "run-id", "counters"],
)
def test_a_damaged_checkpoint_is_ignored(store: ArtifactStore, change) -> None:
    interrupted_training(store, stop_after=2)
    path = folder(store) / CHECKPOINT
    path.write_text(change(json.loads(path.read_text())))
    assert Checkpointer(store, RUN_ID, "train", FINGERPRINT).load() is None
    assert not folder(store).exists()


# model files ------------------------------------------------------------------------------------


def rows() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=8),
            "x2": rng.normal(size=8),
            "c": rng.choice(["a", "b", "c"], 8).astype(object),
        }
    )


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):
    """A tiny model logged exactly as the train step logs it, on an SQLite tracking store."""
    import mlflow
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("tiny", artifact_location=(root / "artifacts").as_uri())

    frame = pd.DataFrame({**rows(), "y": ["pos", "neg"] * 4})
    transformer = TabularTransformer.fit(frame, DATA, PreprocessSettings())
    files_dir = root / "files"
    files_dir.mkdir()
    (files_dir / "transformer.json").write_text(transformer.to_json())
    run = Training.create(CFG.model_copy(update={"device": "cpu"}), 1, transformer, prepared()[1])
    torch.save(run.model.state_dict(), files_dir / "model.pt")
    (files_dir / "model_spec.json").write_text(json.dumps(run.spec.to_dict()))
    files = {
        "transformer": files_dir / "transformer.json",
        "model_spec": files_dir / "model_spec.json",
        "weights": files_dir / "model.pt",
    }
    with mlflow.start_run(experiment_id=experiment) as active:
        info, tags = log_model(mlflow, files, rows(), root / "scratch")
        mlflow.set_tags(tags)
        client.set_logged_model_tags(info.model_id, tags)
    run_tags = client.get_run(active.info.run_id).data.tags
    client.create_registered_model("tiny")
    version = client.create_model_version(
        "tiny",
        source=info.model_uri,
        run_id=active.info.run_id,
        model_id=info.model_id,
        tags={k: run_tags[k] for k in names.MODEL_FILES_TAGS},
    )
    client.set_registered_model_alias("tiny", "champion", version.version)
    yield client, info, files
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def model_dir(client, info) -> Path:
    location = client.get_logged_model(info.model_id).artifact_location
    return Path(location.removeprefix("file://"))


@pytest.fixture
def restore_files(logged):
    """Undo a test's tampering with the logged model's files."""
    client, info, _ = logged
    base = model_dir(client, info)
    saved = {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    yield base
    for path, data in saved.items():
        path.write_bytes(data)


def test_the_trusted_loader_predicts_like_the_files_the_train_step_wrote(logged, tmp_path: Path) -> None:
    client, info, files = logged
    expected = Predictor.from_files(files["transformer"], files["model_spec"], files["weights"]).predict(
        rows()
    )
    for uri in (info.model_uri, "models:/tiny/1", "models:/tiny@champion"):
        predicted = load_trusted_predictor(client, uri, tmp_path).predict(rows())
        pd.testing.assert_frame_equal(predicted, expected)
    assert list(tmp_path.iterdir()) == [], "the downloaded files are not left behind"


def test_tampered_model_code_is_never_run_by_the_trusted_loader(
    logged, restore_files: Path, tmp_path: Path
) -> None:
    client, info, _ = logged
    marker = tmp_path / "pwned"
    hostile = f"open({str(marker)!r}, 'w').close()\n"
    for code_file in ("mlflow_model.py", "code/pipeline/serving.py", "code/pipeline/__init__.py"):
        path = restore_files / code_file
        path.write_text(hostile + path.read_text())
    predictor = load_trusted_predictor(client, "models:/tiny@champion", tmp_path)
    assert not predictor.predict(rows()).empty
    assert not marker.exists(), "code stored with the model ran"
    # The tampering is live: the pyfunc flavour, which trusts the stored code, does run it.
    script = "import mlflow, sys; mlflow.pyfunc.load_model(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", script, info.model_uri],
        check=False,
        capture_output=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": client.tracking_uri},
    )
    assert marker.exists()


@pytest.mark.parametrize("relative", modelfiles.MODEL_FILES)
def test_a_tampered_data_file_fails_its_digest_check_and_is_not_parsed(
    logged, restore_files: Path, tmp_path: Path, relative: str
) -> None:
    client, _, _ = logged
    marker = tmp_path / "pwned"
    (restore_files / relative).write_bytes(planted_bytes(marker))
    with pytest.raises(ModelFilesError, match=rf"tiny v1: {re.escape(relative)} failed its digest check"):
        load_trusted_predictor(client, "models:/tiny/1", tmp_path)
    assert not marker.exists()


def test_a_model_without_or_with_an_altered_digest_record_is_not_loaded(logged, tmp_path: Path) -> None:
    client, _, _ = logged
    version = client.get_model_version("tiny", "1")
    manifest = json.loads(version.tags[names.FILES_TAG])
    try:
        client.set_model_version_tag(
            "tiny",
            "1",
            names.FILES_TAG,
            modelfiles.canonical({**manifest, modelfiles.WEIGHTS: "0" * 64}),
        )
        with pytest.raises(ModelFilesError, match=r"does not match tag model\.files_sha256"):
            load_trusted_predictor(client, "models:/tiny/1", tmp_path)
        client.delete_model_version_tag("tiny", "1", names.DIGEST_TAG)
        with pytest.raises(ModelFilesError, match="tiny v1 has no recorded file digests"):
            load_trusted_predictor(client, "models:/tiny/1", tmp_path)
    finally:
        for key in names.MODEL_FILES_TAGS:
            client.set_model_version_tag("tiny", "1", key, version.tags[key])
    load_trusted_predictor(client, "models:/tiny/1", tmp_path)
