"""Two publishes of the same (run, step) at once (an Airflow retry overlapping a pod that still
runs, ``pipeline run --run-id X`` started twice) never leave the step without its outputs.

The interleavings are forced, not hoped for: the first publisher is held at its manifest write
(before it lands, or just after) while the second one publishes from start to end, then released.
Whatever the order, the manifest must name an attempt whose files all exist with the recorded
digests, and a later publish still removes the attempts it replaced. Both on a local folder and
on S3 (moto's server over HTTP).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.settings import S3Settings
from pipeline.storage import ATTEMPT_TIME, ArtifactStore, sha256_file
from tests.services import s3_server, unique

WAIT = 120  # generous bound for a loaded machine: a broken interleaving fails the checks, not this


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    with s3_server(tmp_path_factory.mktemp("moto"), buckets=("race",)) as server:
        yield server


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, S3Settings]]:
    if request.param == "local":
        yield str(tmp_path / "artifacts"), S3Settings()
        return
    server = request.getfixturevalue("s3")
    settings = S3Settings(
        endpoint_url=server.url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
    )
    yield f"s3://race/{unique('p')}", settings


def _store(root: tuple[str, S3Settings], scratch: Path) -> ArtifactStore:
    return ArtifactStore(root[0], root[1], scratch)


def _publish(store: ArtifactStore, text: str, into: Path) -> None:
    staging = into / text
    (staging / "model").mkdir(parents=True)
    (staging / "a.txt").write_text(text)
    (staging / "model" / "weights.bin").write_bytes(text.encode() * 1000)
    store.publish("r1", "train", staging, {"a": "a.txt", "model": "model"}, {"who": text}, started_at="t")


def _assert_published_outputs_exist(store: ArtifactStore, tmp_path: Path) -> str:
    manifest = store.read_manifest("r1", "train")
    assert manifest is not None and manifest.succeeded
    for name, entry in manifest.outputs.items():
        local = store.local_copy(entry["uri"], tmp_path / "check" / manifest.attempt / name)
        assert local.exists(), f"the manifest names {entry['uri']}, which was removed"
        if "sha256" in entry:
            assert sha256_file(local) == entry["sha256"]
    weights = store.local_copy(manifest.uri("model"), tmp_path / "check" / manifest.attempt / "m")
    assert (weights / "weights.bin").read_bytes() == manifest.summary["who"].encode() * 1000
    return manifest.attempt


def _attempts(store: ArtifactStore) -> list[str]:
    path = f"{store.step_path('r1', 'train')}/attempts"
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(path, detail=False))


@pytest.mark.parametrize("held", ["before its manifest write", "after its manifest write"])
def test_overlapping_publishes_leave_a_complete_published_attempt(
    root: tuple[str, S3Settings], tmp_path: Path, held: str
) -> None:
    first, second = _store(root, tmp_path / "s1"), _store(root, tmp_path / "s2")
    at_write, release = threading.Event(), threading.Event()
    write = first._atomic_write_text

    def held_write(path: str, text: str) -> None:
        if held == "after its manifest write":
            write(path, text)
        at_write.set()
        assert release.wait(WAIT)
        if held == "before its manifest write":
            write(path, text)

    first._atomic_write_text = held_write  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def run_first() -> None:
        try:
            _publish(first, "first", tmp_path / "in1")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert at_write.wait(WAIT), "the first publisher never reached its manifest write"
        _publish(second, "second", tmp_path / "in2")  # from start to end while the first is held
        _assert_published_outputs_exist(second, tmp_path)
    finally:
        release.set()
        thread.join(WAIT)
    assert not errors, errors
    winner = _assert_published_outputs_exist(second, tmp_path)

    # A later publish (a rerun) replaces the current attempt and removes the one it saw.
    _publish(second, "third", tmp_path / "in3")
    latest = _assert_published_outputs_exist(second, tmp_path)
    assert latest != winner and winner not in _attempts(second)


def test_attempts_nobody_saw_are_kept_until_they_are_old(tmp_path: Path) -> None:
    """An attempt the manifest never named may be a publish still in flight: it is kept; one left
    by a publisher killed long ago (older than the grace period) is removed."""
    store = _store((str(tmp_path / "artifacts"), S3Settings()), tmp_path / "s")
    attempts = Path(store.step_path("r1", "train")) / "attempts"
    in_flight = attempts / f"{datetime.now(UTC).strftime(ATTEMPT_TIME)}-0000aaaa"
    abandoned = attempts / "20200101T000000-0000bbbb"
    for folder in (in_flight, abandoned):
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text("partial")
    _publish(store, "one", tmp_path / "in")
    current = _assert_published_outputs_exist(store, tmp_path)
    assert _attempts(store) == sorted([current, in_flight.name])
