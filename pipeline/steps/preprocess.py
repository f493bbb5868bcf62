"""Step 3, preprocess: de-duplicate, split (seeded, stratified for classification), check the
features for target leakage on the training split (:mod:`pipeline.leakage`), fit the transform on
the training split only, and save it with the processed data.

A leaky feature stops the step with the bad-input exit code before anything is written; the
check's evidence is in the step summary (``leakage``) either way, and the train step records it
on the MLflow run.

Outputs:
* ``features.parquet`` — model-ready columns (``num__*``, ``cat__*``, ``target``), ``split`` and
  ``row_id`` (the row's position in the raw snapshot), transformed and written a row group at a
  time (:data:`PROCESSED_BATCH_ROWS` rows each);
* ``test_raw.parquet`` — the raw test rows, the frozen snapshot both a new model and the current
  champion are scored on;
* ``transformer.json`` — the fitted transform, applied unchanged at inference.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipeline.context import StepContext, StepResult
from pipeline.errors import BadInputError
from pipeline.findings import duplicated_rows
from pipeline.leakage import check_leakage
from pipeline.preprocess_batches import Prepared
from pipeline.tabular import read_table_file
from pipeline.transform import TabularTransformer

logger = logging.getLogger(__name__)

# Rows transformed and written per Parquet row group: the model-ready copy of the table is never
# held whole, only one batch of it.
PROCESSED_BATCH_ROWS = 262_144


def split_indices(
    target, task: str, test_fraction: float, val_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Seeded train/validation/test split, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(target))
    stratify = target if task == "classification" else None
    if stratify is not None:
        counts = stratify.value_counts()
        rare = counts[counts < 3]
        if len(rare):
            raise BadInputError(
                f"column {target.name!r}: class(es) {list(map(str, rare.index))} have fewer than 3 rows "
                "(rule: a stratified train/validation/test split needs at least 3 rows per class)"
            )
    try:
        rest, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=stratify)
        rest_stratify = stratify.iloc[rest] if stratify is not None else None
        train, val = train_test_split(
            rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=rest_stratify
        )
    except ValueError as exc:
        raise BadInputError(f"cannot split {len(index)} rows into train/validation/test: {exc}") from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    ingest = ctx.upstream("ingest")
    ctx.upstream("validate")  # refuses to run unless validation succeeded
    raw_path = ctx.input_path("ingest", "raw")
    fmt, csv, batch_rows = ingest.summary["format"], settings.data.source.csv, settings.preprocess.batch_rows
    if int(ingest.summary["rows"]) > batch_rows:  # a batch of rows at a time, with the same outputs
        from pipeline.preprocess_batches import preprocess_batches

        prepared = preprocess_batches(raw_path, fmt, csv, settings, ctx.staging, ctx.scratch, batch_rows)
    else:
        prepared = preprocess_whole(raw_path, fmt, csv, settings, ctx.staging)
    transformer = prepared.transformer
    (ctx.staging / "transformer.json").write_text(transformer.to_json())
    summary = {
        "rows": prepared.rows,
        "rows_per_split": dict(prepared.splits),
        "dropped_missing_target": prepared.dropped_target,
        "dropped_duplicates": prepared.dropped_duplicates,
        "numeric_features": transformer.numeric,
        "categorical_features": transformer.categorical,
        "classes": transformer.classes,
        "leakage": prepared.leakage,
    }
    logger.info(
        "preprocessed %d rows (train %d, val %d, test %d); dropped %d duplicates, %d without target",
        prepared.rows,
        prepared.splits["train"],
        prepared.splits["val"],
        prepared.splits["test"],
        prepared.dropped_duplicates,
        prepared.dropped_target,
    )
    return StepResult(
        outputs={
            "features": "features.parquet",
            "test_raw": "test_raw.parquet",
            "transformer": "transformer.json",
        },
        summary=summary,
    )


def preprocess_whole(raw_path, fmt: str, csv, settings, staging) -> Prepared:
    """The step on the whole table, held in memory: ``features.parquet`` and ``test_raw.parquet``
    written into ``staging``; the fitted transform and the figures returned."""
    data = settings.data
    label = f"{data.source.uri} (snapshot {raw_path.name})"
    raw = read_table_file(raw_path, str(raw_path), fmt, csv)
    raw = raw.reset_index(drop=True)
    frame = raw.copy(deep=False)
    frame["__row_id"] = np.arange(len(frame))

    columns = [*data.feature_columns(), data.target]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BadInputError(f"{raw_path.name}: columns {missing} are declared in data.columns but absent")
    frame = frame[[*columns, "__row_id"]]
    # Each filter copies the table only when it drops rows (what a large table costs in memory).
    rows_in = len(frame)
    labelled = frame[data.target].notna().to_numpy()
    if not labelled.all():
        frame = frame[labelled]
    dropped_target = rows_in - len(frame)
    dropped_duplicates = 0
    if settings.preprocess.deduplicate:
        repeated = duplicated_rows(frame[columns])  # = drop_duplicates(subset=columns, keep="first")
        if repeated.any():
            frame = frame[~repeated]
        dropped_duplicates = int(repeated.sum())
    frame = frame.reset_index(drop=True)
    if len(frame) < 3:
        raise BadInputError(f"{raw_path.name}: only {len(frame)} usable rows left after cleaning")

    splits = split_indices(
        frame[data.target],
        data.task,
        settings.preprocess.test_fraction,
        settings.preprocess.val_fraction,
        settings.seed,
    )
    leakage = leakage_check(raw, frame.iloc[splits["train"]], settings, label)
    transformer = TabularTransformer.fit(frame.iloc[splits["train"]], data, settings.preprocess)
    split = np.empty(len(frame), dtype=object)
    for name, idx in splits.items():
        split[idx] = name
    write_processed(staging / "features.parquet", transformer, frame, split)
    test_raw = frame.iloc[splits["test"]].rename(columns={"__row_id": "row_id"})
    test_raw.to_parquet(staging / "test_raw.parquet", index=False)
    return Prepared(
        rows=len(frame),
        splits={k: len(v) for k, v in splits.items()},
        dropped_target=dropped_target,
        dropped_duplicates=dropped_duplicates,
        transformer=transformer,
        leakage=leakage,
    )


class ProcessedWriter:
    """``features.parquet`` written a batch of rows at a time, one Parquet row group each:
    ``row_id``, ``split``, then the model-ready columns. The values are those of transforming the
    whole frame at once (the transform is row by row once fitted)."""

    def __init__(self, path, transformer: TabularTransformer):
        self.path, self.transformer, self.writer = path, transformer, None

    def __enter__(self) -> ProcessedWriter:
        return self

    def write(self, part, split: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        processed = self.transformer.processed_frame(part)
        processed.insert(0, "split", split.astype(str))
        processed.insert(0, "row_id", part["__row_id"].to_numpy())
        table = pa.Table.from_pandas(processed, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()


def write_processed(path, transformer: TabularTransformer, frame, split: np.ndarray) -> None:
    """Transform ``frame`` a batch at a time (:data:`PROCESSED_BATCH_ROWS` rows) into
    ``features.parquet``; an empty frame writes its schema."""
    with ProcessedWriter(path, transformer) as writer:
        for start in range(0, max(len(frame), 1), PROCESSED_BATCH_ROWS):
            part = frame.iloc[start : start + PROCESSED_BATCH_ROWS]
            writer.write(part, split[start : start + PROCESSED_BATCH_ROWS])


def leakage_check(raw, train, settings, label: str) -> dict[str, Any]:
    """Run the leakage check on the training rows: the declared features, and (for a warning)
    the first columns of the raw snapshot outside the contract. Returns its summary."""
    data = settings.data
    undeclared = [c for c in raw.columns if c not in data.columns]
    checked = undeclared[: data.leakage.max_undeclared_columns]
    rows = train[[*data.feature_columns(), data.target]].reset_index(drop=True)
    if checked:
        extra = raw.iloc[train["__row_id"].to_numpy()][checked].reset_index(drop=True)
        rows = rows.join(extra)
    return leakage_report(rows, settings, label, undeclared)


def leakage_report(rows, settings, label: str, undeclared: list[str]) -> dict[str, Any]:
    """The leakage check of ``rows`` (training rows: the features, the target and the undeclared
    columns checked), as the step summary records it."""
    return check_leakage(rows, settings.data, label, settings.seed, undeclared=undeclared).summary()


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    splits = summary.get("rows_per_split", {})
    text = f"train {splits.get('train')} / val {splits.get('val')} / test {splits.get('test')}"
    leakage = summary.get("leakage") or {}
    if leakage.get("status") in ("passed", "warned"):
        text += f"; leakage check {leakage['status']} (highest score {leakage.get('max_score')})"
    return text
