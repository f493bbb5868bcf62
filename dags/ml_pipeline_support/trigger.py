"""What a manual run's params may change: the ``--set`` options, checked against an allow-list.

A run's params (``source``, ``overrides``) become ``--set key=value`` options of every step. Whoever
may trigger the DAG is not necessarily whoever may configure it, so only the setting keys matching
``MLP_DAG_TRIGGER_ALLOWED_KEYS`` (:attr:`DagSettings.trigger_allowed_keys`) may be set from a
trigger; the ``source`` param counts as the key ``data.source.uri``. Anything else fails the run in
its first task, :class:`TriggerParamsCheck`, before any pod is built, and is not retried. Every
step task checks again when it renders its arguments, so a cleared or skipped check task cannot
let a refused key through.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

CHECK_TASK_ID = "check_params"
ALLOWED_KEYS_SETTING = "MLP_DAG_TRIGGER_ALLOWED_KEYS"
ALLOWED_KEYS_VALUE = "airflow.dag.triggerAllowedKeys"
SOURCE_KEY = "data.source.uri"

# `key=value` as the pipeline's `--set` accepts it: a dotted settings path, then anything.
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=.*$", re.DOTALL)


class TriggerParamsRefused(AirflowFailException):
    """A run's params are malformed or set keys outside the allow-list: never retried."""

    retryable = False
    exit_code = None

    def __init__(self, message: str):
        self.step = CHECK_TASK_ID
        self.error_line = message
        super().__init__(message)


def key_allowed(key: str, patterns: Iterable[str]) -> bool:
    """Whether a dotted setting key matches one of the patterns (``*`` matches any characters,
    dots included: ``train.*`` covers ``train.max_epochs``, ``sweep.space.*`` every dimension).
    Case matters, as it does for the pipeline's settings."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def requested_overrides(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(key, "key=value")`` for each ``--set`` the params ask for: ``source`` first, then each
    ``overrides`` item. A malformed param raises :class:`TriggerParamsRefused`."""
    params = params or {}
    requested: list[tuple[str, str]] = []
    source = params.get("source")
    if source:
        if not isinstance(source, str) or "\n" in source:
            raise TriggerParamsRefused("param 'source' must be a single-line URI")
        requested.append((SOURCE_KEY, f"{SOURCE_KEY}={source.strip()}"))
    overrides = params.get("overrides") or []
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(overrides, list):
        raise TriggerParamsRefused("param 'overrides' must be a list of key=value strings")
    for item in overrides:
        if not isinstance(item, str) or not OVERRIDE.match(item.strip()):
            raise TriggerParamsRefused(
                f"param 'overrides': {item!r} is not key=value with a dotted key (e.g. train.max_epochs=5)"
            )
        item = item.strip()
        requested.append((item.partition("=")[0], item))
    return requested


def refusal_message(refused: Sequence[str], allowed: Sequence[str]) -> str:
    """Names the refused keys and the setting that allows them; never a value (it may be secret)."""
    keys = ", ".join(
        f"{key} (param 'source' sets data.source.uri)" if key == SOURCE_KEY else key
        for key in dict.fromkeys(refused)
    )
    return (
        f"trigger params refused: {keys} may not be set from a trigger. A trigger may set "
        f"only the keys matching {ALLOWED_KEYS_SETTING} (chart value {ALLOWED_KEYS_VALUE}): "
        f"{', '.join(allowed) if allowed else 'none'}. Change the configuration instead, or have an "
        "operator add the keys to that setting."
    )


def override_arguments(params: Mapping[str, Any] | None, allowed: Sequence[str]) -> list[str]:
    """The ``--set`` options of a run's params, each key checked against ``allowed``."""
    requested = requested_overrides(params)
    refused = [key for key, _ in requested if not key_allowed(key, allowed)]
    if refused:
        raise TriggerParamsRefused(refusal_message(refused, allowed))
    args: list[str] = []
    for _, item in requested:
        args += ["--set", item]
    return args


class TriggerParamsCheck(BaseOperator):
    """The first task of a run: refuses params outside the allow-list before any step starts."""

    ui_color = "#fdf2e9"

    def __init__(self, *, allowed_keys: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("task_id", CHECK_TASK_ID)
        kwargs.setdefault("do_xcom_push", False)
        kwargs.setdefault(
            "doc_md",
            f"Refuse run params that set keys outside {ALLOWED_KEYS_SETTING}, before any step runs.",
        )
        super().__init__(**kwargs)
        self.allowed_keys = tuple(allowed_keys)

    def execute(self, context: Any) -> None:
        override_arguments(context.get("params"), self.allowed_keys)
        keys = [key for key, _ in requested_overrides(context.get("params"))]
        self.log.info("Run params accepted: %s", ", ".join(keys) or "none (the configured settings)")
