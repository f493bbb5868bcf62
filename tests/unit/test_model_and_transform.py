"""The transform, the split and the training loop: determinism, early stopping, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.errors import BadInputError
from pipeline.model import (
    TabularNet,
    TrainState,
    build_spec,
    fit,
    make_optimizer,
    seed_everything,
    splits_from_frame,
)
from pipeline.settings import DataSettings, PreprocessSettings
from pipeline.steps.preprocess import split_indices
from pipeline.transform import MISSING, UNKNOWN, TabularTransformer

DATA = DataSettings(
    name="toy",
    target="y",
    columns={
        "x1": {"type": "float"},
        "x2": {"type": "float"},
        "c": {"type": "category"},
        "y": {"type": "category", "role": "target"},
    },
)


def toy_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    y = np.where(x1 + (c == "a") > 0.3, "pos", "neg")
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "y": y})


def test_transformer_round_trips_through_json_and_handles_the_unexpected() -> None:
    frame = toy_frame()
    transformer = TabularTransformer.fit(frame, DATA, PreprocessSettings())
    restored = TabularTransformer.from_json(transformer.to_json())
    assert restored == transformer
    odd = pd.DataFrame({"x1": [np.inf, np.nan], "x2": [0.0, 1.0], "c": ["zzz", None], "y": ["pos", "neg"]})
    numeric = restored.transform_numeric(odd)
    assert np.isfinite(numeric).all(), "non-finite and missing numbers are imputed"
    codes = restored.transform_categorical(odd)
    assert codes[:, 0].tolist() == [UNKNOWN, MISSING]
    assert restored.classes == ["neg", "pos"]
    assert restored.encode_target(odd["y"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="never seen"):
        restored.target_for_metrics(pd.Series(["other"]))


def test_transform_is_fitted_on_training_rows_only() -> None:
    frame = toy_frame()
    train = frame.iloc[:100]
    transformer = TabularTransformer.fit(train, DATA, PreprocessSettings())
    assert transformer.mean["x1"] == pytest.approx(train["x1"].mean())
    processed = transformer.processed_frame(train)
    assert processed["num__x1"].mean() == pytest.approx(0, abs=1e-6)


def test_split_is_seeded_stratified_and_disjoint() -> None:
    target = pd.Series(["a"] * 60 + ["b"] * 30 + ["c"] * 10, name="y")
    first = split_indices(target, "classification", 0.2, 0.2, seed=7)
    again = split_indices(target, "classification", 0.2, 0.2, seed=7)
    other = split_indices(target, "classification", 0.2, 0.2, seed=8)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["test"], other["test"])
    assert sorted(np.concatenate(list(first.values())).tolist()) == list(range(100))
    assert target.iloc[first["test"]].value_counts().to_dict() == {"a": 12, "b": 6, "c": 2}
    with pytest.raises(BadInputError, match="fewer than 3 rows"):
        split_indices(pd.Series(["a"] * 10 + ["b"], name="y"), "classification", 0.2, 0.2, seed=1)


def prepared(seed: int = 0):
    frame = toy_frame(seed=seed)
    parts = split_indices(frame["y"], "classification", 0.2, 0.2, seed=seed)
    transformer = TabularTransformer.fit(frame.iloc[parts["train"]], DATA, PreprocessSettings())
    processed = transformer.processed_frame(frame)
    split = np.empty(len(frame), dtype=object)
    for name, index in parts.items():
        split[index] = name
    processed["split"] = split
    return transformer, splits_from_frame(processed, transformer)


def train(
    transformer, splits, epochs: int, state: TrainState | None = None, checkpoint=None, stop_after=None
):
    seed_everything(3)
    model = TabularNet(build_spec(transformer, [16], 0.1, 4))
    optimizer = make_optimizer(model, 1e-2, 0.0)
    generator = torch.Generator().manual_seed(3)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["rng"])
        state = checkpoint["state"]
    saved = {}

    def on_epoch(epoch, metrics, model, optimizer, generator, state):
        if epoch == stop_after:
            import copy

            saved.update(
                model=copy.deepcopy(model.state_dict()),
                optimizer=copy.deepcopy(optimizer.state_dict()),
                generator=generator.get_state(),
                rng=torch.get_rng_state(),
                state=copy.deepcopy(state),
            )
            raise KeyboardInterrupt

    try:
        state = fit(
            model,
            optimizer,
            splits["train"],
            splits["val"],
            task="classification",
            batch_size=16,
            max_epochs=epochs,
            patience=100,
            min_delta=0.0,
            generator=generator,
            state=state,
            on_epoch=on_epoch,
        )
    except KeyboardInterrupt:
        return None, saved
    return state, model


def test_training_learns_and_stops_early() -> None:
    transformer, splits = prepared()
    state, model = train(transformer, splits, epochs=40)
    assert state.history[-1]["val_loss"] < state.history[0]["val_loss"]
    assert state.history[-1]["val_accuracy"] > 0.85
    seed_everything(3)
    model = TabularNet(build_spec(transformer, [16], 0.0, 4))
    optimizer = make_optimizer(model, 1e-2, 0.0)
    short = fit(
        model,
        optimizer,
        splits["train"],
        splits["val"],
        task="classification",
        batch_size=16,
        max_epochs=500,
        patience=3,
        min_delta=10.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert short.stopped_early and short.epoch == 4, (
        "after the first epoch nothing improves by min_delta: stop after patience more"
    )


def test_resuming_from_a_checkpoint_reproduces_uninterrupted_training_exactly() -> None:
    transformer, splits = prepared()
    full_state, full_model = train(transformer, splits, epochs=12)
    _, checkpoint = train(transformer, splits, epochs=12, stop_after=5)
    resumed_state, resumed_model = train(transformer, splits, epochs=12, checkpoint=checkpoint)
    assert json.dumps(resumed_state.history) == json.dumps(full_state.history)
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key


def test_processed_features_written_a_row_group_at_a_time_equal_the_whole_transform(
    tmp_path, monkeypatch
) -> None:
    from pipeline.steps import preprocess

    frame = toy_frame(1_000)
    frame.loc[[3, 500], "x1"] = np.nan
    frame.loc[[7, 999], "c"] = None
    frame["__row_id"] = np.arange(len(frame)) * 2
    split = np.array(["train", "val", "test", "train"] * 250, dtype=object)
    transformer = TabularTransformer.fit(frame.iloc[:600], DATA, PreprocessSettings())
    monkeypatch.setattr(preprocess, "PROCESSED_BATCH_ROWS", 128)
    path = tmp_path / "features.parquet"
    preprocess.write_processed(path, transformer, frame, split)

    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).num_row_groups == 8  # ceil(1000 / 128)
    whole = transformer.processed_frame(frame)
    whole.insert(0, "split", split.astype(str))
    whole.insert(0, "row_id", frame["__row_id"].to_numpy())
    pd.testing.assert_frame_equal(pd.read_parquet(path), whole.reset_index(drop=True))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_splits_built_a_chunk_at_a_time_equal_the_whole_frames(task: str) -> None:
    """What the train step does with a feature-set version it reads a chunk at a time: the same
    tensors (values, dtypes, order), with the arrays allocated once from the announced sizes or
    joined at the end; a split that holds other row counts than announced is refused."""
    from pipeline.splits import splits_from_chunks

    frame = toy_frame(500)
    data = DATA
    if task == "regression":
        frame["y"] = frame["x1"] * 2 + 1
        columns = {**DATA.model_dump()["columns"], "y": {"type": "float", "role": "target"}}
        data = DataSettings(name="toy", target="y", task="regression", columns=columns)
    transformer = TabularTransformer.fit(frame, data, PreprocessSettings())
    processed = transformer.processed_frame(frame)
    processed["split"] = np.random.default_rng(1).choice(
        ["train", "val", "test"], len(frame), p=[0.6, 0.2, 0.2]
    )
    whole = splits_from_frame(processed, transformer)
    sizes = {name: len(split) for name, split in whole.items()}
    for size in (1, 7, 499, 10_000):
        chunks = [processed.iloc[i : i + size] for i in range(0, len(processed), size)]
        for announced in (None, sizes):
            got = splits_from_chunks(iter(chunks), transformer, announced)
            for name in whole:
                for field in ("x_num", "x_cat", "y"):
                    expected, actual = getattr(whole[name], field), getattr(got[name], field)
                    assert actual.dtype == expected.dtype and torch.equal(actual, expected), (
                        size,
                        name,
                        field,
                    )
    with pytest.raises(ValueError, match="other row counts than announced"):
        splits_from_chunks([processed], transformer, {**sizes, "val": sizes["val"] + 1})
    with pytest.raises(ValueError, match="more than the"):
        splits_from_chunks([processed], transformer, {**sizes, "test": sizes["test"] - 1})
