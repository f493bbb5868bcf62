"""The MLflow Model Registry behind a promotion gate, with compare-and-set on the ``champion`` alias.

MLflow has no conditional alias update, so the read-compare-write of a promotion runs under a lock
held by every process that can promote this model: :class:`pipeline.locks.RegistryLease`, kept in
the registry itself (tickets of the registered model ``<model>.lock``). It is therefore keyed to
the registry, whatever feature store or pipeline home a process has, and it survives a restart of
the tracking server. Every alias (and decision) write first checks that the lease is still held
(:meth:`~pipeline.locks.RegistryLease.check`); a holder that lost it (it froze past its lease and
another process took over) gets a retryable error instead of writing.

Two runs finishing together are therefore serialised: the second one compares against the
champion the first one may have just promoted, scored on its own frozen test snapshot, and
``champion`` can never end on the worse model.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import RetryableError
from pipeline.locks import RegistryLease, registry_lease
from pipeline.metrics import higher_is_better, improvement
from pipeline.names import (
    BASELINE_SCORE,
    CHALLENGER,
    CHAMPION,
    CHAMPION_SCORE,
    CHAMPION_VERSION,
    DECISION,
    GATE_METRIC,
    GATE_SCORE,
    GATE_TAGS,
    NOT_APPLIED,
    REASON,
    REGISTRY_MODEL_TAG,
    REGISTRY_VERSION_TAG,
    RUN_TAG,
    STATE,
)
from pipeline.tracking import configure

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

    from pipeline.settings import Settings

logger = logging.getLogger(__name__)

PENDING = "pending"
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # what MLflow answers for no alias


LEASE_S = 60.0  # how long a lock holder that stopped renewing (died, froze) keeps the lock


def registry_lock(
    settings: Settings, model_name: str, lease_s: float = LEASE_S
) -> contextlib.AbstractContextManager[RegistryLease]:
    """The promotion lock of ``model_name`` in the configured registry. It yields the lease, whose
    ``check()`` every write under the lock calls first. The lease has a client of its own (its
    heartbeat runs in another thread)."""
    return registry_lease(
        configure(settings),
        model_name,
        lease_s,
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
            DECISION: "promoted" if self.promote else "rejected",
            REASON: self.reason,
            GATE_METRIC: self.metric,
            GATE_SCORE: f"{self.score:.6g}",
        }
        if self.baseline_score is not None:
            tags[BASELINE_SCORE] = f"{self.baseline_score:.6g}"
        if self.champion_version is not None:
            tags[CHAMPION_VERSION] = self.champion_version
        if self.champion_score is not None:
            tags[CHAMPION_SCORE] = f"{self.champion_score:.6g}"
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
    """The version a pipeline run registered (the first one, should a lost answer have made two)."""
    mine = [
        v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get(RUN_TAG) == pipeline_run_id
    ]
    return min(mine, key=lambda v: int(v.version)) if mine else None


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
    """The version ``champion`` names, or None when there is none (a failure to ask is raised, never
    taken for "no champion": that would make the gate treat a challenger as the first model)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise


# --------------------------------------------------------------------------------------------
# Writes that converge: each is idempotent and safe to repeat after a crash at any point
# --------------------------------------------------------------------------------------------


def point_challenger(client: MlflowClient, lease: RegistryLease, name: str, version: str) -> None:
    """``challenger`` names the newest registered version: it never moves back to an older one
    (a retry of an older run after a newer one registered leaves it where it is)."""
    current = alias_version(client, name, CHALLENGER)
    if current is not None and int(current) >= int(version):
        return
    lease.check()
    client.set_registered_model_alias(name, CHALLENGER, version)


def record_decision(
    client: MlflowClient, lease: RegistryLease, name: str, version: str, decision: GateDecision
) -> None:
    """The decision's tags, ``gate.decision`` last (so its presence means all of them are there),
    marked pending until :func:`apply_decision` has done what it implies."""
    tags = decision.tags()
    lease.check()
    stale = set(GATE_TAGS) - set(tags)
    existing = client.get_model_version(name, version).tags
    for key in sorted(stale & set(existing)):  # left by an interrupted earlier decision
        client.delete_model_version_tag(name, version, key)
    for key, value in tags.items():
        if key != DECISION:
            client.set_model_version_tag(name, version, key, value)
    client.set_model_version_tag(name, version, STATE, PENDING)
    client.set_model_version_tag(name, version, DECISION, tags[DECISION])


def apply_decision(client: MlflowClient, lease: RegistryLease, name: str, version: Any) -> dict[str, str]:
    """Complete a recorded decision: the ``champion`` move it implies, the run's tags, then the end
    of ``pending``. Returns the version's tags.

    The rule for ``champion``: a promotion moves it only if it still names the version the
    decision was compared against (none, for a first model): a compare-and-set. Every register
    step completes all pending decisions before it compares anything, so under the lock that
    compare holds; if the champion was moved by hand meanwhile, the promotion is not applied (tag
    ``gate.not_applied`` says why) and nothing that moved since is overwritten.
    """
    number = str(version.version)
    tags = dict(client.get_model_version(name, number).tags)
    pending = tags.get(STATE) == PENDING  # a completed decision's alias move is history: left alone
    if pending and tags.get(DECISION) == "promoted" and NOT_APPLIED not in tags:
        current = alias_version(client, name, CHAMPION)
        compared = tags.get(CHAMPION_VERSION)
        if current != number:
            if current == compared:
                lease.check()
                client.set_registered_model_alias(name, CHAMPION, number)
            else:
                was = f"v{current}" if current else "unset"
                note = (
                    f"champion was {was} when the promotion was completed, not "
                    f"{f'v{compared}' if compared else 'unset'} as compared against: left as it is"
                )
                logger.warning("%s v%s: %s", name, number, note)
                lease.check()
                client.set_model_version_tag(name, number, NOT_APPLIED, note)
                tags[NOT_APPLIED] = note
    if version.run_id:
        client.set_tag(version.run_id, REGISTRY_MODEL_TAG, name)
        client.set_tag(version.run_id, REGISTRY_VERSION_TAG, number)
        client.set_tag(version.run_id, DECISION, tags.get(DECISION, ""))
        client.set_tag(version.run_id, REASON, tags.get(REASON, ""))
    if pending:
        client.delete_model_version_tag(name, number, STATE)
        del tags[STATE]
    return tags


def complete_pending(client: MlflowClient, lease: RegistryLease, name: str) -> None:
    """Roll forward every decision that a crashed (or failed) register step left pending, oldest
    first, so that what follows compares against the champion a clean run would have left."""
    pending = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get(STATE) == PENDING and v.tags.get(DECISION)
    ]
    for version in sorted(pending, key=lambda v: int(v.version)):
        logger.info("%s v%s: completing the decision an interrupted run recorded", name, version.version)
        apply_decision(client, lease, name, version)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise
