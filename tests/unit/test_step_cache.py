"""The step cache's keys and key store (pipeline/cache.py): every input change (one byte of data,
one setting a step reads, one line of code a step runs) changes the key of exactly the steps
downstream of it, and nothing else does; a hit reuses the published outputs without copying them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import cache, codehash, steps
from pipeline.settings import Settings
from pipeline.storage import ArtifactStore, Manifest, sha256_file

NAMES = [s.name for s in steps.STEPS]


def downstream_of(step: str) -> set[str]:
    """The step and every step that reads it, directly or through others (the declared inputs)."""
    found = {step}
    for spec in steps.STEPS:
        if found & set(spec.needs):
            found.add(spec.name)
    return found


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.load()


@pytest.fixture
def source(tmp_path: Path, settings: Settings) -> Path:
    """The packaged penguins CSV, as a local file the test may change."""
    original = cache._package_file(settings.data.source.uri)
    copy = tmp_path / "penguins.csv"
    shutil.copyfile(original, copy)
    return copy


def keys(settings: Settings, source: Path, root: Path | None = None) -> dict[str, str | None]:
    with_source = settings.model_copy(deep=True)
    with_source.data.source.uri = str(source)
    return cache.chain_keys(with_source, cache.source_hash(with_source), root=root)


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_every_step_has_a_key_on_a_local_file(settings: Settings, source: Path) -> None:
    computed = keys(settings, source)
    assert list(computed) == NAMES
    assert all(computed.values())
    assert len(set(computed.values())) == len(NAMES)
    assert keys(settings, source) == computed, "a key is a pure function of its inputs"


def test_one_byte_of_data_changes_every_key(settings: Settings, source: Path) -> None:
    before = keys(settings, source)
    data = bytearray(source.read_bytes())
    index = data.index(b"39.1")  # the first bill length
    data[index + 3] = ord("2")  # 39.1 -> 39.2
    source.write_bytes(bytes(data))
    assert changed(before, keys(settings, source)) == set(NAMES)


@pytest.mark.parametrize(
    ("section", "field", "value", "first"),
    [
        ("data", "min_rows", 11, "ingest"),  # read by ingest and validate
        ("data", "formula_values", "fail", "validate"),
        ("preprocess", "test_fraction", 0.25, "preprocess"),
        ("train", "learning_rate", 0.002, "train"),
        ("evaluate", "permutation_repeats", 2, "evaluate"),
        ("evaluate", "importance_max_rows", 500, "evaluate"),
        ("gate", "min_score", 0.5, "register"),
    ],
)
def test_one_setting_changes_the_keys_of_the_steps_that_read_it_and_after(
    settings: Settings, source: Path, section: str, field: str, value, first: str
) -> None:
    before = keys(settings, source)
    setattr(getattr(settings, section), field, value)
    assert changed(before, keys(settings, source)) == downstream_of(first)


def test_a_backend_a_step_writes_into_is_part_of_its_key(settings: Settings, source: Path) -> None:
    before = keys(settings, source)
    settings.feature_store_url = "sqlite:////elsewhere/features.db"
    assert changed(before, keys(settings, source)) == downstream_of("features")


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("serve", "port", 5999),
        ("sweep", "n_trials", 3),
        ("cache", "enabled", False),
        (None, "log_level", "DEBUG"),
        (None, "mlflow_http_timeout_s", 5),
        (None, "git_commit", "0123abc"),
    ],
)
def test_a_setting_no_step_reads_changes_no_key(
    settings: Settings, source: Path, section: str | None, field: str, value
) -> None:
    before = keys(settings, source)
    setattr(getattr(settings, section) if section else settings, field, value)
    assert keys(settings, source) == before


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code") / "pipeline"
    shutil.copytree(codehash.package_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.mark.parametrize(
    ("module", "first"),
    [
        ("steps/ingest.py", "ingest"),
        ("steps/preprocess.py", "preprocess"),
        ("leakage.py", "preprocess"),  # imported by the preprocess step only
        ("dvcstore.py", "version"),
        ("steps/evaluate.py", "evaluate"),
        ("steps/register.py", "register"),
    ],
)
def test_one_line_of_code_changes_the_keys_of_the_steps_that_run_it_and_after(
    settings: Settings, source: Path, package_copy: Path, module: str, first: str
) -> None:
    before = keys(settings, source, root=package_copy)
    path = package_copy / module
    original = path.read_text()
    try:
        path.write_text(original + "CHANGED = 1\n")
        codehash.code_hash.cache_clear()
        codehash._imports.cache_clear()
        assert changed(before, keys(settings, source, root=package_copy)) == downstream_of(first)
    finally:
        path.write_text(original)
        codehash.code_hash.cache_clear()
        codehash._imports.cache_clear()


def test_the_code_hash_follows_imports_through_the_package() -> None:
    closure = codehash.code_closure("pipeline.steps.preprocess")
    assert {"pipeline.steps.preprocess", "pipeline.leakage", "pipeline.transform", "pipeline.context"} <= set(
        closure
    )
    assert "pipeline.steps.train" not in closure
    features = codehash.code_closure("pipeline.steps.features")
    assert "pipeline.featurestore.store" in features  # through a relative import
    plugin = codehash.code_closure("tests.throwaway_step")  # a step module outside the package
    assert "tests.throwaway_step" in plugin and "pipeline.context" in plugin


def test_the_declared_settings_exist(settings: Settings) -> None:
    resolved = settings.redacted()
    for spec in steps.STEPS:
        subset = cache.settings_subset(settings, spec.settings_read, resolved)
        assert "(unset)" not in subset.values(), (spec.name, subset)
        assert not any(cache.covered(path, cache.EXEMPT_SETTINGS) for path in spec.settings_read), spec.name


def test_a_source_without_a_cheap_exact_hash_is_not_keyed(settings: Settings, source: Path) -> None:
    settings.data.source.uri = str(source)
    assert cache.source_hash(settings) == sha256_file(source)
    settings.data.source.uri = "pkg://palmerpenguins/data/penguins.csv"
    assert cache.source_hash(settings) == sha256_file(cache._package_file(settings.data.source.uri))
    for uri in ("https://example.org/rows.json", "s3://bucket/rows.csv", "sklearn://iris"):
        settings.data.source.uri = uri
        assert cache.source_hash(settings) is None, uri
    settings.data.source.uri = "postgresql://db/rows"
    settings.data.source.query = "SELECT 1"
    assert cache.source_hash(settings) is None
    assert cache.chain_keys(settings, None)["ingest"] is None


# --------------------------------------------------------------------------------------------
# the key store
# --------------------------------------------------------------------------------------------


@pytest.fixture
def store(settings: Settings, tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"), settings.s3, scratch=tmp_path / "scratch")


def publish(
    store: ArtifactStore, tmp_path: Path, run_id: str, step: str, key: str, text: str = "x"
) -> Manifest:
    staging = tmp_path / f"staging-{run_id}-{step}-{key}"
    staging.mkdir()
    (staging / "out.txt").write_text(text)
    spec = steps.get_step(step)
    outputs = dict.fromkeys(spec.outputs, "out.txt")
    manifest = store.publish(run_id, step, staging, outputs, {"n": 1}, started_at="t", cache_key=key)
    cache.remember(store, manifest)
    return manifest


def test_a_hit_publishes_a_manifest_naming_the_same_outputs(store: ArtifactStore, tmp_path: Path) -> None:
    origin = publish(store, tmp_path, "run-x", "validate", "k1")
    found = cache.lookup(store, "validate", "k1")
    assert found is not None and found.run_id == "run-x"
    reused = cache.reuse(store, "run-y", found, "k1", started_at="t")
    read = store.read_manifest("run-y", "validate")
    assert read == reused
    assert read.reused_from == {"run_id": "run-x", "step": "validate"}
    assert read.outputs == origin.outputs, "the same URIs: nothing copied"
    assert not Path(store.step_path("run-y", "validate"), "attempts").exists()
    assert cache.lookup(store, "validate", "k2") is None


def test_a_hit_needs_the_same_key_on_the_manifest_and_its_outputs_still_there(
    store: ArtifactStore, tmp_path: Path
) -> None:
    publish(store, tmp_path, "run-x", "validate", "k1")
    publish(store, tmp_path, "run-x", "validate", "k2", text="y")  # the run's step ran again, other key
    assert cache.lookup(store, "validate", "k1") is None
    assert cache.lookup(store, "validate", "k2") is not None
    gone = publish(store, tmp_path, "run-z", "preprocess", "k4")
    Path(gone.uri("features")).unlink()
    assert cache.lookup(store, "preprocess", "k4") is None


def test_model_steps_are_reused_together_or_not_at_all(
    settings: Settings, store: ArtifactStore, tmp_path: Path
) -> None:
    for step in steps.DATA_STEPS:
        publish(store, tmp_path, "run-x", step, f"key-{step}")
    train = steps.get_step("train")
    key, origin = cache.find_reusable(store, settings, train, "run-x")
    assert key is not None and origin is None
    publish(store, tmp_path, "run-x", "train", key)
    assert cache.find_reusable(store, settings, train, "run-x") == (key, None), "never its own run"
    for step in steps.DATA_STEPS:  # a second run reusing every data step of the first
        cache.reuse(store, "run-y", store.read_manifest("run-x", step), f"key-{step}", started_at="t")
    assert cache.find_reusable(store, settings, train, "run-y") == (key, None), "evaluate and register miss"
    evaluate_key, _ = cache.find_reusable(store, settings, steps.get_step("evaluate"), "run-x")
    publish(store, tmp_path, "run-x", "evaluate", evaluate_key)
    register_key, _ = cache.find_reusable(store, settings, steps.get_step("register"), "run-x")
    publish(store, tmp_path, "run-other", "register", register_key)  # another run's record
    assert cache.find_reusable(store, settings, train, "run-y") == (key, None), "one MLflow run: one origin"
    publish(store, tmp_path, "run-x", "register", register_key)
    key_y, origin = cache.find_reusable(store, settings, train, "run-y")
    assert key_y == key and origin is not None and origin.run_id == "run-x"
    # A training this run did itself (same key: `pipeline step train --no-cache`) is never paired
    # with an evaluation of another run's model.
    publish(store, tmp_path, "run-y", "train", key)
    evaluate = steps.get_step("evaluate")
    assert cache.find_reusable(store, settings, evaluate, "run-y") == (evaluate_key, None)
    cache.reuse(store, "run-w", store.read_manifest("run-x", "train"), key, started_at="t")
    for step in steps.DATA_STEPS:
        cache.reuse(store, "run-w", store.read_manifest("run-x", step), f"key-{step}", started_at="t")
    assert cache.find_reusable(store, settings, evaluate, "run-w")[1].run_id == "run-x"


def test_a_step_that_was_not_cached_is_identified_by_its_content() -> None:
    base = {"run_id": "r", "step": "ingest", "status": "succeeded", "attempt": "a", "started_at": "t"}
    one = Manifest(**base, finished_at="t1", outputs={"raw": {"uri": "/a/raw.csv", "sha256": "s1"}})
    same = Manifest(
        **{**base, "run_id": "r2"}, finished_at="t2", outputs={"raw": {"uri": "/b/raw.csv", "sha256": "s1"}}
    )
    other = Manifest(**base, finished_at="t1", outputs={"raw": {"uri": "/a/raw.csv", "sha256": "s2"}})
    assert cache.identity(one) == cache.identity(same) != cache.identity(other)
    keyed = Manifest(**base, finished_at="t", cache_key="k")
    assert cache.identity(keyed) == "k"
    assert Manifest.from_json(keyed.to_json()) == keyed
