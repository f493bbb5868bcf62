"""The README's quickstart shows the promotion gate take both decisions: these are its commands,
read from the README itself, run in order, and each outcome is the one the README states."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

MARKER = "<!-- quickstart-gate:"


def documented_commands() -> list[tuple[list[str], str]]:
    """The `make run ARGS="..."` lines of the README's gate demo: (pipeline arguments, comment)."""
    text = (REPO / "README.md").read_text()
    assert MARKER in text, "the README's gate demo has lost its marker"
    block = text.split(MARKER, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.strip().splitlines():
        match = re.fullmatch(r'make run ARGS="([^"]*)"\s+# (.*)', line.strip())
        assert match, f"not a `make run ARGS=...  # comment` line: {line!r}"
        commands.append((["run", *shlex.split(match.group(1))], match.group(2)))
    return commands


def test_readme_gate_demo_promotes_then_rejects_as_documented(tmp_path: Path) -> None:
    home = tmp_path / "home"
    commands = documented_commands()
    assert len(commands) == 4, commands
    outcomes = []
    for args, comment in commands:
        result = run_cli(args, home)  # what `make run ARGS=...` runs: `pipeline run <ARGS>`
        assert result.returncode == 0, result.stderr[-3000:]
        outcomes.append((result.json, comment))

    (first, c1), (second, c2), (cached, c_cached), (third, c3) = outcomes
    assert first["model_name"] == second["model_name"] == third["model_name"] == "penguins_demo"
    assert [o["version"] for o, _ in outcomes] == ["1", "2", "2", "3"]

    # v1: the short training is an imperfect model, champion as the first one
    assert first["promoted"] is True and first["reason"].startswith("first model"), first
    score = float(re.search(r"macro_f1 ([0-9.]+)", first["reason"]).group(1))
    assert 0.8 <= score < 1.0, first["reason"]
    assert f"macro F1 {score:.2f}" in c1 and "champion" in c1, c1

    # v2: the longer training beats it by more than the margin, on the same test snapshot
    assert second["promoted"] is True, second["reason"]
    assert "beats champion v1" in second["reason"] and "margin" in second["reason"], second["reason"]
    assert "promoted" in c2, c2

    # the same command again: every step reused from v2's run, nothing registered
    assert cached["cached"] is True and cached["reused_from"] == second["run_id"], cached
    assert cached["reason"] == f"nothing changed since run {second['run_id']}; champion v2 stands"
    assert "cached" in c_cached and "v2 stays champion" in c_cached, c_cached

    # v3: the same model again does not beat the champion: rejected, v2 stays champion
    assert third["promoted"] is False, third["reason"]
    assert "champion v2" in third["reason"], third["reason"]
    assert "rejected" in c3, c3
    assert "champion" not in third["aliases"] and "challenger" in third["aliases"]

    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("penguins_demo", "champion").version) == "2"
