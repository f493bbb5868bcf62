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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
# A dotted setting key where `*` stands for any characters.
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_*]+(\.[A-Za-z0-9_*]+)*$")

# A Kubernetes name (DNS-1123 subdomain) for ConfigMaps, Secrets and service accounts.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")


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


def _step_timeouts(env: Mapping[str, str], step_names: tuple[str, ...]) -> dict[str, int]:
    """MLP_DAG_STEP_TIMEOUT_S: one number for every step, or a JSON object per step name."""
    name = "MLP_DAG_STEP_TIMEOUT_S"
    raw = _env(env, name, "3600")
    if raw.startswith("{"):
        given = _json(env, name, {}, dict)
        default = given.pop("default", 3600)
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


def _schedule(env: Mapping[str, str]) -> str | None:
    value = _env(env, "MLP_DAG_SCHEDULE", "0 3 * * 1")
    if value.lower() in ("none", "off", "null"):
        return None
    if not value.startswith("@") and len(value.split()) != 5:
        raise ValueError(
            f"MLP_DAG_SCHEDULE={value!r} is not a 5-field cron expression, a preset such as @daily, or none"
        )
    return value


@dataclass(frozen=True)
class DagSettings:
    """Everything the DAG file needs to shape its tasks. Build with :meth:`from_env`."""

    task_runner: str = "kubernetes"
    preflight: bool = True
    schedule: str | None = "0 3 * * 1"
    image: str = "ml-pipeline/pipeline:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    namespace: str = "default"
    service_account: str = "default"
    env_configmaps: tuple[str, ...] = ()
    env_secrets: tuple[str, ...] = ()
    config_configmap: str | None = None
    resources: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    gpu_enabled: bool = False
    gpu_count: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict[str, Any], ...] = ()
    on_finish_action: str = "delete_succeeded_pod"
    schedule_timeout_s: int = 600
    startup_timeout_s: int = 600
    gpu_schedule_timeout_s: int = 1800
    gpu_startup_timeout_s: int = 1200
    gpu_runtime_class: str | None = None
    gpu_image: str | None = None
    step_timeouts_s: dict[str, int] = field(default_factory=dict)
    run_timeout_s: int = 21600
    retries: int = 3
    retry_delay_s: int = 30
    max_retry_delay_s: int = 600
    run_as_user: int = 10001
    trigger_allowed_keys: tuple[str, ...] = DEFAULT_TRIGGER_ALLOWED_KEYS

    @classmethod
    def from_env(cls, step_names: tuple[str, ...], env: Mapping[str, str] | None = None) -> DagSettings:
        env = os.environ if env is None else env
        node_selector = _json(env, "MLP_DAG_GPU_NODE_SELECTOR", {}, dict)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in node_selector.items()):
            raise ValueError("MLP_DAG_GPU_NODE_SELECTOR must map label names to string values")
        tolerations = _json(env, "MLP_DAG_GPU_TOLERATIONS", [], list)
        if not all(isinstance(t, dict) for t in tolerations):
            raise ValueError("MLP_DAG_GPU_TOLERATIONS must be a JSON list of toleration objects")
        gpu_resource = _env(env, "MLP_DAG_GPU_RESOURCE", "nvidia.com/gpu")
        if not re.match(r"^[a-z0-9.-]+/[A-Za-z0-9_.-]+$", gpu_resource):
            raise ValueError(f"MLP_DAG_GPU_RESOURCE={gpu_resource!r} is not an extended resource name")
        image = _env(env, "MLP_DAG_IMAGE", "ml-pipeline/pipeline:latest")
        if any(c.isspace() for c in image):
            raise ValueError(f"MLP_DAG_IMAGE={image!r} contains whitespace")
        gpu_image = _env(env, "MLP_DAG_GPU_IMAGE", "").strip()
        if any(c.isspace() for c in gpu_image):
            raise ValueError(f"MLP_DAG_GPU_IMAGE={gpu_image!r} contains whitespace")
        gpu_runtime_class = _env(env, "MLP_DAG_GPU_RUNTIME_CLASS", "").strip()
        if gpu_runtime_class and not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", gpu_runtime_class):
            raise ValueError(f"MLP_DAG_GPU_RUNTIME_CLASS={gpu_runtime_class!r} is not a RuntimeClass name")
        retry_delay = _int(env, "MLP_DAG_RETRY_DELAY_S", 30, minimum=1)
        max_retry_delay = _int(env, "MLP_DAG_MAX_RETRY_DELAY_S", 600, minimum=1)
        if max_retry_delay < retry_delay:
            raise ValueError(
                f"MLP_DAG_MAX_RETRY_DELAY_S={max_retry_delay} is below MLP_DAG_RETRY_DELAY_S={retry_delay}"
            )
        config_configmap = _names(env, "MLP_DAG_CONFIG_CONFIGMAP")
        if len(config_configmap) > 1:
            raise ValueError("MLP_DAG_CONFIG_CONFIGMAP names one ConfigMap")
        return cls(
            task_runner=_choice(env, "MLP_DAG_TASK_RUNNER", "kubernetes", TASK_RUNNERS),
            preflight=_bool(env, "MLP_DAG_PREFLIGHT", True),
            schedule=_schedule(env),
            image=image,
            image_pull_policy=_choice(env, "MLP_DAG_IMAGE_PULL_POLICY", "IfNotPresent", PULL_POLICIES),
            image_pull_secrets=_names(env, "MLP_DAG_IMAGE_PULL_SECRETS"),
            namespace=_k8s_name(env, "MLP_DAG_NAMESPACE", "default"),
            service_account=_k8s_name(env, "MLP_DAG_SERVICE_ACCOUNT", "default"),
            env_configmaps=_names(env, "MLP_DAG_ENV_CONFIGMAPS"),
            env_secrets=_names(env, "MLP_DAG_ENV_SECRETS"),
            config_configmap=config_configmap[0] if config_configmap else None,
            resources=_resources(env, step_names),
            gpu_enabled=_bool(env, "MLP_DAG_GPU_ENABLED", False),
            gpu_count=_int(env, "MLP_DAG_GPU_COUNT", 1, minimum=1),
            gpu_resource=gpu_resource,
            gpu_node_selector=node_selector,
            gpu_tolerations=tuple(tolerations),
            on_finish_action=_choice(
                env, "MLP_DAG_ON_FINISH_ACTION", "delete_succeeded_pod", ON_FINISH_ACTIONS
            ),
            schedule_timeout_s=_int(env, "MLP_DAG_SCHEDULE_TIMEOUT_S", 600, minimum=1),
            startup_timeout_s=_int(env, "MLP_DAG_STARTUP_TIMEOUT_S", 600, minimum=1),
            gpu_schedule_timeout_s=_int(env, "MLP_DAG_GPU_SCHEDULE_TIMEOUT_S", 1800, minimum=1),
            gpu_startup_timeout_s=_int(env, "MLP_DAG_GPU_STARTUP_TIMEOUT_S", 1200, minimum=1),
            gpu_runtime_class=gpu_runtime_class or None,
            gpu_image=gpu_image or None,
            step_timeouts_s=_step_timeouts(env, step_names),
            run_timeout_s=_int(env, "MLP_DAG_RUN_TIMEOUT_S", 21600, minimum=1),
            retries=_int(env, "MLP_DAG_RETRIES", 3),
            retry_delay_s=retry_delay,
            max_retry_delay_s=max_retry_delay,
            run_as_user=_int(env, "MLP_DAG_RUN_AS_USER", 10001, minimum=1),
            trigger_allowed_keys=_key_patterns(
                env, "MLP_DAG_TRIGGER_ALLOWED_KEYS", DEFAULT_TRIGGER_ALLOWED_KEYS
            ),
        )

    def resources_for(self, step: str) -> dict[str, dict[str, str]]:
        """Requests and limits of one step: its own entry over the ``default`` entry."""
        default = self.resources.get("default", {})
        own = self.resources.get(step, {})
        return {
            part: {**default.get(part, {}), **own.get(part, {})}
            for part in ("requests", "limits")
            if default.get(part) or own.get(part)
        }
