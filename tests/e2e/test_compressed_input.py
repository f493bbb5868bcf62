"""A gzip-compressed CSV runs through the whole pipeline exactly as the plain file does (the
snapshot is the decompressed file, the codec is recorded); a truncated one is refused as bad
input naming the file and the codec, with nothing written downstream."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from pipeline.errors import EXIT_BAD_INPUT
from pipeline.sources import resolve_package_uri
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

PENGUINS = resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes()


def test_a_gzip_csv_trains_like_the_plain_csv(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "penguins.csv.gz"
    source.write_bytes(gzip.compress(PENGUINS))
    result = run_cli(["run", *FAST, "--set", f"data.source.uri={source}"], home)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json
    assert summary["promoted"] is True, summary["reason"]
    run_dir = home / "artifacts" / "runs" / summary["run_id"]
    ingest = json.loads((run_dir / "ingest" / "manifest.json").read_text())["summary"]
    assert ingest["source"]["compression"] == "gzip"
    assert ingest["source"]["compressed_bytes"] == source.stat().st_size
    assert ingest["rows"] == 344 and ingest["format"] == "csv"
    plain_sha256 = hashlib.sha256(PENGUINS).hexdigest()
    assert ingest["sha256"] == plain_sha256, "the snapshot is the decompressed CSV, byte for byte"

    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}", registry_uri=f"sqlite:///{home / 'mlflow.db'}"
    )
    run = client.get_run(client.get_model_version_by_alias("penguins", "champion").run_id)
    assert run.data.tags["data.raw.sha256"] == plain_sha256
    assert run.data.metrics["test_macro_f1"] > 0.9


def test_a_truncated_gzip_csv_is_refused_naming_the_file_and_codec(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "penguins.csv.gz"
    whole = gzip.compress(PENGUINS)
    source.write_bytes(whole[: len(whole) // 2])
    result = run_cli(["run", *FAST, "--set", f"data.source.uri={source}"], home)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert f"{source}: cannot be decompressed as gzip" in result.stderr
    assert "truncated" in result.stderr
    runs = home / "artifacts" / "runs"
    published = sorted(p.relative_to(runs).as_posix() for p in runs.glob("*/*/manifest.json"))
    assert published == [], f"a refused source leaves no published step: {published}"
