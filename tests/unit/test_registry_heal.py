"""The register step converges: whichever registry call fails (before it reaches the registry, or
after it took effect with its answer lost), a retry leaves exactly the state a clean run leaves:
aliases, version tags, run tags, the step's summary, and no lock ticket behind.

Real MLflow (the embedded SQLite store) and real trained models: run A is the champion (v1), run
B is better (promoted over A), run C is worse (rejected against B). The registry database is
restored from a snapshot before each scenario. A fault is one call of the step's MlflowClient
raising as a 5xx does after MLflow's own retries; a killed pod stops at the same points.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import runner
from pipeline.errors import RetryableError
from pipeline.settings import Settings
from pipeline.steps import register

pytestmark = pytest.mark.slow

NAME = "penguins"
FAST = {"max_epochs": 8, "patience": 3}
WEAK = {"max_epochs": 1, "learning_rate": 0.00005, "hidden_sizes": [4]}
GATE = {"margin": 0.0, "min_score": 0.0, "require_beat_baseline": False}
WRITES = ("set_", "delete_", "create_")


class FaultyClient:
    """A real MlflowClient whose call number ``fail_at`` raises once, before or after it runs."""

    def __init__(self, client: Any, fail_at: int | None = None, after: bool = False):
        self._client, self.fail_at, self.after, self.calls = client, fail_at, after, []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            index = len(self.calls)
            self.calls.append(name)
            if index == self.fail_at and not self.after:
                raise _fault(name)
            result = attribute(*args, **kwargs)
            if index == self.fail_at:
                raise _fault(name)
            return result

        return call


def _fault(name: str) -> Exception:
    from mlflow.exceptions import MlflowException

    return MlflowException(f"injected: {name} answered 503", error_code="TEMPORARILY_UNAVAILABLE")


class World:
    def __init__(self, home: Path, settings: Settings):
        self.home, self.settings = home, settings
        self.db = home / "mlflow.db"
        self.clients: list[FaultyClient] = []

    def save(self, name: str = "start") -> None:
        _copy_db(self.db, self.home / f"snapshot-{name}.db")

    def restore(self, name: str = "start") -> None:
        """Back to a saved registry: ``start`` (A champion; B and C not registered) or ``after b``
        (B registered cleanly, as a clean run leaves it; C not registered)."""
        _copy_db(self.home / f"snapshot-{name}.db", self.db)
        store = runner.make_store(self.settings)
        for run_id in ("run-b", "run-c") if name == "start" else ("run-c",):
            store.remove(store.step_path(run_id, "register"))

    def register(self, run_id: str, fail_at: int | None = None, after: bool = False) -> dict[str, Any]:
        real = register.configure

        def faulty(settings: Settings) -> FaultyClient:
            client = FaultyClient(real(settings), fail_at, after)
            self.clients.append(client)
            return client

        register.configure = faulty
        try:
            manifest = runner.execute_step(self.settings, run_id, "register")
        finally:
            register.configure = real
        summary = dict(manifest.summary)
        return summary

    def state(self) -> dict[str, Any]:
        from mlflow import MlflowClient

        uri = f"sqlite:///{self.db}"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions = sorted(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))
        runs = {
            v.version: {
                k: value
                for k, value in client.get_run(v.run_id).data.tags.items()
                if k.startswith(("registry.", "gate."))
            }
            for v in versions
        }
        return {
            "aliases": dict(client.get_registered_model(NAME).aliases),
            "versions": {v.version: (dict(v.tags), sorted(v.aliases), v.description) for v in versions},
            "run tags": runs,
            "lock tickets": [v.version for v in client.search_model_versions(f"name = '{NAME}.lock'")],
        }


def _copy_db(source: Path, target: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("heal") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        import os

        for key in list(os.environ):
            if key.startswith(("PIPELINE_", "MLFLOW_")):
                patch.delenv(key)
        patch.setenv("PIPELINE_HOME", str(home))
        common = {"gate": GATE, "evaluate": {"permutation_repeats": 1}}
        weak = Settings.load(train={**FAST, **WEAK}, seed=2, **common)
        good = Settings.load(train={**FAST, "max_epochs": 25}, seed=1, **common)
        gate = Settings.load(**common)
        runner.run_pipeline(weak, "run-a", stop_after="register")
        runner.run_pipeline(good, "run-b", stop_after="evaluate")
        runner.run_pipeline(
            Settings.load(train={**FAST, **WEAK}, seed=3, **common), "run-c", stop_after="evaluate"
        )
        world = World(home, gate)
        world.save()
        yield world


@pytest.fixture(scope="module")
def clean(world: World) -> dict[str, Any]:
    """What clean runs leave: B registered (promoted over A), then C (rejected against B)."""
    world.restore()
    b = world.register("run-b")
    calls_b = list(world.clients[-1].calls)
    after_b = world.state()
    world.save("after b")  # what each scenario of C starts from
    c = world.register("run-c")
    calls_c = list(world.clients[-1].calls)
    assert b["promoted"] and after_b["aliases"] == {"champion": 2, "challenger": 2}, after_b
    assert not c["promoted"] and world.state()["aliases"] == {"champion": 2, "challenger": 3}
    after_bc = world.state()
    b_again = world.register("run-b")  # a rerun of a completed step changes nothing
    assert world.state() == after_bc
    return {
        "b again": b_again,
        "b": b,
        "calls b": calls_b,
        "state b": after_b,
        "c": c,
        "calls c": calls_c,
        "state bc": after_bc,
    }


def _scenarios(calls: list[str]) -> list[tuple[int, bool, str]]:
    out = [(i, False, name) for i, name in enumerate(calls)]
    out += [(i, True, name) for i, name in enumerate(calls) if name.startswith(WRITES)]
    return out


@pytest.mark.parametrize("run_id", ["run-b", "run-c"])
def test_a_retry_after_any_failed_registry_call_converges_on_the_clean_state(
    world: World, clean: dict[str, Any], run_id: str
) -> None:
    key = run_id[-1]
    calls = clean[f"calls {key}"]
    assert "set_registered_model_alias" in calls and "create_model_version" in calls
    diverged = []
    for index, after, name in _scenarios(calls):
        world.restore("start" if run_id == "run-b" else "after b")
        what = f"call {index} ({name}) failing {'after' if after else 'before'} it ran"
        try:  # a fault the step absorbs (e.g. a lookup it repeats) must not change the outcome either
            world.register(run_id, fail_at=index, after=after)
        except RetryableError as exc:
            if "injected" not in str(exc):
                diverged.append(f"{what}: failed with another error: {exc}")
        summary = world.register(run_id)
        expected = clean["state b"] if run_id == "run-b" else clean["state bc"]
        if summary != clean[key]:
            diverged.append(f"{what}: summary {summary} != {clean[key]}")
        if (state := world.state()) != expected:
            diverged.append(f"{what}: state {state} != {expected}")
    assert not diverged, "\n".join(diverged)


def test_a_decision_left_pending_is_completed_by_the_next_run(world: World, clean: dict[str, Any]) -> None:
    """B crashes right after recording "promoted" (before the champion moves); C registers before
    B's retry. C must compare against B (completing B's promotion first), and B's retry changes
    nothing more: the state is that of B then C, run cleanly."""
    index = max(i for i, name in enumerate(clean["calls b"]) if name == "set_model_version_tag")
    world.restore()
    with pytest.raises(RetryableError, match="injected"):
        world.register("run-b", fail_at=index, after=True)
    assert world.state()["aliases"] == {"champion": 1, "challenger": 2}, "the fault hit before the move"
    assert world.register("run-c") == clean["c"]
    assert world.register("run-b") == clean["b again"]
    assert world.state() == clean["state bc"]
