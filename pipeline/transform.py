"""The fitted preprocessing transform, saved as plain JSON so that inference applies exactly the
transform training used, with no pickle and no dependency beyond numpy and pandas.

Numeric columns: non-finite values become missing, missing values are imputed (median or mean of
the training split) and the result is standardised. Categorical columns: each value maps to an
index for an embedding; index 0 is "unknown" (unseen or rarer than ``min_category_count``) and
index 1 is "missing".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import DataSettings, PreprocessSettings

UNKNOWN = 0
MISSING = 1
RESERVED = 2
FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """numpy scalars -> JSON-able Python values."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _category_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass
class TabularTransformer:
    task: str
    target: str
    numeric: list[str]
    categorical: list[str]
    impute: dict[str, float] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    impute_categorical: dict[str, str] = field(default_factory=dict)
    classes: list[Any] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    format_version: int = FORMAT_VERSION

    # fitting ----------------------------------------------------------------------------------

    @classmethod
    def fit(cls, train: pd.DataFrame, data: DataSettings, options: PreprocessSettings) -> TabularTransformer:
        return cls.fit_columns(lambda column: train[column], data, options)

    @classmethod
    def fit_columns(
        cls, column_of: Callable[[str], pd.Series], data: DataSettings, options: PreprocessSettings
    ) -> TabularTransformer:
        """:meth:`fit` on the training rows ``column_of(name)`` gives, one column at a time (a
        fit holds one column of the training split, not the split)."""
        self = cls(
            task=data.task,
            target=data.target,
            numeric=data.numeric_columns(),
            categorical=data.categorical_columns(),
        )
        for column in self.numeric:
            values = _finite(column_of(column))
            if values.notna().sum() == 0:
                fill, mean, std = 0.0, 0.0, 1.0
            else:
                fill = float(values.median() if options.numeric_impute == "median" else values.mean())
                imputed = values.fillna(fill)
                mean = float(imputed.mean()) if options.scale else 0.0
                std = float(imputed.std(ddof=0)) if options.scale else 1.0
            del values
            self.impute[column] = fill
            self.mean[column] = mean
            self.std[column] = std if std > 1e-12 else 1.0
        for column in self.categorical:
            counts = column_of(column).dropna().map(_category_key).value_counts()
            kept = sorted(str(v) for v, n in counts.items() if n >= options.min_category_count)
            self.vocab[column] = kept
            if options.categorical_impute == "most_frequent" and len(counts):
                ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
                self.impute_categorical[column] = str(ranked[0][0])
        target = column_of(data.target)
        if data.task == "classification":
            self.classes = [_plain(v) for v in sorted(target.dropna().unique().tolist(), key=_sort_key)]
        else:
            self.target_mean = float(target.mean())
            std = float(target.std(ddof=0))
            self.target_std = std if std > 1e-12 else 1.0
        return self

    # transforming -----------------------------------------------------------------------------

    @property
    def cardinalities(self) -> list[int]:
        return [len(self.vocab[c]) + RESERVED for c in self.categorical]

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def transform_numeric(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.numeric)), dtype=np.float32)
        for j, column in enumerate(self.numeric):
            values = _finite(frame[column]).fillna(self.impute[column]).to_numpy(dtype=np.float64)
            out[:, j] = (values - self.mean[column]) / self.std[column]
        return out

    def transform_categorical(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            index = {value: i + RESERVED for i, value in enumerate(self.vocab[column])}
            series = frame[column]
            fill = self.impute_categorical.get(column)
            codes = [
                (index.get(fill, UNKNOWN) if fill is not None else MISSING)
                if _is_missing(v)
                else index.get(_category_key(v), UNKNOWN)
                for v in series.tolist()
            ]
            out[:, j] = np.asarray(codes, dtype=np.int64)
        return out

    def encode_target(self, series: pd.Series) -> np.ndarray:
        if self.task == "classification":
            lookup = {_category_key(c): i for i, c in enumerate(self.classes)}
            codes = [lookup.get(_category_key(v), -1) for v in series.tolist()]
            return np.asarray(codes, dtype=np.int64)
        return ((series.to_numpy(dtype=np.float64) - self.target_mean) / self.target_std).astype(np.float32)

    def target_for_metrics(self, series: pd.Series) -> np.ndarray:
        """The target as metrics compare it: class indices, or values in the original units."""
        if self.task == "classification":
            codes = self.encode_target(series)
            if (codes < 0).any():
                unseen = sorted({str(v) for v, c in zip(series.tolist(), codes, strict=True) if c < 0})
                raise ValueError(f"target values {unseen} were never seen in training")
            return codes
        return series.to_numpy(dtype=np.float64)

    def decode_regression(self, values: np.ndarray) -> np.ndarray:
        return values * self.target_std + self.target_mean

    def processed_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model-ready columns: ``num__*`` floats, ``cat__*`` codes and ``target``."""
        import pandas as pd

        numeric = self.transform_numeric(frame)
        categorical = self.transform_categorical(frame)
        columns: dict[str, Any] = {}
        for j, column in enumerate(self.numeric):
            columns[f"num__{column}"] = numeric[:, j]
        for j, column in enumerate(self.categorical):
            columns[f"cat__{column}"] = categorical[:, j]
        if self.target in frame.columns:
            columns["target"] = self.encode_target(frame[self.target])
        return pd.DataFrame(columns, index=frame.index)

    # persistence -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularTransformer:
        data = dict(data)
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported transformer format {data.get('format_version')!r}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> TabularTransformer:
        return cls.from_dict(json.loads(text))


def _finite(series: pd.Series) -> pd.Series:
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").astype("float64")
    return values.where(np.isfinite(values))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except (TypeError, ValueError):
        return False


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))
