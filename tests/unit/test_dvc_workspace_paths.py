"""A DVC workspace the pipeline writes (a run's, or `fetch-data --dest DIR`'s) names every path in
its config absolutely, so `dvc` run from inside that folder does not nest a second one in it."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dvcstore import fetch, track_and_push
from pipeline.settings import S3Settings


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_fetch_into_a_relative_folder_writes_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "penguins.csv"
    source.write_text("a,b\n1,2\n")
    remote = str(tmp_path / "remote")
    pushed = track_and_push({"raw": source}, tmp_path / "run-workspace", remote, S3Settings())
    monkeypatch.chdir(tmp_path)

    fetched = fetch(pushed["raw"]["dvc_text"], Path("data"), remote, S3Settings())

    assert (tmp_path / fetched).read_text() == "a,b\n1,2\n"
    config = configparser.ConfigParser()
    config.read(tmp_path / "data" / ".dvc" / "config")
    assert config["core"]["site_cache_dir"] == str(tmp_path / "data" / ".dvc" / "site")
    assert Path(config['remote "store"']["url"]).is_absolute()
    for command in (["status"], ["pull"]):
        result = dvc(*command, cwd=tmp_path / "data")
        assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data" / "data").exists(), "dvc inside data/ created data/data"
