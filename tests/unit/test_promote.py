"""scripts/promote moves image digests and the model version one environment along, and nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "promote"
ENVS = REPO / "k8s" / "envs"

pytest.importorskip("ruamel.yaml", reason="scripts/promote needs ruamel.yaml (the dev extra)")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


@pytest.fixture
def envs(tmp_path: Path) -> Path:
    target = tmp_path / "envs"
    shutil.copytree(ENVS, target)
    return target


def promote(envs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--envs-dir", str(envs)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_dev_to_staging_changes_only_the_intended_keys(envs):
    before_text = (envs / "staging" / "values.yaml").read_text()
    before = flatten(yaml.safe_load(before_text))
    dev = flatten(yaml.safe_load((envs / "dev" / "values.yaml").read_text()))

    result = promote(envs, "dev", "staging")
    assert result.returncode == 0, result.stderr

    after_text = (envs / "staging" / "values.yaml").read_text()
    after = flatten(yaml.safe_load(after_text))
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert changed == {
        "global.images.pipeline.digest",
        "global.images.airflow.digest",
        "global.images.mlflow.digest",
        "pipeline.model.version",
    }
    for key in changed:
        assert after[key] == dev[key]
    # A minimal, reviewable diff: only those lines differ, every comment survives.
    old_lines, new_lines = before_text.splitlines(), after_text.splitlines()
    assert len(old_lines) == len(new_lines)
    differing = [(o, n) for o, n in zip(old_lines, new_lines, strict=True) if o != n]
    assert len(differing) == len(changed)
    assert [line for line in old_lines if line.lstrip().startswith("#")] == [
        line for line in new_lines if line.lstrip().startswith("#")
    ]
    assert 'version: "4"' in after_text  # the quoting of the version string is kept
    assert result.stdout.startswith("--- a/")
    assert "+      digest: sha256:4444" in result.stdout


def test_promotion_is_idempotent(envs):
    assert promote(envs, "dev", "staging").returncode == 0
    text = (envs / "staging" / "values.yaml").read_text()
    again = promote(envs, "dev", "staging")
    assert again.returncode == 0
    assert "nothing to promote" in again.stderr
    assert (envs / "staging" / "values.yaml").read_text() == text


def test_dry_run_changes_nothing(envs):
    text = (envs / "staging" / "values.yaml").read_text()
    result = promote(envs, "dev", "staging", "--dry-run")
    assert result.returncode == 0
    assert "+      digest: sha256:5555" in result.stdout
    assert (envs / "staging" / "values.yaml").read_text() == text


def test_selected_images_and_no_model(envs):
    result = promote(envs, "dev", "staging", "--images", "pipeline", "--no-model")
    assert result.returncode == 0, result.stderr
    after = flatten(yaml.safe_load((envs / "staging" / "values.yaml").read_text()))
    assert after["global.images.pipeline.digest"].startswith("sha256:4444")
    assert after["global.images.airflow.digest"].startswith("sha256:2222")
    assert after["pipeline.model.version"] == "3"


def test_unpinned_image_is_refused(envs):
    dev = envs / "dev" / "values.yaml"
    dev.write_text(dev.read_text().replace("sha256:" + "4" * 64, '""'))
    text = (envs / "staging" / "values.yaml").read_text()
    result = promote(envs, "dev", "staging")
    assert result.returncode == 2
    assert "global.images.pipeline.digest" in result.stderr
    assert (envs / "staging" / "values.yaml").read_text() == text


def test_only_one_step_along_the_chain(envs):
    result = promote(envs, "dev", "prod")
    assert result.returncode == 2
    assert "one step" in result.stderr


def test_promoted_overlay_still_renders(envs):
    assert promote(envs, "dev", "staging").returncode == 0
    promoted = yaml.safe_load((envs / "staging" / "values.yaml").read_text())
    assert promoted["global"]["networkPolicy"]["enabled"] is True
    assert promoted["airflow"]["dag"]["gpu"]["tolerations"][0]["key"] == "nvidia.com/gpu"
