"""Episodes and the retrain guard rails: pure decisions on the state one monitoring run hands the
next (recorded as the ``monitor.state`` tag of each monitoring run, see :mod:`pipeline.monitor.check`).

An episode is a stretch of consecutive judged checks that found a problem of one kind (``drift``,
``degradation``, ``invalid_data``). It opens on the first such check (the one alert of the episode),
stays open while the problem persists (no new alert), and closes on the first judged check that
finds it gone. A window too small to judge changes nothing.

The cool-down: a retrain the monitor triggers is refused while the last one acted on (run with
``--retrain``, or handed to the training DAG with ``--trigger``) is younger than
``monitor.cooldown_hours``; a failed retrain counts (no retry loop); a current window that fails
the data contract never triggers a retrain (a retrain on data the pipeline would refuse would only
fail, or loop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

KINDS = ("drift", "degradation", "invalid_data")


@dataclass
class State:
    """What one check hands the next: the open episodes (kind -> when it opened, and by which run)
    and when the monitor last triggered a retrain."""

    open: dict[str, dict[str, str]] = field(default_factory=dict)
    last_retrain_at: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> State:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(
                open={k: dict(v) for k, v in data.get("open", {}).items() if k in KINDS},
                last_retrain_at=data.get("last_retrain_at"),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()  # an unreadable record starts afresh: at worst one alert too many

    def dump(self) -> str:
        return json.dumps({"open": self.open, "last_retrain_at": self.last_retrain_at}, sort_keys=True)


@dataclass
class Decision:
    state: State
    opened: list[str]  # episodes opened by this check: each one alert
    closed: list[str]  # episodes this check found over
    retrain_triggered: bool
    cause: str | None  # drift | degradation
    retrain_skipped: str | None  # why a warranted retrain was not triggered


def decide(
    previous: State,
    *,
    judged: bool,
    problems: dict[str, bool],
    valid: bool,
    now: datetime,
    cooldown_hours: float,
    run_id: str,
    act: bool = True,
) -> Decision:
    """The episodes and the retrain verdict of one check.

    ``problems`` maps ``drift`` and ``degradation`` to whether this check found them; ``valid``
    is whether the current window passed the data contract (checked only when a retrain is
    warranted). Degradation is the stronger cause when both are found. ``act``: the caller acts on
    a triggered retrain (``--retrain``, or the DAG's asset event), so the cool-down starts; a check
    that only looks reports the decision and leaves the cool-down alone.
    """
    if not judged:
        return Decision(previous, [], [], False, None, None)
    state = State(open=dict(previous.open), last_retrain_at=previous.last_retrain_at)
    found = {kind: bool(problems.get(kind)) for kind in ("drift", "degradation")}
    cause = "degradation" if found["degradation"] else "drift" if found["drift"] else None
    found["invalid_data"] = cause is not None and not valid
    opened, closed = [], []
    for kind, present in found.items():
        if present and kind not in state.open:
            state.open[kind] = {"since": now.isoformat(), "monitor_run_id": run_id}
            opened.append(kind)
        elif not present and kind in state.open:
            del state.open[kind]
            closed.append(kind)
    if cause is None:
        return Decision(state, opened, closed, False, None, None)
    if not valid:
        return Decision(
            state, opened, closed, False, cause, "the current window fails the data contract: not retraining"
        )
    if state.last_retrain_at and cooldown_hours > 0:
        until = datetime.fromisoformat(state.last_retrain_at) + timedelta(hours=cooldown_hours)
        if now < until:
            return Decision(
                state,
                opened,
                closed,
                False,
                cause,
                f"cool-down: the last retrain was triggered at {state.last_retrain_at}; "
                f"the next may be from {until.isoformat()} (monitor.cooldown_hours={cooldown_hours:g})",
            )
    if act:
        state.last_retrain_at = now.isoformat()
    return Decision(state, opened, closed, True, cause, None)


def utcnow() -> datetime:
    return datetime.now(UTC)
