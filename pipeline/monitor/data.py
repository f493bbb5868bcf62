"""The two sides the monitor compares.

* The reference: the champion's own training split, fetched through the DVC hashes its MLflow run
  recorded (``lineage/dvc/raw.dvc`` and ``processed.dvc``, as ``pipeline fetch-data`` does): the raw
  snapshot's rows whose ``row_id`` the processed features put in the ``train`` split, in raw
  (unscaled) form, the form the server receives. Its predictions are the champion's own on those
  rows, by our trusted loader (digests checked).
* The current window: the prediction log's rows of the configured model between ``since`` and
  ``until`` (newest ``monitor.max_rows``), with the late labels joined by request id and row; or a
  batch file read through the configured source reader (the same checks as ingest), scored by the
  champion.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.errors import BadInputError, RetryableError

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

logger = logging.getLogger(__name__)

LABEL = "__label__"  # the joined late label of a logged prediction


@dataclass
class Window:
    frame: pd.DataFrame  # input columns, "prediction", probability_* outputs, LABEL where known
    source: str  # "prediction_log" | the file
    since: str | None
    until: str | None

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "since": self.since, "until": self.until, "rows": len(self.frame)}


def reference_frame(settings: Settings, version, workdir: Path) -> pd.DataFrame:
    """The champion's training split in raw form (see the module docstring)."""
    from pipeline.lineage import fetch_version_data
    from pipeline.tabular import detect_format, read_table_file

    try:
        raw_path = fetch_version_data(settings, version, workdir / "raw", "raw")
        processed_path = fetch_version_data(settings, version, workdir / "processed", "processed")
    except (BadInputError, RetryableError):
        raise
    except Exception as exc:  # no lineage artifacts on the run: a model the pipeline did not train
        raise BadInputError(
            f"{version.name} v{version.version}: its reference data cannot be fetched through the DVC "
            f"hashes its run {version.run_id} recorded: {type(exc).__name__}: {exc}"
        ) from None
    raw = read_table_file(
        raw_path, str(raw_path.name), detect_format(raw_path.name), settings.data.source.csv
    )
    split = pd.read_parquet(processed_path, columns=["row_id", "split"])
    rows = split.loc[split["split"] == "train", "row_id"].to_numpy()
    return raw.reset_index(drop=True).iloc[rows].reset_index(drop=True)


def window_from_log(settings: Settings, since: datetime, until: datetime, model_name: str) -> Window:
    """The prediction log's rows of ``model_name`` logged in ``[since, until)``, labels joined
    (the bounds in any zone: they are compared in UTC, as the log's times are stored)."""
    import sqlalchemy as sa

    from pipeline.serve.predlog import LABEL_OF_ROW, create_engine, feedback_table, log_table, migrate, utc

    since, until = utc(since), utc(until)

    engine = create_engine(settings.resolved_feature_store_url)
    try:
        query = (
            sa.select(log_table.c.inputs, log_table.c.outputs, feedback_table.c.label)
            .select_from(
                log_table.outerjoin(
                    feedback_table,
                    LABEL_OF_ROW,
                )
            )
            .where(log_table.c.model_name == model_name)
            .where(log_table.c.logged_at >= since)
            .where(log_table.c.logged_at < until)
            .order_by(log_table.c.logged_at.desc())
            .limit(settings.monitor.max_rows)
        )
        migrate(engine)  # the tables `pipeline serve` creates, empty when nothing was served yet
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise RetryableError(f"the prediction log could not be read: {reason}") from None
    finally:
        engine.dispose()
    records = []
    for inputs, outputs, label in rows:
        record = {**json.loads(inputs), **json.loads(outputs)}
        record[LABEL] = json.loads(label) if label is not None else None
        records.append(record)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=[LABEL])
    return Window(frame, "prediction_log", since.isoformat(), until.isoformat())


def window_from_file(settings: Settings, path: Path, predictor) -> Window:
    """A batch file read through the configured source reader, scored by the champion. A target
    column in the file is taken as the batch's labels."""
    from pipeline.sources import fetch
    from pipeline.tabular import TableLimits, read_table_bytes

    if not Path(path).is_file():
        raise BadInputError(f"--current {str(path)!r} does not exist")
    source = settings.data.source.model_copy(update={"uri": str(path), "kind": "file", "query": None})
    raw = fetch(source, settings.s3)
    frame = read_table_bytes(raw.data, raw.label, raw.format, source.csv, TableLimits.of(settings.data))
    features = list(predictor.transformer.numeric + predictor.transformer.categorical)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise BadInputError(
            f"--current {str(path)!r}: the model's input column(s) {missing} are absent "
            f"(columns: {list(frame.columns)})"
        )
    scored = predictor.predict(frame[features])
    out = pd.concat([frame.reset_index(drop=True), scored.reset_index(drop=True)], axis=1)
    target = settings.data.target
    out[LABEL] = frame[target].to_numpy() if target in frame.columns else None
    if target in out.columns:
        out = out.drop(columns=[target])
    return Window(out, str(path), None, None)


def score_reference(predictor, reference: pd.DataFrame) -> pd.Series:
    features = list(predictor.transformer.numeric + predictor.transformer.categorical)
    return predictor.predict(reference[features])["prediction"]


def load_predictor(client, name: str, version: str):
    from pipeline.serving import load_trusted_predictor

    with tempfile.TemporaryDirectory(prefix="monitor-model-") as folder:
        return load_trusted_predictor(client, f"models:/{name}/{version}", Path(folder))
