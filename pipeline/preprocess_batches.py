"""Step 3 on a snapshot of more than ``preprocess.batch_rows`` rows, a batch of rows at a time: the
outputs :mod:`pipeline.steps.preprocess` writes for the whole table (the same rows, splits, fitted
transform, leakage check and files), holding a batch of rows, one column of the training split and
16 bytes a row, never the table.

1. One pass over the snapshot spills the rows with a target (their model columns, their row ids
   and the undeclared columns the leakage check reads) to a Parquet file in the step's scratch
   folder, with the snapshot's own Arrow types, and keeps a 128-bit hash of each row over the model
   columns (:mod:`pipeline.contract_evidence`): a row repeating an earlier one is dropped, the first
   kept, as ``drop_duplicates`` does.
2. The split is drawn from the target column alone, the same seeded, stratified draw.
3. The transform is fitted one column at a time (:meth:`TabularTransformer.fit_columns`): each
   column of the training rows is read from the spill, the same values in the same order as the
   whole table's, so the same medians, means, deviations, vocabularies and classes.
4. The leakage check scores the rows pandas would sample from the training split (the same seeded
   draw of ``data.leakage.max_rows`` positions), read from the spill column by column.
5. A last pass over the spill transforms a row group at a time into ``features.parquet`` and
   writes the test rows to ``test_raw.parquet``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.batches import table_batches, to_frame
from pipeline.contract_evidence import RowHashes
from pipeline.errors import BadInputError
from pipeline.transform import TabularTransformer

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import CsvOptions, Settings

logger = logging.getLogger(__name__)

ROW_ID = "__row_id"
SPLIT = "__split"
SPLITS = ("train", "val", "test")


@dataclass
class Prepared:
    """What the preprocess step's summary reports, however the table was read."""

    rows: int
    splits: dict[str, int]
    dropped_target: int
    dropped_duplicates: int
    transformer: TabularTransformer
    leakage: dict[str, Any]


class Spill:
    """The labelled rows of the snapshot in a Parquet file of the scratch folder, read back as the
    whole read's DataFrame would hold them (one column, some rows, or a row group at a time)."""

    def __init__(self, path: Path, widen: dict[str, str], names: list[str], rows: int):
        self.path, self.widen, self.names, self.rows = path, widen, names, rows

    def column(self, name: str, rows: np.ndarray | None = None) -> pd.Series:
        """Column ``name`` of the spilled rows (``rows``: those positions, in that order)."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.path, columns=[name])
        if rows is not None:
            table = table.take(rows)
        series = to_frame(table, self.widen)[name]
        del table
        return series

    def frames(self, columns: list[str]):
        """The spilled rows, a row group at a time: (position of the first row, frame)."""
        import pyarrow.parquet as pq

        offset = 0
        with pq.ParquetFile(self.path) as parquet:
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=columns)
                yield offset, to_frame(table, self.widen)
                offset += table.num_rows


def preprocess_batches(
    raw_path: Path,
    fmt: str,
    csv: CsvOptions,
    settings: Settings,
    staging: Path,
    scratch: Path,
    batch_rows: int,
) -> Prepared:
    """Write ``features.parquet``, ``test_raw.parquet`` and ``transformer.json`` into ``staging``
    as the whole-table preprocess would, a batch of rows at a time."""
    from pipeline.steps.preprocess import leakage_report, split_indices

    data, options = settings.data, settings.preprocess
    columns = [*data.feature_columns(), data.target]
    source = table_batches(raw_path, str(raw_path), fmt, csv, batch_rows)
    names = list(source.names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise BadInputError(f"{raw_path.name}: columns {missing} are declared in data.columns but absent")
    undeclared = [c for c in names if c not in data.columns]
    checked = undeclared[: data.leakage.max_undeclared_columns]
    spilled = [*columns, *checked]
    dedup = options.deduplicate
    spill, total, hashes = spill_labelled(
        source, scratch / "labelled.parquet", spilled, columns, data.target, dedup
    )
    labelled = spill.rows
    kept = np.ones(labelled, dtype=bool)
    if hashes is not None:
        _, _, repeat, _ = hashes.groups()
        kept = ~repeat
        del repeat
    dropped_target, dropped_duplicates = total - labelled, int((~kept).sum())
    positions = np.flatnonzero(kept)  # the kept rows' positions in the spill
    del kept
    if len(positions) < 3:
        raise BadInputError(f"{raw_path.name}: only {len(positions)} usable rows left after cleaning")
    target = spill.column(data.target, positions).reset_index(drop=True)
    splits = split_indices(target, data.task, options.test_fraction, options.val_fraction, settings.seed)
    del target
    train = positions[splits["train"]]
    transformer = TabularTransformer.fit_columns(lambda name: spill.column(name, train), data, options)
    label = f"{data.source.uri} (snapshot {raw_path.name})"
    leakage = leakage_report(
        leakage_rows(spill, train, columns, checked, settings), settings, label, undeclared
    )
    split = np.empty(len(positions), dtype=np.int8)
    for code, name in enumerate(SPLITS):
        split[splits[name]] = code
    write_outputs(spill, staging, transformer, positions, split, columns)
    spill.path.unlink()
    return Prepared(
        rows=len(positions),
        splits={name: len(splits[name]) for name in SPLITS},
        dropped_target=dropped_target,
        dropped_duplicates=dropped_duplicates,
        transformer=transformer,
        leakage=leakage,
    )


def spill_labelled(
    source, path: Path, spilled: list[str], columns: list[str], target: str, deduplicate: bool
):
    """The first pass: the rows with a target, their ``spilled`` columns and row id, to ``path``;
    the snapshot's row count, and the row hashes over ``columns`` (None: no de-duplication)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    hashes = RowHashes(columns) if deduplicate else None
    writer, total, rows = None, 0, 0
    try:
        for table in source.batches(spilled):
            labelled = pc.invert(pc.is_null(table.column(target), nan_is_null=True))
            ids = pa.array(np.arange(total, total + table.num_rows, dtype=np.int64))
            total += table.num_rows
            part = table.append_column(spill_id(spilled), ids).filter(labelled)
            if hashes is not None and part.num_rows:
                hashes.add(to_frame(part.select(columns), source.widen))
            if writer is None:
                writer = pq.ParquetWriter(path, part.schema)
            if part.num_rows:  # (an empty row group reads back without a schema)
                writer.write_table(part)
            rows += part.num_rows
    finally:
        if writer is not None:
            writer.close()
    return Spill(path, source.widen, spilled, rows), total, hashes


def spill_id(names: list[str]) -> str:
    """The spill's row-id column: ``__row_id``, or a name no column of the snapshot has."""
    name = ROW_ID
    while name in names:
        name = "_" + name
    return name


def leakage_rows(spill: Spill, train: np.ndarray, columns: list[str], checked: list[str], settings: Settings):
    """The training rows the leakage check scores, as it draws them from the whole split:
    ``DataFrame.sample(n=max_rows, random_state=seed)`` of a larger split (the same positions,
    in the same order, labelled by position), every row of a smaller one."""
    import pandas as pd

    limit = settings.data.leakage.max_rows
    sampled = len(train) > limit
    picked = (
        np.random.RandomState(settings.seed).choice(len(train), size=limit, replace=False)
        if sampled
        else np.arange(len(train))
    )
    rows = pd.DataFrame({name: spill.column(name, train[picked]) for name in [*columns, *checked]})
    if sampled:
        rows.index = pd.Index(picked)
    return rows


def write_outputs(spill: Spill, staging: Path, transformer, positions, split, columns) -> None:
    """The last pass: ``features.parquet`` (row groups of the whole-table write's size) and
    ``test_raw.parquet``, from the kept rows of each row group of the spill."""
    import pandas as pd

    from pipeline.steps.preprocess import PROCESSED_BATCH_ROWS, ProcessedWriter

    names = np.array(SPLITS, dtype=object)
    with (
        ProcessedWriter(staging / "features.parquet", transformer) as features,
        TestRows(staging / "test_raw.parquet", spill) as test,
    ):
        pending: list[pd.DataFrame] = []
        held = 0
        internal = spill_id(spill.names)
        for offset, frame in spill.frames([*columns, internal]):
            frame = frame.rename(columns={internal: ROW_ID})
            lo, hi = np.searchsorted(positions, [offset, offset + len(frame)])
            if hi == lo:
                continue
            part = frame.iloc[positions[lo:hi] - offset].reset_index(drop=True)
            labels = names[split[lo:hi]]
            test.write(part[labels == "test"])
            pending.append(part.assign(**{SPLIT: labels}))
            held += len(part)
            while held >= PROCESSED_BATCH_ROWS:
                chunk = pd.concat(pending, ignore_index=True)
                head = chunk.iloc[:PROCESSED_BATCH_ROWS]
                features.write(head, head[SPLIT].to_numpy())
                pending, held = [chunk.iloc[PROCESSED_BATCH_ROWS:]], held - PROCESSED_BATCH_ROWS
        if held:
            chunk = pd.concat(pending, ignore_index=True)
            features.write(chunk, chunk[SPLIT].to_numpy())


class TestRows:
    """``test_raw.parquet`` written a batch at a time: the columns, types and values of the
    whole-table ``to_parquet`` of the test rows (``__row_id`` as ``row_id``). A column a batch
    holds only missing values of takes the spill's type, not Arrow's null type."""

    def __init__(self, path: Path, spill: Spill):
        self.path, self.spill, self.writer, self.schema = path, spill, None, None

    def __enter__(self) -> TestRows:
        return self

    def write(self, rows: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(rows):
            return
        rows = rows.rename(columns={ROW_ID: "row_id"})
        if self.schema is None:
            inferred = pa.Schema.from_pandas(rows, preserve_index=False)
            spilled = pq.read_schema(self.spill.path)
            fields = [
                field.with_type(spilled.field(field.name).type)
                if pa.types.is_null(field.type) and field.name in spilled.names
                else field
                for field in inferred
            ]
            self.schema = pa.schema(fields, metadata=inferred.metadata)
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(pa.Table.from_pandas(rows, schema=self.schema, preserve_index=False))

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()
