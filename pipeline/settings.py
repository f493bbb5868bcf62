"""One settings object for the whole pipeline.

Sources, highest precedence first:

1. keyword arguments to :meth:`Settings.load` (the CLI's ``--set key=value`` overrides);
2. environment variables ``PIPELINE_*`` (nested keys with ``__``: ``PIPELINE_TRAIN__MAX_EPOCHS=5``),
   plus the standard ``MLFLOW_TRACKING_URI``;
3. a ``.env`` file in the current directory;
4. the YAML config file (``--config FILE`` or ``PIPELINE_CONFIG``; the packaged
   ``pipeline/configs/penguins.yaml`` when neither is given);
5. the defaults below.

Switching from the embedded defaults (SQLite, local folders) to PostgreSQL, an S3 endpoint and an
MLflow server is configuration only. Loading settings has no side effects: no folder is created and
no connection is opened until a step needs it.

Why one module of this size: it is the one declaration of every pipeline setting (its type,
default, validation and description). scripts/generate_config_docs.py reads the models from it
to write docs/configuration.md, and the tests check that the docs match.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CLASSIFICATION_METRICS = {"accuracy", "macro_f1", "roc_auc", "log_loss"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_CONFIG = "penguins.yaml"


def check_safe_name(value: str, what: str) -> str:
    """Refuse names that could escape a folder or break a URI (path traversal, separators)."""
    if not SAFE_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a safe name: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, no '..', no '/', at most 128 characters)"
        )
    return value


def packaged_config(name: str) -> Path:
    """Path of a config shipped inside the package (``pipeline/configs/<name>``)."""
    return Path(str(resources.files("pipeline") / "configs" / name))


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ml-pipeline"


def url_with_password(url: str, password: str | None) -> str:
    """``url`` with ``password`` (percent-encoded) put into its user-info, when the URL names a user
    and no password; otherwise unchanged. Secrets come from their own settings (an environment
    variable or a mounted Secret), never written into a URL in a values file."""
    if password is None or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    userinfo, sep, hostpart = rest.partition("@")
    if sep and ":" not in userinfo:
        return f"{scheme}://{userinfo}:{quote(password, safe='')}@{hostpart}"
    return url


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------
# Data: where it comes from and the contract it must meet
# --------------------------------------------------------------------------------------------


class CsvOptions(_Model):
    delimiter: str = Field(",", description="Field separator.")
    encoding: str = Field("utf-8", description="Text encoding; bytes that do not decode are refused.")
    skip_rows: int = Field(0, ge=0, description="Lines to skip before the header (or the data).")
    header: bool = Field(True, description="Whether the first (unskipped) line holds column names.")
    column_names: list[str] | None = Field(
        None, description="Column names to use; required when header is false, replaces it otherwise."
    )
    na_values: list[str] = Field(
        default_factory=lambda: ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"],
        description="Strings read as missing.",
    )


class HttpOptions(_Model):
    format: Literal["auto", "json", "csv"] = Field(
        "auto",
        description="Response body format; 'auto': CSV when the Content-Type or the URL says so, else JSON.",
    )
    records_path: str | None = Field(
        None, description="Dotted path to the list of records in a JSON body (e.g. 'data.items')."
    )
    pagination: Literal["none", "page", "next_link"] = Field(
        "none",
        description="'page': increment page_param until an empty page; 'next_link': follow the URL "
        "at next_path in the body or the Link header.",
    )
    page_param: str = "page"
    page_size_param: str | None = None
    page_size: int = Field(100, ge=1)
    first_page: int = 1
    next_path: str = Field("next", description="Dotted path of the next-page URL (next_link mode).")
    max_pages: int = Field(1000, ge=1, description="Safety bound on the number of pages fetched.")
    timeout_s: float = Field(
        30.0, gt=0, description="Connect timeout, and the longest wait for any one read, per request."
    )
    deadline_s: float = Field(
        600.0,
        gt=0,
        description="Wall-clock bound of the whole fetch (every page, redirect, retry and byte of the "
        "bodies): a server that drips its answer cannot hold a run longer.",
    )
    max_response_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1,
        description="Largest response body accepted (checked while reading, and while decoding or "
        "decompressing it).",
    )
    max_json_depth: int = Field(
        64, ge=1, description="Deepest nesting of arrays and objects accepted in a JSON body."
    )
    max_redirects: int = Field(10, ge=0, description="Redirects followed per request.")
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host names the source may contact (the URI's, redirects' and next links' hosts); "
        "unset: any host. Credentials go only to the URI's origin either way.",
    )
    max_retries: int = Field(4, ge=0, description="Retries on 429/5xx and connection errors.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers, sent only to the origin (scheme, host, port) of the URI.",
    )
    headers_from_env: dict[str, str] = Field(
        default_factory=dict,
        description="Headers given by reference: header name -> name of the environment variable "
        "holding its value (read at fetch time; sent only to the URI's origin), e.g. "
        "{'X-API-Key': 'MY_API_KEY'}.",
    )
    bearer_token_env: str | None = Field(
        None,
        description="Name of an environment variable holding a bearer token (never the token); sent "
        "as 'Authorization: Bearer ...' to the URI's origin only.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts is None:
            return None
        cleaned = [host.strip().lower().rstrip(".") for host in hosts]
        bad = [host for host in cleaned if not host or "/" in host or "@" in host]
        if bad or not cleaned:
            raise ValueError(
                "data.source.http.allowed_hosts: give bare host names (e.g. 'api.example.com'), "
                "not URLs, and at least one"
            )
        return cleaned

    @field_validator("headers_from_env")
    @classmethod
    def _header_references(cls, refs: dict[str, str]) -> dict[str, str]:
        for header, variable in refs.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable):
                raise ValueError(
                    f"data.source.http.headers_from_env[{header!r}] must name an environment variable "
                    "(letters, digits, '_'), not hold a value"
                )
        return refs


class SourceSettings(_Model):
    uri: str = Field(
        "pkg://palmerpenguins/data/penguins.csv",
        description="A local path, file://, s3://, http(s):// URL, pkg://<package>/<file> or, with "
        "kind 'sql', a SQLAlchemy URL.",
    )
    kind: Literal["auto", "file", "http", "sql"] = Field(
        "auto", description="'auto' picks from the URI scheme."
    )
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="File format (by suffix).")
    query: str | None = Field(
        None,
        description="SQL query for kind 'sql': one statement, run in a read-only transaction that is "
        "always rolled back.",
    )
    max_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1,
        description="Largest source accepted, in bytes: a file or object (checked before it is read, "
        "and again while a compressed one is decompressed), or all HTTP response bodies together.",
    )
    statement_timeout_s: float = Field(
        300.0, gt=0, description="Longest the SQL query may run (kind 'sql'; the server cancels it)."
    )
    csv: CsvOptions = Field(default_factory=CsvOptions)
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("uri", "query", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        """``--set data.source.uri=2024`` (parsed as YAML) still means the text '2024'."""
        return str(value) if isinstance(value, int | float | bool) else value


class ColumnSpec(_Model):
    """One column of the data contract."""

    type: Literal["float", "int", "category", "bool", "str"] = Field(
        ..., description="Expected type; 'float' accepts integers too."
    )
    role: Literal["feature", "target", "id", "ignore"] = Field(
        "feature", description="How the column is used; 'id' and 'ignore' are not model inputs."
    )
    required: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = Field(None, description="Allowed values of a category column.")
    max_null_fraction: float = Field(0.0, ge=0, le=1, description="Missing values (NaN included).")
    max_nonfinite_fraction: float = Field(
        0.0, ge=0, le=1, description="Infinite values allowed in a numeric column."
    )
    unique: bool = False
    leakage: Literal["fail", "warn", "skip"] | None = Field(
        None,
        description="What the target-leakage check does with this feature: 'fail' refuses a column "
        "that gives the target away, 'warn' keeps it (a logged warning, recorded on the run) when the "
        "relation is legitimate, 'skip' does not check it; unset: data.leakage.action.",
    )


class LeakageSettings(_Model):
    """The target-leakage check (pipeline/leakage.py), run by the preprocess step on the training
    split: each feature alone, scored out of fold, against the target."""

    enabled: bool = Field(True, description="Whether the preprocess step checks features for target leakage.")
    action: Literal["fail", "warn"] = Field(
        "fail", description="What a leaky feature does when its column sets no leakage of its own."
    )
    max_score: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Rule predicts-target: refuse a feature whose one-feature model predicts the target "
        "with this out-of-fold skill or more (R² for regression, balanced accuracy adjusted for "
        "chance for classification; 1 is perfect, 0 the baseline).",
    )
    max_determination: float = Field(
        0.97,
        gt=0,
        le=1,
        description="Rule function-of-target: refuse a feature that the target predicts with this "
        "out-of-fold skill or more (a deterministic function of the target, also many-to-one) ...",
    )
    min_information: float = Field(
        0.1,
        ge=0,
        le=1,
        description="... when the feature also carries this share of the target's information "
        "(Theil's uncertainty coefficient on binned values).",
    )
    folds: int = Field(5, ge=2, le=20, description="Folds of the out-of-fold scoring on the training split.")
    max_rows: int = Field(
        10_000, ge=100, description="Training rows the check scores (a seeded sample of larger splits)."
    )
    max_undeclared_columns: int = Field(
        100,
        ge=0,
        description="Columns outside the contract also checked, for a warning only (the model does not "
        "use them): a copy of the target there usually means a feature was meant.",
    )


class DataSettings(_Model):
    name: str = Field("penguins", description="Dataset name: names the feature set and the model.")
    source: SourceSettings = Field(default_factory=SourceSettings)
    target: str = Field("species", description="The column to predict.")
    task: Literal["classification", "regression"] = "classification"
    columns: dict[str, ColumnSpec] = Field(default_factory=dict, description="The data contract.")
    min_rows: int = Field(10, ge=1, description="Row-count floor of the raw snapshot.")
    max_rows: int | None = Field(
        10_000_000,
        ge=1,
        description="Row-count ceiling of the source, checked while reading (a Parquet file by its "
        "footer, a CSV file, API or query as it streams) before the table is materialised; null: none.",
    )
    max_columns: int | None = Field(
        10_000, ge=1, description="Column-count ceiling of the source, checked before its rows are read."
    )
    unique_together: list[list[str]] = Field(default_factory=list)
    allow_extra_columns: bool = Field(
        True,
        description="Whether columns outside the contract are tolerated (reported as a warning and "
        "ignored); false is the older spelling of strict: true.",
    )
    strict: bool = Field(
        False,
        description="A strict contract: a column outside data.columns is refused, by name (otherwise "
        "a warning names them and they are ignored).",
    )
    formula_values: Literal["warn", "fail", "ignore"] = Field(
        "warn",
        description="Text values of category/str columns starting like a spreadsheet formula (=, +, "
        "- or @ followed by text; numbers such as -3.5 are not): reported as a warning, refused, or "
        "ignored.",
    )
    max_duplicate_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Largest share of rows that may repeat an earlier row over the feature and target "
        "columns (preprocessing drops them); beyond it the data is refused, naming the repeated rows. "
        "1: no limit.",
    )
    validation_batch_rows: int = Field(
        1_000_000,
        ge=1,
        description="Rows the validate step holds at a time: a larger snapshot is validated a batch "
        "of rows at a time (the same suite on each batch, the counts summed, the checks across rows "
        "computed over every row), with the same result as validating it whole.",
    )
    leakage: LeakageSettings = Field(default_factory=LeakageSettings)

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        return check_safe_name(v, "data.name")

    @model_validator(mode="after")
    def _row_bounds(self) -> DataSettings:
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"data.max_rows ({self.max_rows}) is below data.min_rows ({self.min_rows})")
        return self

    @model_validator(mode="after")
    def _target_in_contract(self) -> DataSettings:
        if self.columns and self.target not in self.columns:
            raise ValueError(f"data.target {self.target!r} is not declared in data.columns")
        for name, spec in self.columns.items():
            if spec.role == "target" and name != self.target:
                raise ValueError(f"column {name!r} has role 'target' but data.target is {self.target!r}")
            if spec.leakage is not None and (spec.role != "feature" or name == self.target):
                what = "the target" if name == self.target else f"a column with role {spec.role!r}"
                raise ValueError(
                    f"data.columns.{name}.leakage: the leakage check applies to features only, and "
                    f"{name!r} is {what}"
                )
        return self

    def feature_columns(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.role == "feature" and name != self.target]

    def categorical_columns(self) -> list[str]:
        return [c for c in self.feature_columns() if self.columns[c].type in ("category", "str", "bool")]

    def numeric_columns(self) -> list[str]:
        return [c for c in self.feature_columns() if self.columns[c].type in ("float", "int")]


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


class PreprocessSettings(_Model):
    deduplicate: bool = True
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    numeric_impute: Literal["median", "mean"] = "median"
    categorical_impute: Literal["most_frequent", "missing_token"] = "missing_token"
    scale: bool = True
    min_category_count: int = Field(
        1, ge=1, description="Rarer categories are folded into the unknown bucket."
    )
    batch_rows: int = Field(
        1_000_000,
        ge=1,
        description="Rows the preprocess step holds at a time: a larger snapshot is preprocessed a batch "
        "of rows at a time (spilled to Parquet, the transform fitted one column of the training split "
        "at a time), with the same outputs as preprocessing it whole.",
    )


class TrainSettings(_Model):
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)
    embedding_dim_max: int = Field(16, ge=1, description="Upper bound of a categorical embedding size.")
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(15, ge=1, description="Epochs without validation improvement before stopping.")
    min_delta: float = Field(1e-4, ge=0)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device; 'auto': CUDA when available.", examples=["auto"]
    )
    num_threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch default).")
    checkpoint_every: int = Field(1, ge=1, description="Epochs between checkpoints.")
    log_every_steps: int = Field(0, ge=0, description="Also log batch loss every N steps (0: off).")
    processes: int = Field(
        1,
        ge=1,
        description="Training processes (DistributedDataParallel ranks: gloo on CPU, NCCL on CUDA, one "
        "GPU each); 1: one process, no torch.distributed.",
    )
    process_group_timeout_s: float = Field(
        300.0, gt=0, description="How long a rank waits on the others before the step fails (processes > 1)."
    )
    gpus: int = Field(
        0,
        ge=0,
        description="GPUs to train on, one DistributedDataParallel rank (NCCL) on each: the number of "
        "ranks, on CUDA (train.device auto or cuda); 0: train.processes and train.device decide. In the "
        "DAG's train pod, airflow.dag.gpu.count sets it and the step runs under torchrun.",
    )
    process_start_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="Under torchrun: how long ranks 1..N-1 wait for rank 0 to load the data and start "
        "training (or to finish without training) before they fail.",
    )

    @model_validator(mode="after")
    def _gpus_agree(self) -> TrainSettings:
        if self.gpus and self.device == "cpu":
            raise ValueError(f"train.gpus={self.gpus} trains on CUDA: set train.device to auto or cuda")
        if self.gpus and self.processes not in (1, self.gpus):
            raise ValueError(
                f"train.gpus={self.gpus} and train.processes={self.processes} disagree: train.gpus runs "
                "one process per GPU (leave train.processes at 1)"
            )
        return self

    @property
    def ranks(self) -> int:
        """DistributedDataParallel ranks this configuration asks for (1: no torch.distributed)."""
        return self.gpus or self.processes

    @property
    def device_preference(self) -> str:
        return "cuda" if self.gpus else self.device


class EvaluateSettings(_Model):
    primary_metric: str | None = Field(
        None, description="Metric the gate compares; default macro_f1 (classification) or rmse."
    )
    baseline: Literal["majority", "linear"] = Field(
        "majority", description="Baseline scored on the same test set (majority/mean or linear)."
    )
    permutation_repeats: int = Field(3, ge=1)
    importance_max_rows: int = Field(
        10_000,
        ge=100,
        description="Permutation importance is computed on a seeded sample of this many test rows "
        "when the test split is larger (plus one row of each class the sample missed); the test "
        "metrics always use every test row.",
    )


class GateSettings(_Model):
    margin: float = Field(0.0, ge=0, description="How much the challenger must beat the champion by.")
    min_score: float | None = Field(
        None, description="Absolute floor of the primary metric for the first champion."
    )
    require_beat_baseline: bool = True


class S3Settings(_Model):
    endpoint_url: str | None = Field(
        None,
        description="Any S3-compatible endpoint; unset for AWS.",
        examples=["http://localhost:9000"],
        json_schema_extra={"chart": "global.s3.endpoint", "chart_default": False},
    )
    region: str = Field(
        "us-east-1",
        description="Region of the S3 endpoint.",
        examples=["us-east-1", "eu-west-1"],
        json_schema_extra={"chart": "global.s3.region"},
    )
    access_key_id: str | None = Field(
        None,
        description="S3 access key id.",
        json_schema_extra={"chart": "global.s3.existingSecret", "chart_secret": True},
    )
    secret_access_key: SecretStr | None = Field(
        None,
        description="S3 secret access key.",
        json_schema_extra={"chart": "global.s3.existingSecret", "chart_secret": True},
    )
    max_attempts: int = Field(4, ge=1, description="Bounded retries on 5xx/throttling.")
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0


# Training settings a sweep may search over (the data steps are shared by every trial).
TUNABLE_TRAIN_SETTINGS = (
    "hidden_sizes",
    "dropout",
    "embedding_dim_max",
    "learning_rate",
    "weight_decay",
    "batch_size",
    "patience",
    "min_delta",
)


class SearchDimension(_Model):
    """One dimension of the search space (an Optuna distribution)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = Field(None, description="Lower bound (float, int).")
    high: float | None = Field(None, description="Upper bound, inclusive (float, int).")
    step: float | None = Field(None, description="Grid step (float, int); not with log.")
    log: bool = Field(False, description="Sample on a log scale (float, int).")
    choices: list[str | int | float | bool] | None = Field(
        None,
        description="Values of a categorical dimension; a list setting such as hidden_sizes takes "
        "comma-separated strings ('64,32').",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SearchDimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} dimension needs low < high")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log dimension needs low > 0 and no step")
        return self


class SweepSettings(_Model):
    n_trials: int = Field(10, ge=1, description="Trials (completed or pruned) the study runs in total.")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting new trials after this long.")
    study_name: str | None = Field(None, description="Optuna study; default 'sweep-<run id>'.")
    storage_url: str | None = Field(
        None,
        description="Optuna storage (SQLAlchemy URL). Default: sqlite:///<home>/optuna.db with embedded "
        "tracking; the feature store's PostgreSQL database when that is PostgreSQL (the cluster: the "
        "same server as the tracking database, another database, as MLflow and Optuna both keep an "
        "alembic_version table).",
    )
    storage_password: SecretStr | None = Field(
        None, description="Password added to storage_url (kept out of the URL in config)."
    )
    space: dict[str, SearchDimension] = Field(
        default_factory=lambda: {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.4},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
            "hidden_sizes": {"type": "categorical", "choices": ["64,32", "128,64", "32"]},
        },
        validate_default=True,
        description="Training settings to search, by name (a 'train.' prefix is optional): "
        f"{', '.join(TUNABLE_TRAIN_SETTINGS)}.",
    )
    max_epochs: int | None = Field(
        None, ge=1, description="Epoch budget per trial (default: train.max_epochs)."
    )
    pruner_warmup_epochs: int = Field(5, ge=0, description="Epochs before a trial may be pruned.")
    pruner_startup_trials: int = Field(
        3, ge=0, description="Trials that must finish before the median pruner prunes anything."
    )
    workers: int = Field(1, ge=1, description="Local worker processes of `pipeline sweep` sharing the study.")
    heartbeat_s: int = Field(5, ge=1, description="How often a running trial records that it is alive.")
    stale_after_s: int = Field(
        20, ge=2, description="A running trial silent this long is failed as interrupted and retried."
    )
    max_retries: int = Field(1, ge=0, description="Retries of a trial whose worker was interrupted.")
    lock_timeout_s: float = Field(
        120.0, gt=0, description="Longest wait of a worker for the lock under which it starts a trial."
    )

    @field_validator("study_name")
    @classmethod
    def _safe_study_name(cls, v: str | None) -> str | None:
        return None if v is None else check_safe_name(v, "sweep.study_name")

    @field_validator("space")
    @classmethod
    def _tunable(cls, space: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        normalised: dict[str, SearchDimension] = {}
        for key, dimension in space.items():
            name = key.removeprefix("train.")
            if name not in TUNABLE_TRAIN_SETTINGS:
                raise ValueError(
                    f"sweep.space: {key!r} cannot be searched; use one of {', '.join(TUNABLE_TRAIN_SETTINGS)}"
                )
            if name in normalised:
                raise ValueError(f"sweep.space: {name!r} is declared twice")
            normalised[name] = dimension
        if not normalised:
            raise ValueError("sweep.space is empty")
        return normalised

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> SweepSettings:
        if self.stale_after_s <= self.heartbeat_s:
            raise ValueError("sweep.stale_after_s must be longer than sweep.heartbeat_s")
        return self


# --------------------------------------------------------------------------------------------
# The settings object
# --------------------------------------------------------------------------------------------


class ServeSettings(_Model):
    host: str = Field("127.0.0.1", description="Address `pipeline serve` listens on (0.0.0.0 in a pod).")
    port: int = Field(5001, ge=0, le=65535, description="Port of `pipeline serve` (0: any free port).")
    alias: str = Field("champion", description="Alias served when `pipeline serve` names only a model.")
    poll_interval_s: float = Field(
        10.0, gt=0, description="How often the server resolves the alias it follows."
    )
    max_request_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Largest request body accepted (413 beyond)."
    )
    log_predictions: bool = Field(True, description="Log every prediction to the prediction log.")
    log_queue_max: int = Field(
        10000,
        ge=1,
        description="Requests waiting in memory for the prediction log; beyond, counted as dropped.",
    )
    log_batch_rows: int = Field(500, ge=1, description="Rows the prediction log writes per batch.")
    log_flush_s: float = Field(1.0, gt=0, description="Longest wait before queued predictions are written.")
    shutdown_flush_s: float = Field(
        30.0, ge=0, description="How long a stopping server spends writing what is still queued."
    )


class MonitorSettings(_Model):
    """`pipeline monitor`: the drift and live-performance checks and what they may trigger."""

    window_hours: float = Field(
        24.0, gt=0, description="The current window: prediction-log rows of the last this many hours."
    )
    min_samples: int = Field(
        30,
        ge=1,
        description="Fewest rows a window (and each column, missing values aside) needs to be judged; "
        "a smaller one is reported as not judged, never guessed.",
    )
    min_labelled: int = Field(
        30, ge=1, description="Fewest labelled rows (late feedback) before the live metric is judged."
    )
    p_value: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Columns tested by p-value (KS, chi-square: reference of up to large_reference "
        "rows) drift below this p-value.",
    )
    distance_threshold: float = Field(
        0.1,
        gt=0,
        description="Columns tested by distance (normed Wasserstein, Jensen-Shannon: larger "
        "references) drift at or above this distance.",
    )
    large_reference: int = Field(
        1000,
        ge=1,
        description="Reference rows above which distances replace p-value tests (Evidently's rule).",
    )
    max_numeric_categories: int = Field(
        5,
        ge=0,
        description="A numeric column with at most this many distinct reference values is tested as "
        "categorical (Evidently's rule).",
    )
    drift_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of drifted feature columns at or above which the data has drifted.",
    )
    degradation_threshold: float = Field(
        0.05,
        ge=0,
        description="The model is degraded when its live primary metric is worse than its recorded "
        "test metric by more than this.",
    )
    cooldown_hours: float = Field(
        24.0, ge=0, description="Least time between two retrains the monitor triggers."
    )
    max_rows: int = Field(
        100_000, ge=1, description="Most prediction-log rows read for one window (the newest)."
    )


class TriggerSettings(_Model):
    """Why a training run happens, recorded on its MLflow run and on the version it registers
    (set by the DAG or by `pipeline monitor --retrain`, e.g. PIPELINE_TRIGGER__CAUSE=drift)."""

    cause: Literal["schedule", "manual", "drift", "degradation"] = Field(
        "manual", description="What started the run: schedule, manual, drift or degradation."
    )
    monitor_run_id: str | None = Field(
        None, description="The MLflow run of the monitoring check that decided the retrain."
    )
    drifted_columns: str | None = Field(
        None, description="The drifted columns and their scores (JSON object) the retrain answers."
    )
    window: str | None = Field(None, description="The window the monitor judged (JSON: since, until, rows).")


class CacheSettings(_Model):
    enabled: bool = Field(
        True,
        description="Reuse a step's published outputs from an earlier run when its inputs, code and "
        "the settings it reads are unchanged (the step cache; `pipeline run --no-cache` or "
        "`--rerun STEP` for one run).",
        examples=[True],
    )


class Settings(BaseSettings):
    """Everything the pipeline needs to know, resolved once per process."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        validate_default=True,
    )

    # backends ------------------------------------------------------------------------------
    home: Path = Field(
        default_factory=default_home,
        description="Folder for all embedded state.",
        examples=["~/.local/share/ml-pipeline"],
        json_schema_extra={"chart": "pipeline.home", "chart_default": False},
    )
    config_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("PIPELINE_CONFIG", "config_file"),
        description="The YAML config file (dataset, data contract, hyperparameters); default the "
        "packaged pipeline/configs/penguins.yaml.",
        examples=["pipeline/configs/wine.yaml"],
    )
    artifact_root: str | None = Field(
        None,
        description="Local folder or s3://bucket/prefix.",
        examples=["s3://ml-pipeline/artifacts"],
        json_schema_extra={"chart": "pipeline.artifactRoot", "chart_default": False},
    )
    tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "PIPELINE_TRACKING_URI", "tracking_uri"),
        description="MLflow tracking URI; default sqlite:///<home>/mlflow.db.",
        examples=["http://localhost:5000"],
        json_schema_extra={"chart": "global.mlflow.trackingUri", "chart_default": False},
    )
    feature_store_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the feature store.",
        examples=["postgresql+psycopg2://features@localhost:5432/features"],
        json_schema_extra={"chart": "global.postgresql", "chart_default": False},
    )
    feature_store_password: SecretStr | None = Field(
        None,
        description="Password added to feature_store_url (kept out of the URL in config).",
        json_schema_extra={"chart": "global.postgresql.existingSecret", "chart_secret": True},
    )
    dvc_remote: str | None = Field(
        None,
        description="DVC remote: a local folder or s3://bucket/prefix.",
        examples=["s3://ml-pipeline/dvc"],
        json_schema_extra={"chart": "pipeline.dvcRemote", "chart_default": False},
    )
    s3: S3Settings = Field(default_factory=S3Settings)
    experiment_name: str | None = Field(
        None,
        description="MLflow experiment; default the dataset name.",
        examples=["penguins"],
        json_schema_extra={"chart": "pipeline.experimentName", "pattern": SAFE_NAME.pattern},
    )
    model_name: str | None = Field(
        None,
        description="Registered model; default the dataset name.",
        examples=["penguins"],
        json_schema_extra={"chart": "pipeline.modelName", "pattern": SAFE_NAME.pattern},
    )
    registry_lock_timeout_s: float = 120.0
    mlflow_http_timeout_s: int = Field(
        30, ge=1, description="Per-request timeout to a tracking server.", examples=[30]
    )
    mlflow_http_max_retries: int = Field(
        3, ge=0, description="Bounded retries to a tracking server.", examples=[3]
    )
    mlflow_artifacts_destination: str | None = Field(
        None,
        description="Where the tracking server stores artifacts (its --artifacts-destination); "
        "`pipeline doctor` checks that a probe artifact lands there. Default: "
        "s3://<bucket of the DVC remote>/mlflow, the chart's layout.",
    )
    require_gpu: bool = Field(
        False, description="Fail (and doctor complains) when no CUDA device.", examples=[False]
    )

    # provenance, set by the image and the pod ----------------------------------------------
    git_commit: str | None = Field(None, description="Code commit; read from git when unset.")
    image_digest: str | None = Field(None, description="Image digest of the running pod.")

    # behaviour -----------------------------------------------------------------------------
    seed: int = Field(
        42, description="Random seed of the split, the training and the evaluation.", examples=[42]
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO",
        description="Log level of the pipeline's own loggers (PIPELINE_LOG_LEVEL).",
        examples=["INFO", "DEBUG"],
        json_schema_extra={"chart": "pipeline.logLevel"},
    )
    secret_settings: list[str] = Field(
        default_factory=list,
        description="Dotted setting paths whose values are secrets, besides the built-in ones "
        "(passwords, keys, tokens, URL user-info, secret-named headers and query parameters), e.g. "
        "data.source.http.params.tenant_sig; '*' matches one level. Masked wherever the pipeline "
        "records or prints anything.",
    )

    data: DataSettings = Field(default_factory=DataSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    sweep: SweepSettings = Field(default_factory=SweepSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Resolve settings from every source. ``config_file`` beats ``PIPELINE_CONFIG``."""
        path = config_file or os.environ.get("PIPELINE_CONFIG") or _dotenv_value("PIPELINE_CONFIG")
        path = Path(path).expanduser() if path else packaged_config(DEFAULT_CONFIG)
        if not path.is_file():
            from pipeline.errors import ConfigError

            raise ConfigError(f"config file {str(path)!r} does not exist")
        bound = type(cls.__name__, (cls,), {"model_config": {**cls.model_config, "yaml_file": path}})
        settings = bound(**overrides)
        settings.config_file = path
        return settings

    # derived values ------------------------------------------------------------------------

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        """Every secret this configuration holds is known to the one redaction mechanism
        (:mod:`pipeline.redaction`) before anything can record or print it."""
        from pipeline import redaction

        redaction.register_values(self.model_dump(mode="python"), self.secret_settings)
        for url in (self.resolved_tracking_uri, self.resolved_feature_store_url, self.sweep.storage_url):
            redaction.register_url(url)
        redaction.register_environment()
        return self

    @model_validator(mode="after")
    def _check_names(self) -> Settings:
        for value, what in ((self.experiment_name, "experiment_name"), (self.model_name, "model_name")):
            if value is not None:
                check_safe_name(value, what)
        valid = CLASSIFICATION_METRICS if self.data.task == "classification" else REGRESSION_METRICS
        if self.evaluate.primary_metric is not None and self.evaluate.primary_metric not in valid:
            raise ValueError(
                f"evaluate.primary_metric {self.evaluate.primary_metric!r} does not apply to a "
                f"{self.data.task} task: use one of {sorted(valid)}"
            )
        return self

    @property
    def resolved_artifact_root(self) -> str:
        return self.artifact_root or str(self.home / "artifacts")

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def resolved_feature_store_url(self) -> str:
        url = self.feature_store_url or f"sqlite:///{self.home / 'features.db'}"
        password = self.feature_store_password
        return url_with_password(url, password.get_secret_value() if password is not None else None)

    @property
    def resolved_dvc_remote(self) -> str:
        return self.dvc_remote or str(self.home / "dvc-remote")

    @property
    def resolved_experiment_name(self) -> str:
        return self.experiment_name or self.data.name

    @property
    def resolved_model_name(self) -> str:
        return self.model_name or self.data.name

    @property
    def primary_metric(self) -> str:
        if self.evaluate.primary_metric:
            return self.evaluate.primary_metric
        return "macro_f1" if self.data.task == "classification" else "rmse"

    @property
    def uses_embedded_tracking(self) -> bool:
        return self.resolved_tracking_uri.startswith("sqlite:")

    def redacted(self) -> dict[str, Any]:
        """The full resolved configuration with secrets masked: safe to log and to record."""
        from pipeline.redaction import redact_data

        data = self.model_dump(mode="json")
        data["tracking_uri"] = self.resolved_tracking_uri
        data["feature_store_url"] = self.resolved_feature_store_url
        data["artifact_root"] = self.resolved_artifact_root
        data["dvc_remote"] = self.resolved_dvc_remote
        data["experiment_name"] = self.resolved_experiment_name
        data["model_name"] = self.resolved_model_name
        data["evaluate"]["primary_metric"] = self.primary_metric
        return redact_data(data)


def _dotenv_value(key: str) -> str | None:
    env_file = Path(".env")
    if not env_file.is_file():
        return None
    from dotenv import dotenv_values

    value = dotenv_values(env_file).get(key)
    return value or None


def redact_url(url: str) -> str:
    """Mask the secrets of a URL such as ``postgresql://user:secret@host/db`` (one mechanism:
    :func:`pipeline.redaction.redact`)."""
    from pipeline.redaction import redact

    return redact(url)
