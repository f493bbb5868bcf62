"""The train step's tensors from a feature-set version read a chunk of rows at a time: each
split's arrays are allocated once (from the sizes the preprocess step announced) and filled in
place, so the version is never a DataFrame and the tensors are the only whole copy of it. The
rows come from the preprocess step's ``features.parquet`` (a row group at a time) when that file
is the version's content (its SHA-256 is the version's content hash), else from the store."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.model import Split

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PARQUET_BATCH_ROWS = 262_144


def version_file(path: Path, features: dict) -> Path | None:
    """``path`` (a local copy of the preprocess step's ``features.parquet``) when its SHA-256 is
    the content hash of the version ``features`` names, so it holds that version's rows; else
    None (the store is read)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() == features.get("content_hash"):
        return path
    logger.warning("%s is not the rows of feature set version %s: reading the store", path, features)
    return None


def read_splits(
    feature_store_url: str,
    features: dict,
    transformer,
    sizes: dict[str, int] | None = None,
    processed: Path | None = None,
):
    """The tensors of the feature-set version the features step's summary ``features`` names:
    from ``processed`` (the preprocess step's ``features.parquet``, the file whose SHA-256 is the
    version's content hash: the same rows) a row group at a time, else from the store a chunk at a
    time (:func:`splits_from_chunks`)."""
    from pipeline.featurestore import FeatureStore

    if processed is not None:
        import pyarrow.parquet as pq

        with pq.ParquetFile(processed) as parquet:
            chunks = (batch.to_pandas() for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS))
            return splits_from_chunks(chunks, transformer, sizes)
    store = FeatureStore(feature_store_url)
    try:
        chunks = store.read_chunks(features["feature_set"], int(features["feature_set_version"]))
        return splits_from_chunks(chunks, transformer, sizes)
    finally:
        store.close()


def splits_from_chunks(chunks, transformer, sizes: dict[str, int] | None = None) -> dict[str, Split]:
    """:func:`splits_from_frame` of the frame ``chunks`` make, a chunk at a time: only the
    tensors are ever whole. ``sizes`` (each split's rows, known beforehand): each split's arrays
    are allocated once and filled in place (else the chunks' arrays are joined at the end)."""
    num_cols = [f"num__{c}" for c in transformer.numeric]
    cat_cols = [f"cat__{c}" for c in transformer.categorical]
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {name: [] for name in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)
    arrays = None
    for frame in chunks:
        for name in SPLITS:
            part = frame[frame["split"] == name]
            if not len(part) and (sizes is not None or parts[name]):
                continue
            x_num = part[num_cols].to_numpy(dtype=np.float32).reshape(len(part), len(num_cols))
            x_cat = part[cat_cols].to_numpy(dtype=np.int64).reshape(len(part), len(cat_cols))
            y = part["target"].to_numpy()
            if sizes is None:
                parts[name].append((x_num, x_cat, y))
                continue
            if arrays is None:
                arrays = {
                    n: (
                        np.empty((sizes[n], len(num_cols)), np.float32),
                        np.empty((sizes[n], len(cat_cols)), np.int64),
                        np.empty(sizes[n], y.dtype),
                    )
                    for n in SPLITS
                }
            start, end = filled[name], filled[name] + len(part)
            if end > sizes[name]:
                raise ValueError(f"the {name} split holds more than the {sizes[name]} rows announced")
            for target, values in zip(arrays[name], (x_num, x_cat, y), strict=True):
                target[start:end] = values
            filled[name] = end
        del frame
    if sizes is not None:
        short = {n: (filled[n], sizes[n]) for n in SPLITS if filled[n] != sizes[n]}
        if short or arrays is None:
            raise ValueError(f"the splits hold other row counts than announced (read, announced): {short}")
        return {n: Split.from_owned(*arrays[n], transformer.task) for n in SPLITS}
    return {
        name: Split.from_arrays(
            *(np.concatenate(column) for column in zip(*parts[name], strict=True)), transformer.task
        )
        for name in SPLITS
    }
