"""Alert episodes and the retrain guard rails: one alert per episode, the cool-down, no retrain on
data that fails the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.monitor.episodes import State, decide

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def check(
    state: State, hours: float, *, drift=False, degradation=False, judged=True, valid=True, cooldown=24
):
    return decide(
        state,
        judged=judged,
        problems={"drift": drift, "degradation": degradation},
        valid=valid,
        now=T0 + timedelta(hours=hours),
        cooldown_hours=cooldown,
        run_id=f"run-{hours}",
    )


def test_persistent_drift_alerts_once_and_a_return_to_normal_closes_the_episode() -> None:
    first = check(State(), 0, drift=True)
    assert first.opened == ["drift"] and first.retrain_triggered and first.cause == "drift"
    second = check(State.parse(first.state.dump()), 1, drift=True)
    assert second.opened == [] and "drift" in second.state.open
    assert not second.retrain_triggered and "cool-down" in second.retrain_skipped
    normal = check(second.state, 2)
    assert normal.closed == ["drift"] and normal.state.open == {} and not normal.retrain_triggered
    again = check(normal.state, 3, drift=True)
    assert again.opened == ["drift"]  # a new episode, a new alert
    assert not again.retrain_triggered  # ... but still inside the cool-down of the first retrain


def test_the_cool_down_ends() -> None:
    first = check(State(), 0, drift=True)
    later = check(first.state, 25, drift=True)
    assert later.retrain_triggered and later.state.last_retrain_at == (T0 + timedelta(hours=25)).isoformat()
    assert check(first.state, 25, drift=True, cooldown=0).retrain_triggered
    assert check(first.state, 1, drift=True, cooldown=0).retrain_triggered


def test_a_check_that_only_looks_reports_the_decision_without_starting_the_cool_down() -> None:
    looked = decide(
        State(),
        judged=True,
        problems={"drift": True},
        valid=True,
        now=T0,
        cooldown_hours=24,
        run_id="look",
        act=False,
    )
    assert looked.retrain_triggered and looked.state.last_retrain_at is None
    assert check(looked.state, 1, drift=True).retrain_triggered  # a later --retrain is not held back


def test_a_window_not_judged_changes_nothing() -> None:
    opened = check(State(), 0, drift=True).state
    unjudged = check(opened, 1, judged=False)
    assert unjudged.state is opened and unjudged.opened == unjudged.closed == []
    assert not unjudged.retrain_triggered


def test_data_failing_the_contract_alerts_instead_of_retraining() -> None:
    result = check(State(), 0, drift=True, valid=False)
    assert not result.retrain_triggered and "fails the data contract" in result.retrain_skipped
    assert sorted(result.opened) == ["drift", "invalid_data"]
    assert result.state.last_retrain_at is None  # no cool-down started: nothing was retrained
    fixed = check(result.state, 1, drift=True, valid=True)
    assert fixed.retrain_triggered and fixed.closed == ["invalid_data"]


def test_degradation_is_the_stronger_cause() -> None:
    result = check(State(), 0, drift=True, degradation=True)
    assert result.cause == "degradation" and sorted(result.opened) == ["degradation", "drift"]


def test_an_unreadable_state_starts_afresh() -> None:
    assert State.parse("{not json") == State()
    assert State.parse(None) == State()
