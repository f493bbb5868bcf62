"""No secret is recorded or printed: the whole pipeline on embedded defaults with a distinct canary
in every secret-bearing setting, then a search of every byte it wrote (the pipeline home: MLflow's
database and artifacts, the feature store, the DVC remote and workspace, the run artifacts; the
working and temporary folders; stdout and stderr). Failing commands, whose error messages carry
URLs and settings, are searched the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.canary import Canaries, assert_no_leak, canary_source, every_credential_arrived, source_env
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow


def test_a_full_embedded_run_records_and_prints_no_secret(tmp_path: Path) -> None:
    canaries = Canaries()
    home, work, tmp = tmp_path / "home", tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    with canary_source(canaries) as source:
        env = source_env(source, canaries)
        env["PIPELINE_FEATURE_STORE_PASSWORD"] = canaries.new("feature_store_password")
        env["PIPELINE_S3__SECRET_ACCESS_KEY"] = canaries.new("s3.secret_access_key")
        result = run_cli(["run", *FAST], home, cwd=work, TMPDIR=str(tmp), **env)
        assert result.returncode == 0, result.stderr[-5000:]
        assert every_credential_arrived(source), "the source never saw the configured credentials"
        # What a user looks at afterwards goes through the same redaction.
        shown = run_cli(["show", "penguins@champion"], home, cwd=work, TMPDIR=str(tmp), **env)
        assert shown.returncode == 0, shown.stderr[-3000:]
        config = run_cli(["config"], home, cwd=work, TMPDIR=str(tmp), **env)
        assert config.returncode == 0, config.stderr[-3000:]
    assert result.json["promoted"] is True
    found = canaries.leaks_in_tree(home, work, tmp)
    for name, cli in (("run", result), ("show", shown), ("config", config)):
        found += canaries.leaks_in(cli.stdout.encode(), f"stdout of pipeline {name}")
        found += canaries.leaks_in(cli.stderr.encode(), f"stderr of pipeline {name}")
    assert_no_leak(found)
    # The run did record the source, with its credentials masked.
    assert "127.0.0.1" in config.stdout and "***" in config.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["show", "penguins@champion"],
        ["fetch-data", "penguins/1", "--dest", "data"],
        ["reproduce", "penguins@champion"],
        ["ui"],
        ["doctor"],
    ],
    ids=lambda a: a[0],
)
def test_error_messages_carry_no_secret(tmp_path: Path, args: list[str]) -> None:
    """Commands failing against an unreachable PostgreSQL tracking store and feature store whose
    URLs hold passwords (one with an unencoded '@'): the error names the host, never the password."""
    canaries = Canaries()
    tracking_password = f"{canaries.new('tracking password')}@{canaries.new('its tail after an @')}"
    features_password = f"{canaries.new('feature store password')}@{canaries.new('its tail after an @')}"
    tracking = f"postgresql://mlflow:{tracking_password}@127.0.0.1:9/mlflow"
    features = f"postgresql://features:{features_password}@127.0.0.1:9/features"
    result = run_cli(
        args,
        tmp_path / "home",
        cwd=tmp_path,
        timeout=300,
        MLFLOW_TRACKING_URI=tracking,
        PIPELINE_FEATURE_STORE_URL=features,
        PIPELINE_MLFLOW_HTTP_MAX_RETRIES="0",
    )
    output = (result.stdout + result.stderr).encode()
    assert_no_leak(canaries.leaks_in(output, f"output of pipeline {args[0]}"))
    if args[0] != "ui":  # `ui` on a server only says where to browse
        assert result.returncode != 0
    assert b"127.0.0.1" in output


def test_an_http_error_names_the_source_without_its_credentials(tmp_path: Path) -> None:
    canaries = Canaries()
    with canary_source(canaries) as source:
        env = source_env(source, canaries)
        env["PIPELINE_DATA__SOURCE__URI"] = source.url("/penguins.csv").replace(
            source.password, "wrong" + canaries.new("a wrong password")
        )
        result = run_cli(["run", *FAST], tmp_path / "home", cwd=tmp_path, **env)
    assert result.returncode == 65, result.stderr[-3000:]
    assert "401" in result.stderr
    assert_no_leak(canaries.leaks_in((result.stdout + result.stderr).encode(), "output of pipeline run"))
    assert_no_leak(canaries.leaks_in_tree(tmp_path / "home"))
