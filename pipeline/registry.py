"""The MLflow Model Registry behind a promotion gate, with compare-and-set on the ``champion`` alias.

MLflow has no conditional alias update, so the read-compare-write of a promotion runs under a
lock shared by every run that can promote this model: a PostgreSQL advisory lock when the
feature store is PostgreSQL (the cluster case: pods on different nodes), else a file lock next to
the embedded databases (one machine). Two runs finishing together are therefore serialised: the
second one compares against the champion the first one may have just promoted, scored on its own
frozen test snapshot, and ``champion`` can never end on the worse model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import RetryableError
from pipeline.locks import shared_lock
from pipeline.metrics import higher_is_better, improvement

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

    from pipeline.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def registry_lock(settings: Settings, model_name: str) -> contextlib.AbstractContextManager[None]:
    return shared_lock(
        settings.resolved_feature_store_url,
        f"ml-pipeline/registry/{model_name}",
        settings.home / "locks" / f"registry-{model_name}.lock",
        settings.registry_lock_timeout_s,
        f"the registry lock of {model_name!r}",
    )


@dataclass
class GateDecision:
    promote: bool
    reason: str
    metric: str
    score: float
    baseline_score: float | None
    champion_version: str | None
    champion_score: float | None

    def tags(self) -> dict[str, str]:
        tags = {
            "gate.decision": "promoted" if self.promote else "rejected",
            "gate.reason": self.reason,
            "gate.metric": self.metric,
            "gate.score": f"{self.score:.6g}",
        }
        if self.baseline_score is not None:
            tags["gate.baseline_score"] = f"{self.baseline_score:.6g}"
        if self.champion_version is not None:
            tags["gate.champion_version"] = self.champion_version
        if self.champion_score is not None:
            tags["gate.champion_score"] = f"{self.champion_score:.6g}"
        return tags


def decide(
    settings: Settings,
    metric: str,
    score: float,
    baseline_score: float | None,
    champion_version: str | None,
    champion_score: float | None,
    champion_note: str = "",
) -> GateDecision:
    """The promotion gate: beat the baseline; then beat the champion by the margin, or, for the
    first model, meet the absolute floor."""
    gate = settings.gate
    direction = "higher" if higher_is_better(metric) else "lower"

    def result(promote: bool, reason: str) -> GateDecision:
        return GateDecision(promote, reason, metric, score, baseline_score, champion_version, champion_score)

    if (
        gate.require_beat_baseline
        and baseline_score is not None
        and improvement(metric, score, baseline_score) <= 0
    ):
        return result(
            False,
            f"{metric} {score:.4f} does not beat the baseline's {baseline_score:.4f} ({direction} is better)",
        )
    if champion_version is None:
        if gate.min_score is not None and improvement(metric, score, gate.min_score) < 0:
            return result(
                False, f"first model: {metric} {score:.4f} misses the floor gate.min_score={gate.min_score}"
            )
        floor = f" and meets the floor {gate.min_score}" if gate.min_score is not None else ""
        return result(True, f"first model: {metric} {score:.4f} beats the baseline{floor}")
    gain = improvement(metric, score, champion_score)
    if gain > gate.margin:
        return result(
            True,
            f"{metric} {score:.4f} beats champion v{champion_version} ({champion_score:.4f}) by {gain:.4f} > "
            f"margin {gate.margin} on the same test snapshot{champion_note}",
        )
    return result(
        False,
        f"{metric} {score:.4f} does not beat champion v{champion_version} ({champion_score:.4f}) "
        "by more than "
        f"margin {gate.margin} (difference {gain:+.4f}) on the same test snapshot{champion_note}",
    )


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="Trained and promoted by the ml-pipeline.")
        except MlflowException:  # created concurrently
            client.get_registered_model(name)


def find_version_for_run(client: MlflowClient, name: str, pipeline_run_id: str) -> Any | None:
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get("pipeline.run_id") == pipeline_run_id:
            return version
    return None


def wait_until_ready(client: MlflowClient, name: str, version: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        current = client.get_model_version(name, version)
        if current.status == "READY":
            return
        if current.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RetryableError(f"model {name} v{version} is {current.status}: {current.status_message}")
        time.sleep(0.5)


def champion(client: MlflowClient, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
