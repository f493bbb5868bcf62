"""The DAG's pod settings: the ``MLP_DAG_*`` environment variables (docs/configuration.md).

The Helm chart sets these on the Airflow components. They are read once when the DAG file is
parsed, which is cheap: no network, no database, no Airflow Variable. A malformed value raises
``ValueError`` naming the variable, so it shows up as an import error of the DAG instead of as a
surprise inside a pod.

The pipeline's own configuration (``PIPELINE_*``, credentials, the config file) is NOT read here:
it reaches the pods at run time through ``envFrom`` ConfigMaps/Secrets and a mounted ConfigMap.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

TASK_RUNNERS = ("kubernetes", "local")
ON_FINISH_ACTIONS = ("delete_pod", "delete_succeeded_pod", "keep_pod")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")

# Small defaults that fit a laptop-sized kind cluster; `train` gets more. Override with
# MLP_DAG_RESOURCES (JSON). Memory limits stop a runaway step from taking the node down; no CPU
# limit, so a step may burst on an idle node.
DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "default": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    "train": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
}

# The setting keys a manual run's params may set (MLP_DAG_TRIGGER_ALLOWED_KEYS, ml_pipeline_support/
# trigger.py): what a data scientist tunes per run, and nothing that decides where data comes from or
# goes, what the model is judged on, or whether it is promoted. Left out on purpose: gate.* (the
# promotion decision); evaluate.primary_metric and evaluate.baseline (what the gate compares);
# preprocess.* and seed (the split, hence the test set the gate judges on); data.* (the source, its SQL
# query and HTTP options, the data contract; the `source` param is data.source.uri); tracking_uri,
# feature_store_url, artifact_root, dvc_remote, s3.*, sweep.storage_url (endpoints and credentials);
# model_name and experiment_name (which model a run overwrites); secret_settings and log_level.
DEFAULT_TRIGGER_ALLOWED_KEYS = (
    "train.*",
    "evaluate.permutation_repeats",
    "sweep.n_trials",
    "sweep.timeout_s",
    "sweep.max_epochs",
    "sweep.space.*",
    "sweep.pruner_*",
)
# The cron presets Airflow's timetables know (airflow.utils.dates.cron_presets), and the values that
# turn a schedule off.
CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
NO_SCHEDULE = ("none", "off", "null")
# One field of a cron expression: numbers, names (MON, JAN), *, ?, ranges, steps, lists, L, W, #.
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#-]+$")
# A dotted setting key where `*` stands for any characters.
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_*]+(\.[A-Za-z0-9_*]+)*$")

# A Kubernetes name (DNS-1123 subdomain) for ConfigMaps, Secrets and service accounts.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
_RUNTIME_CLASS = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_EXTENDED_RESOURCE = re.compile(r"^[a-z0-9.-]+/[A-Za-z0-9_.-]+$")


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value if value else default


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _env(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _env(env, name, "true" if default else "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use true or false)")


def _choice(env: Mapping[str, str], name: str, default: str, choices: Iterable[str]) -> str:
    value = _env(env, name, default)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def _json(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for item in items:
        if not _K8S_NAME.match(item):
            raise ValueError(f"{name}: {item!r} is not a valid Kubernetes object name")
    return items


def _k8s_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = _env(env, name, default)
    if not _K8S_NAME.match(value):
        raise ValueError(f"{name}={value!r} is not a valid Kubernetes name")
    return value


def _resources(env: Mapping[str, str], step_names: tuple[str, ...]) -> dict[str, dict[str, dict[str, str]]]:
    """Per-step resources: built-in defaults, then MLP_DAG_RESOURCES merged key by key."""
    name = "MLP_DAG_RESOURCES"
    given = _json(env, name, {}, dict)
    merged: dict[str, dict[str, dict[str, str]]] = {
        key: {part: dict(values) for part, values in spec.items()} for key, spec in DEFAULT_RESOURCES.items()
    }
    for key, spec in given.items():
        if key != "default" and key not in step_names:
            raise ValueError(f"{name}: unknown step {key!r}; use 'default' or one of {', '.join(step_names)}")
        if not isinstance(spec, dict) or set(spec) - {"requests", "limits"}:
            raise ValueError(f"{name}[{key!r}] must be an object with 'requests' and/or 'limits'")
        target = merged.setdefault(key, {})
        for part, values in spec.items():
            if not isinstance(values, dict):
                raise ValueError(f"{name}[{key!r}][{part!r}] must be an object of resource quantities")
            for resource, quantity in values.items():
                if not _QUANTITY.match(str(quantity)):
                    raise ValueError(
                        f"{name}[{key!r}][{part!r}][{resource!r}]={quantity!r} is not a Kubernetes quantity"
                    )
            # A step's own entry replaces the default's values for the same resource only.
            target[part] = {**target.get(part, {}), **{k: str(v) for k, v in values.items()}}
    return merged


def _step_timeouts(
    env: Mapping[str, str], step_names: tuple[str, ...], default: int = 3600
) -> dict[str, int]:
    """MLP_DAG_STEP_TIMEOUT_S: one number for every step, or a JSON object per step name."""
    name = "MLP_DAG_STEP_TIMEOUT_S"
    raw = _env(env, name, str(default))
    if raw.startswith("{"):
        given = _json(env, name, {}, dict)
        default = given.pop("default", default)
        unknown = set(given) - set(step_names)
        if unknown:
            raise ValueError(f"{name}: unknown step(s) {sorted(unknown)}; valid: {', '.join(step_names)}")
        values = {step: given.get(step, default) for step in step_names}
    else:
        values = dict.fromkeys(step_names, raw)
    timeouts = {}
    for step, value in values.items():
        try:
            seconds = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: the timeout of {step!r} ({value!r}) is not an integer") from None
        if seconds < 1:
            raise ValueError(f"{name}: the timeout of {step!r} must be at least 1 second")
        timeouts[step] = seconds
    return timeouts


def _key_patterns(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of dotted setting keys or `*` patterns; unset: ``default``; ``none``:
    no key at all."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() == "none":
        return ()
    patterns = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for pattern in patterns:
        if not _KEY_PATTERN.match(pattern):
            raise ValueError(
                f"{name}: {pattern!r} is not a dotted setting key or pattern (e.g. train.* or gate.margin)"
            )
    return patterns


def _cron_is_valid(expression: str) -> bool:
    """Whether a 5-field cron expression names real times: croniter's check (the parser Airflow's
    timetables use) where it is installed (always with Airflow, which parses the DAG files), the
    fields' characters alone elsewhere (the docs and schema generators)."""
    fields = expression.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(part) for part in fields):
        return False
    try:
        from croniter import croniter
    except ImportError:  # pragma: no cover (Airflow installs it)
        return True
    return bool(croniter.is_valid(expression))


def _schedule(
    env: Mapping[str, str], name: str = "MLP_DAG_SCHEDULE", default: str = "0 3 * * 1"
) -> str | None:
    value = _env(env, name, default)
    if value.lower() in NO_SCHEDULE:
        return None
    if value.startswith("@"):
        if value not in CRON_PRESETS:
            raise ValueError(f"{name}={value!r} is not a preset; use one of {', '.join(CRON_PRESETS)}")
        return value
    if not _cron_is_valid(value):
        raise ValueError(
            f"{name}={value!r} is not a 5-field cron expression (minute hour day-of-month month "
            "day-of-week, e.g. '0 3 * * 1'), a preset such as @daily, or none"
        )
    return value


# --- parsers: (env, variable name, declared default, step names) -> value ----------------------------
Parser = Callable[[Mapping[str, str], str, Any, tuple[str, ...]], Any]


def accepts(schema: dict[str, Any]) -> Callable[[Parser], Parser]:
    """Declare, on a parser, the JSON schema of the values it accepts, in the form the Helm chart's
    values hold them (a list where the variable is comma-separated, an object where it is JSON).
    charts/ml-pipeline/hack/generate_schema.py writes it into values.schema.json for the chart value
    of each setting the chart renders verbatim (``Setting.chart_default``)."""

    def mark(parser: Parser) -> Parser:
        parser.json_schema = schema  # type: ignore[attr-defined]
        return parser

    return mark


_NAME_SCHEMA = {"type": "string", "pattern": _K8S_NAME.pattern}
_QUANTITIES = {
    "type": "object",
    "additionalProperties": {"type": ["string", "integer", "number"], "pattern": _QUANTITY.pattern},
}


def integer(minimum: int = 0) -> Parser:
    return accepts({"type": "integer", "minimum": minimum})(
        lambda env, name, default, steps: _int(env, name, default, minimum=minimum)
    )


@accepts({"type": "boolean"})
def boolean(env: Mapping[str, str], name: str, default: bool, steps: tuple[str, ...]) -> bool:
    return _bool(env, name, default)


def choice(choices: Iterable[str]) -> Parser:
    choices = tuple(choices)
    return accepts({"enum": list(choices)})(
        lambda env, name, default, steps: _choice(env, name, default, choices)
    )


@accepts(_NAME_SCHEMA)
def k8s_name(env: Mapping[str, str], name: str, default: str, steps: tuple[str, ...]) -> str:
    return _k8s_name(env, name, default)


@accepts({"type": "array", "items": _NAME_SCHEMA})
def names(
    env: Mapping[str, str], name: str, default: tuple[str, ...], steps: tuple[str, ...]
) -> tuple[str, ...]:
    return _names(env, name) or default


def one_name(env: Mapping[str, str], name: str, default: str | None, steps: tuple[str, ...]) -> str | None:
    given = _names(env, name)
    if len(given) > 1:
        raise ValueError(f"{name} names one ConfigMap")
    return given[0] if given else default


def image_ref(env: Mapping[str, str], name: str, default: str | None, steps: tuple[str, ...]) -> str | None:
    value = _env(env, name, default or "").strip()
    if any(c.isspace() for c in value):
        raise ValueError(f"{name}={value!r} contains whitespace")
    return value or None


@accepts({"type": "string", "pattern": "^$|" + _RUNTIME_CLASS.pattern})
def runtime_class(
    env: Mapping[str, str], name: str, default: str | None, steps: tuple[str, ...]
) -> str | None:
    value = _env(env, name, default or "").strip()
    if value and not _RUNTIME_CLASS.match(value):
        raise ValueError(f"{name}={value!r} is not a RuntimeClass name")
    return value or None


@accepts({"type": "string", "pattern": _EXTENDED_RESOURCE.pattern})
def extended_resource(env: Mapping[str, str], name: str, default: str, steps: tuple[str, ...]) -> str:
    value = _env(env, name, default)
    if not _EXTENDED_RESOURCE.match(value):
        raise ValueError(f"{name}={value!r} is not an extended resource name")
    return value


@accepts({"type": "object", "additionalProperties": {"type": "string"}})
def node_selector(env: Mapping[str, str], name: str, default: dict, steps: tuple[str, ...]) -> dict[str, str]:
    value = _json(env, name, dict(default), dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{name} must map label names to string values")
    return value


def tolerations(
    env: Mapping[str, str], name: str, default: tuple, steps: tuple[str, ...]
) -> tuple[dict, ...]:
    value = _json(env, name, list(default), list)
    if not all(isinstance(t, dict) for t in value):
        raise ValueError(f"{name} must be a JSON list of toleration objects")
    return tuple(value)


@accepts(
    {
        "type": "string",
        # none (any case), a preset, or five fields; the DAG file checks the fields' values.
        "pattern": r"^(?:[Nn][Oo][Nn][Ee]|[Oo][Ff][Ff]|[Nn][Uu][Ll][Ll]|"
        + "|".join(CRON_PRESETS)
        + r"|[0-9A-Za-z*?/,#-]+(?: +[0-9A-Za-z*?/,#-]+){4})$",
    }
)
def cron(env: Mapping[str, str], name: str, default: str, steps: tuple[str, ...]) -> str | None:
    return _schedule(env, name, default)


@accepts(
    {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"requests": _QUANTITIES, "limits": _QUANTITIES},
        },
    }
)
def resource_spec(env: Mapping[str, str], name: str, default: Any, steps: tuple[str, ...]) -> dict:
    return _resources(env, steps)


@accepts(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        ]
    }
)
def step_timeouts(env: Mapping[str, str], name: str, default: int, steps: tuple[str, ...]) -> dict[str, int]:
    return _step_timeouts(env, steps, default)


@accepts({"type": "array", "items": {"type": "string", "pattern": _KEY_PATTERN.pattern}, "uniqueItems": True})
def key_patterns(
    env: Mapping[str, str], name: str, default: tuple[str, ...], steps: tuple[str, ...]
) -> tuple:
    return _key_patterns(env, name, default)


@dataclass(frozen=True)
class Setting:
    """One DAG setting: its variable, parser, default (the value of an unset variable, as the docs
    show it), one line of docs, and where the Helm chart sets it (a values path; ``chart_default``:
    the chart renders the variable from exactly that value, so its default must be this one)."""

    env: str
    parse: Parser
    default: Any
    doc: str
    chart: str | None = None
    chart_default: bool = True
    shown: str | None = None  # the default as the docs show it, where repr-like rendering would not do

    def read(self, env: Mapping[str, str], step_names: tuple[str, ...]) -> Any:
        return self.parse(env, self.env, self.default, step_names)

    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None or self.default == ():
            return "—"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        if isinstance(self.default, tuple):
            return f"`{', '.join(self.default)}`"
        return f"`{self.default}`"


def setting(env: str, parse: Parser, default: Any, doc: str, **kwargs: Any) -> Any:
    """A dataclass field declared by its :class:`Setting`; its dataclass default is what
    :meth:`DagSettings.from_env` gives with no variable set (and no step names)."""
    spec = Setting(env, parse, default, doc, **kwargs)
    return field(default_factory=lambda: spec.read({}, ()), metadata={"setting": spec})


_RUNNERS = choice(TASK_RUNNERS)


@dataclass(frozen=True)
class DagSettings:
    """Everything the DAG file needs to shape its tasks. Build with :meth:`from_env`.

    Each field is declared once, with its variable, parser, default and doc (:class:`Setting`);
    ``python scripts/generate_config_docs.py`` writes the table of docs/configuration.md from these
    declarations, and tests/charts/test_dag_settings.py checks the chart against them.
    """

    task_runner: str = setting(
        "MLP_DAG_TASK_RUNNER",
        _RUNNERS,
        "kubernetes",
        "`kubernetes`: one KubernetesPodOperator per step; `local`: the same command as a local subprocess "
        "(one-machine mode)",
        chart="airflow.dag.taskRunner",
    )
    preflight: bool = setting(
        "MLP_DAG_PREFLIGHT",
        boolean,
        True,
        "run `pipeline doctor --json` as a task (`preflight`, right after `check_params`), in the same kind "
        "of pod with the same configuration, before any step",
        chart="airflow.dag.preflight",
    )
    trigger_allowed_keys: tuple[str, ...] = setting(
        "MLP_DAG_TRIGGER_ALLOWED_KEYS",
        key_patterns,
        DEFAULT_TRIGGER_ALLOWED_KEYS,
        "setting keys a manual run's params may set as `--set` (comma-separated, `*` matches any characters; "
        "the `source` param is `data.source.uri`; `none`: no key); others fail the run in its first task, "
        "`check_params`, without retry ([airflow](airflow.md))",
        chart="airflow.dag.triggerAllowedKeys",
    )
    schedule: str | None = setting(
        "MLP_DAG_SCHEDULE",
        cron,
        "0 3 * * 1",
        "cron of scheduled retraining (weekly, UTC) or a preset such as `@daily`; `none` to disable",
        chart="airflow.dag.schedule",
    )
    monitor_schedule: str | None = setting(
        "MLP_DAG_MONITOR_SCHEDULE",
        cron,
        "@hourly",
        "cron (UTC) or preset of the monitor DAG (`ml_pipeline_monitor`): the drift and live-performance "
        "check of the champion, which judges the last `monitor.window_hours`; `none`: only when triggered",
        chart="airflow.dag.monitorSchedule",
    )
    image: str = setting(
        "MLP_DAG_IMAGE",
        image_ref,
        "ml-pipeline/pipeline:latest",
        "pipeline image; a digest (`repo@sha256:...`) pins it",
        chart="global.images.pipeline",
        chart_default=False,
    )
    image_pull_policy: str = setting(
        "MLP_DAG_IMAGE_PULL_POLICY",
        choice(PULL_POLICIES),
        "IfNotPresent",
        "`Always`, `IfNotPresent` or `Never`",
        chart="global.images.pipeline.pullPolicy",
    )
    image_pull_secrets: tuple[str, ...] = setting(
        "MLP_DAG_IMAGE_PULL_SECRETS",
        names,
        (),
        "comma-separated Secret names",
        chart="global.imagePullSecrets",
    )
    namespace: str = setting(
        "MLP_DAG_NAMESPACE",
        k8s_name,
        "default",
        "namespace of the step pods",
        chart="global.pipeline.namespace",
        chart_default=False,
    )
    service_account: str = setting(
        "MLP_DAG_SERVICE_ACCOUNT",
        k8s_name,
        "default",
        "service account of the step pods",
        chart="global.pipeline.serviceAccountName",
        chart_default=False,
    )
    env_configmaps: tuple[str, ...] = setting(
        "MLP_DAG_ENV_CONFIGMAPS",
        names,
        (),
        "comma-separated ConfigMaps injected into step pods with `envFrom`",
        chart="airflow.dag.extraEnvConfigMaps",
        chart_default=False,
    )
    env_secrets: tuple[str, ...] = setting(
        "MLP_DAG_ENV_SECRETS",
        names,
        (),
        "comma-separated Secrets injected into step pods with `envFrom`",
        chart="airflow.dag.extraEnvSecrets",
        chart_default=False,
    )
    config_configmap: str | None = setting(
        "MLP_DAG_CONFIG_CONFIGMAP",
        one_name,
        None,
        "ConfigMap holding `config.yaml`, mounted at `/etc/ml-pipeline` (sets "
        "`PIPELINE_CONFIG=/etc/ml-pipeline/config.yaml`)",
    )
    resources: dict[str, dict[str, dict[str, str]]] = setting(  # noqa: RUF009 (a field with a default_factory)
        "MLP_DAG_RESOURCES",
        resource_spec,
        DEFAULT_RESOURCES,
        'JSON: `{"default": {"requests": {...}, "limits": {...}}, "train": {...}}`, merged over the defaults '
        "per resource; a step's own entry wins over `default`; unknown step names are refused",
        chart="airflow.dag.resources",
        shown="`default`: requests `cpu: 250m, memory: 512Mi`, limits `memory: 2Gi`; `train`: requests "
        "`cpu: 1, memory: 1Gi`, limits `memory: 4Gi`",
    )
    gpu_enabled: bool = setting(
        "MLP_DAG_GPU_ENABLED",
        boolean,
        False,
        "give the GPU-capable step (train) a GPU",
        chart="airflow.dag.gpu.enabled",
    )
    gpu_count: int = setting(
        "MLP_DAG_GPU_COUNT", integer(minimum=1), 1, "GPUs per train pod", chart="airflow.dag.gpu.count"
    )
    gpu_resource: str = setting(
        "MLP_DAG_GPU_RESOURCE",
        extended_resource,
        "nvidia.com/gpu",
        "extended resource name",
        chart="airflow.dag.gpu.resource",
    )
    gpu_node_selector: dict[str, str] = setting(  # noqa: RUF009 (a field with a default_factory)
        "MLP_DAG_GPU_NODE_SELECTOR",
        node_selector,
        {},
        "JSON object, train pod only",
        chart="airflow.dag.gpu.nodeSelector",
    )
    gpu_tolerations: tuple[dict[str, Any], ...] = setting(
        "MLP_DAG_GPU_TOLERATIONS",
        tolerations,
        (),
        "JSON list, train pod only",
        chart="airflow.dag.gpu.tolerations",
        shown="`[]`",
    )
    gpu_runtime_class: str | None = setting(
        "MLP_DAG_GPU_RUNTIME_CLASS",
        runtime_class,
        None,
        "`runtimeClassName` of the train pod when the GPU is on (e.g. `nvidia`)",
        chart="airflow.dag.gpu.runtimeClassName",
    )
    gpu_image: str | None = setting(
        "MLP_DAG_GPU_IMAGE",
        image_ref,
        None,
        "a CUDA build of the pipeline image for the train pod only when the GPU is on; every other step "
        "keeps `MLP_DAG_IMAGE`",
        chart="airflow.dag.gpu.image",
    )
    on_finish_action: str = setting(
        "MLP_DAG_ON_FINISH_ACTION",
        choice(ON_FINISH_ACTIONS),
        "delete_succeeded_pod",
        "`delete_pod`, `delete_succeeded_pod` or `keep_pod`",
        chart="airflow.dag.onFinishAction",
    )
    schedule_timeout_s: int = setting(
        "MLP_DAG_SCHEDULE_TIMEOUT_S",
        integer(minimum=1),
        600,
        "seconds a pod may wait to be scheduled",
        chart="airflow.dag.scheduleTimeoutSeconds",
    )
    startup_timeout_s: int = setting(
        "MLP_DAG_STARTUP_TIMEOUT_S",
        integer(minimum=1),
        600,
        "seconds from scheduled to running (image pull)",
        chart="airflow.dag.startupTimeoutSeconds",
    )
    gpu_schedule_timeout_s: int = setting(
        "MLP_DAG_GPU_SCHEDULE_TIMEOUT_S",
        integer(minimum=1),
        1800,
        "seconds the GPU pod may wait to be scheduled (node scale-up is slow)",
        chart="airflow.dag.gpu.scheduleTimeoutSeconds",
    )
    gpu_startup_timeout_s: int = setting(
        "MLP_DAG_GPU_STARTUP_TIMEOUT_S",
        integer(minimum=1),
        1200,
        "seconds from scheduled to running for the GPU pod (CUDA images are large)",
        chart="airflow.dag.gpu.startupTimeoutSeconds",
    )
    step_timeouts_s: dict[str, int] = setting(  # noqa: RUF009 (a field with a default_factory)
        "MLP_DAG_STEP_TIMEOUT_S",
        step_timeouts,
        3600,
        "execution timeout per step (a JSON object per step name, with an optional `default`, also "
        "accepted); pods add their schedule and startup timeouts to it, and get `activeDeadlineSeconds` = "
        "startup + step timeout",
        chart="airflow.dag.stepTimeoutSeconds",
    )
    run_timeout_s: int = setting(
        "MLP_DAG_RUN_TIMEOUT_S",
        integer(minimum=1),
        21600,
        "timeout of a whole run",
        chart="airflow.dag.runTimeoutSeconds",
    )
    retries: int = setting(
        "MLP_DAG_RETRIES",
        integer(),
        3,
        "retries of retryable failures (exit code 75); bad input (exit code 65) never retries",
        chart="airflow.dag.retries",
    )
    retry_delay_s: int = setting(
        "MLP_DAG_RETRY_DELAY_S",
        integer(minimum=1),
        30,
        "first retry delay; it doubles up to `MLP_DAG_MAX_RETRY_DELAY_S` (exponential backoff)",
        chart="airflow.dag.retryDelaySeconds",
    )
    max_retry_delay_s: int = setting(
        "MLP_DAG_MAX_RETRY_DELAY_S",
        integer(minimum=1),
        600,
        "largest retry delay; at least `MLP_DAG_RETRY_DELAY_S`",
        chart="airflow.dag.maxRetryDelaySeconds",
    )
    run_as_user: int = setting(
        "MLP_DAG_RUN_AS_USER",
        integer(minimum=1),
        10001,
        "UID of the step pods (the pipeline image's user)",
        chart="airflow.dag.runAsUser",
    )
    sweep_slots: int = setting(
        "MLP_DAG_SWEEP_SLOTS",
        integer(minimum=1),
        4,
        "sweep DAG (`ml_pipeline_sweep`): trial pods at once, mapped over slots "
        "([experiments](experiments.md#running-a-sweep-on-kubernetes))",
        chart="airflow.dag.sweepSlots",
    )
    sweep_worker_timeout_s: int = setting(
        "MLP_DAG_SWEEP_WORKER_TIMEOUT_S",
        integer(minimum=1),
        14400,
        "sweep DAG: execution timeout of one trial-worker pod",
        chart="airflow.dag.sweepWorkerTimeoutSeconds",
    )

    @classmethod
    def declared(cls) -> dict[str, Setting]:
        """Field name -> its :class:`Setting`, in declaration order."""
        return {f.name: f.metadata["setting"] for f in fields(cls)}

    @classmethod
    def from_env(cls, step_names: tuple[str, ...], env: Mapping[str, str] | None = None) -> DagSettings:
        env = os.environ if env is None else env
        values = {name: spec.read(env, step_names) for name, spec in cls.declared().items()}
        if values["max_retry_delay_s"] < values["retry_delay_s"]:
            raise ValueError(
                f"MLP_DAG_MAX_RETRY_DELAY_S={values['max_retry_delay_s']} is below "
                f"MLP_DAG_RETRY_DELAY_S={values['retry_delay_s']}"
            )
        return cls(**values)

    def resources_for(self, step: str) -> dict[str, dict[str, str]]:
        """Requests and limits of one step: its own entry over the ``default`` entry."""
        default = self.resources.get("default", {})
        own = self.resources.get(step, {})
        return {
            part: {**default.get(part, {}), **own.get(part, {})}
            for part in ("requests", "limits")
            if default.get(part) or own.get(part)
        }
