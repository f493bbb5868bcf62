"""The target-leakage check (pipeline/leakage.py) on synthetic and real frames, for both tasks:
each way a feature can give the target away is refused with its evidence, each legitimate strong
feature is kept, and the per-column and global settings downgrade or turn off the check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import EXIT_BAD_INPUT, ValidationFailedError
from pipeline.leakage import FUNCTION, PREDICTS, check_leakage
from pipeline.settings import ColumnSpec, DataSettings
from pipeline.sources import resolve_package_uri
from pipeline.steps.preprocess import split_indices

ROWS = 300
LABEL = "input.csv (snapshot raw.csv)"


def contract(frame: pd.DataFrame, target: str, task: str, **leakage) -> DataSettings:
    """Every column of ``frame`` a feature (numeric or category by its dtype), ``target`` the target."""
    columns = {
        name: ColumnSpec(type="float" if pd.api.types.is_numeric_dtype(frame[name]) else "category")
        for name in frame.columns
        if name != target
    }
    columns[target] = ColumnSpec(type="category" if task == "classification" else "float", role="target")
    data = DataSettings(name="synthetic", target=target, task=task, columns=columns)
    return data.model_copy(update={"leakage": data.leakage.model_copy(update=leakage)})


def classes(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Three classes and two honest features: a strong number and a weak category."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    return pd.DataFrame(
        {
            "strong": rng.normal(label * 1.5, 1.0),
            "weak": np.where(rng.random(rows) < 0.5, np.array(["a", "b", "c"])[label], "d"),
            "kind": np.array(["Adelie", "Chinstrap", "Gentoo"])[label],
        }
    )


def numbers(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """A continuous target and two honest features: a strong one (R² about 0.8) and noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=rows), "y": 2 * x + rng.normal(0, 1.0, rows) + 10})


def check(frame: pd.DataFrame, target: str, task: str, **leakage):
    return check_leakage(frame, contract(frame, target, task, **leakage), LABEL, seed=0)


def refused(frame: pd.DataFrame, target: str, task: str, **leakage) -> ValidationFailedError:
    with pytest.raises(ValidationFailedError) as caught:
        check(frame, target, task, **leakage)
    return caught.value


def codes(frame: pd.DataFrame) -> pd.Series:
    return frame["kind"].map({"Adelie": 0, "Chinstrap": 1, "Gentoo": 2})


# ---- classification -------------------------------------------------------------------------


def test_honest_classification_features_pass_and_their_scores_are_recorded() -> None:
    report = check(classes(), "kind", "classification")
    assert report.status == "passed" and report.flagged == []
    summary = report.summary()
    assert summary["checked_columns"] == 2
    assert 0.3 < summary["max_score"] < 0.9 and summary["max_score_column"] == "strong"
    assert {c["column"] for c in summary["columns"]} == {"strong", "weak"}


@pytest.mark.parametrize(
    ("case", "make", "rule"),
    [
        ("exact copy", lambda f: f["kind"], PREDICTS),
        ("class codes times 100", lambda f: codes(f) * 100.0, PREDICTS),
        (
            "noisy numeric near-copy",
            lambda f: codes(f) + np.random.default_rng(1).normal(0, 0.1, len(f)),
            PREDICTS,
        ),
        (
            "1:1 relabelling",
            lambda f: f["kind"].map({"Adelie": "x", "Chinstrap": "y", "Gentoo": "z"}),
            PREDICTS,
        ),
        ("many-to-one category", lambda f: np.where(f["kind"] == "Gentoo", "big", "small"), FUNCTION),
        ("many-to-one number", lambda f: codes(f).map({0: 1.0, 1: 1.0, 2: 5.0}), FUNCTION),
    ],
)
def test_a_leaky_classification_feature_is_refused_with_its_evidence(case, make, rule) -> None:
    frame = classes()
    frame["leak"] = make(frame)
    error = refused(frame, "kind", "classification")
    message = str(error)
    assert error.exit_code == EXIT_BAD_INPUT
    assert LABEL in message and "column 'leak'" in message and f"rule: {rule}" in message
    assert "--set data.columns.leak.leakage=warn" in message
    threshold = "data.leakage.max_score 0.99" if rule == PREDICTS else "data.leakage.max_determination 0.97"
    assert threshold in message
    assert len(error.failures) == 1 and "strong" not in message  # only the leak is named


def test_a_near_copy_with_a_few_wrong_classes_is_refused() -> None:
    """1% of the rows disagree with the target (the check tolerates about that much: a copy
    with 2% of its rows wrong scores like the best real features, e.g. iris' petal width)."""
    frame = classes()
    wrong = np.flatnonzero(frame["kind"] != "Adelie")[::50][:3]
    frame["leak"] = frame["kind"]
    frame.loc[wrong, "leak"] = "Adelie"
    assert (frame["leak"] != frame["kind"]).sum() == 3
    assert "column 'leak'" in str(refused(frame, "kind", "classification"))


def test_a_copy_with_missing_values_is_still_refused() -> None:
    frame = classes()
    leak = codes(frame).astype(float) * 10
    leak[np.random.default_rng(3).random(len(frame)) < 0.3] = np.nan
    frame["leak"] = leak
    assert "column 'leak'" in str(refused(frame, "kind", "classification"))


def test_an_identifier_is_not_mistaken_for_a_copy_of_the_target() -> None:
    """Every value unique: a table of values memorises the rows, but predicts no held-out row."""
    frame = classes()
    frame["row_key"] = [f"id-{i}" for i in range(len(frame))]
    frame["serial"] = np.arange(len(frame), dtype=float)
    report = check(frame, "kind", "classification")
    assert report.flagged == []


def test_real_strong_classification_features_are_kept() -> None:
    """Penguins (flipper and bill lengths, island) and wine (flavanoids, proline): among the best
    single features of public data sets, well below the thresholds on the pipeline's own split."""
    from sklearn.datasets import load_wine

    penguins = pd.read_csv(resolve_package_uri("pkg://palmerpenguins/data/penguins.csv")).drop(columns="year")
    wine = load_wine(as_frame=True).frame
    for frame, target in ((penguins, "species"), (wine, "target")):
        frame = frame[frame[target].notna()].reset_index(drop=True)
        train = frame.iloc[split_indices(frame[target], "classification", 0.2, 0.2, 42)["train"]]
        data = contract(frame, target, "classification")
        report = check_leakage(train, data, LABEL, seed=42)
        assert report.status == "passed", [(c.column, c.score, c.determination) for c in report.flagged]
        summary = report.summary()
        assert summary["max_score"] < 0.9 and summary["max_determination"] < 0.9


# ---- regression -----------------------------------------------------------------------------


def test_honest_regression_features_pass() -> None:
    report = check(numbers(), "y", "regression")
    assert report.status == "passed" and report.flagged == []
    assert 0.6 < report.summary()["max_score"] < 0.9


@pytest.mark.parametrize(
    ("case", "make", "rule"),
    [
        ("exact copy", lambda f: f["y"], PREDICTS),
        ("target times 100", lambda f: f["y"] * 100, PREDICTS),
        (
            "noisy near-copy",
            lambda f: f["y"] + np.random.default_rng(1).normal(0, 0.05 * f["y"].std(), len(f)),
            PREDICTS,
        ),
        ("monotone transform", lambda f: np.log(f["y"] - f["y"].min() + 1), PREDICTS),
        ("above the median", lambda f: np.where(f["y"] > f["y"].median(), "high", "low"), FUNCTION),
        ("three bands", lambda f: pd.cut(f["y"], 3, labels=["lo", "mid", "hi"]).astype(str), FUNCTION),
        ("squared deviation", lambda f: (f["y"] - f["y"].mean()) ** 2, FUNCTION),
    ],
)
def test_a_leaky_regression_feature_is_refused_with_its_evidence(case, make, rule) -> None:
    frame = numbers()
    frame["leak"] = make(frame)
    message = str(refused(frame, "y", "regression"))
    assert "column 'leak'" in message and f"rule: {rule}" in message and "'x'" not in message
    assert "R²" in message or "Spearman" in message or "balanced accuracy" in message


def test_a_copy_of_a_numeric_target_as_text_is_refused() -> None:
    """Every value unique, like an identifier, but its values read as the target's numbers."""
    frame = numbers()
    frame["as_text"] = frame["y"].map(lambda v: f"{v:.4f}")
    message = str(refused(frame, "y", "regression"))
    assert "column 'as_text'" in message and f"rule: {PREDICTS}" in message


def test_a_function_of_the_target_that_tells_nothing_about_it_is_kept() -> None:
    """Parity of an integer target is a function of it but says nothing of its size: the
    information floor keeps it; without the floor it is refused."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"y": rng.integers(0, 100, 600).astype(float)})
    frame["x"] = frame["y"] + rng.normal(0, 20, len(frame))
    frame["parity"] = np.where(frame["y"] % 2 == 0, "even", "odd")
    report = check(frame, "y", "regression")
    parity = next(c for c in report.checked if c.column == "parity")
    assert report.flagged == [] and parity.determination > 0.97 and parity.information < 0.1
    assert "column 'parity'" in str(refused(frame, "y", "regression", min_information=0.0))


def test_real_strong_regression_features_are_kept() -> None:
    """Penguin body mass from flipper length and species (R² about 0.75), and the diabetes data's
    real features."""
    from sklearn.datasets import load_diabetes

    penguins = pd.read_csv(resolve_package_uri("pkg://palmerpenguins/data/penguins.csv")).drop(columns="year")
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    for frame, target in ((penguins, "body_mass_g"), (diabetes, "target")):
        frame = frame[frame[target].notna()].reset_index(drop=True)
        train = frame.iloc[split_indices(frame[target], "regression", 0.2, 0.2, 42)["train"]]
        report = check_leakage(train, contract(frame, target, "regression"), LABEL, seed=42)
        assert report.status == "passed", [(c.column, c.score, c.determination) for c in report.flagged]
        assert report.summary()["max_score"] < 0.85


# ---- settings -------------------------------------------------------------------------------


def test_a_column_set_to_warn_is_kept_logged_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    frame = numbers()
    frame["leak"] = frame["y"] * 100
    data = contract(frame, "y", "regression")
    data.columns["leak"] = data.columns["leak"].model_copy(update={"leakage": "warn"})
    with caplog.at_level("WARNING", logger="pipeline.leakage"):
        report = check_leakage(frame, data, LABEL, seed=0)
    assert report.status == "warned"
    summary = report.summary()
    assert summary["warned_columns"] == ["leak"] and summary["refused_columns"] == []
    assert summary["max_score_column"] == "leak" and summary["max_score"] == 1.0
    assert any("'leak'" in r.message and PREDICTS in r.message for r in caplog.records)


def test_a_column_set_to_skip_is_not_checked() -> None:
    frame = numbers()
    frame["leak"] = frame["y"] * 100
    data = contract(frame, "y", "regression")
    data.columns["leak"] = data.columns["leak"].model_copy(update={"leakage": "skip"})
    report = check_leakage(frame, data, LABEL, seed=0)
    assert report.status == "passed" and report.summary()["skipped_columns"] == ["leak"]
    assert "leak" not in [c.column for c in report.checked]


def test_the_global_action_and_switch(caplog: pytest.LogCaptureFixture) -> None:
    frame = numbers()
    frame["leak"] = frame["y"] * 100
    with caplog.at_level("WARNING", logger="pipeline.leakage"):
        assert check(frame, "y", "regression", action="warn").summary()["warned_columns"] == ["leak"]
    assert any("kept because data.leakage.action is 'warn'" in r.message for r in caplog.records)
    disabled = check(frame, "y", "regression", enabled=False)
    assert disabled.status == "disabled" and disabled.checked == []


def test_every_refused_column_is_listed_once_with_its_own_downgrade() -> None:
    frame = numbers()
    frame["copy"], frame["band"] = frame["y"], np.where(frame["y"] > frame["y"].median(), "high", "low")
    error = refused(frame, "y", "regression")
    assert [f.split(":")[0] for f in error.failures] == ["column 'copy'", "column 'band'"]
    assert "2 feature(s) give the target 'y' away" in str(error)
    assert "`--set data.columns.copy.leakage=warn`, `--set data.columns.band.leakage=warn`" in str(error)


@pytest.mark.parametrize("column", ["y", "row"])
def test_a_leakage_setting_on_a_column_that_is_no_feature_is_a_configuration_error(column: str) -> None:
    columns = {
        "y": {"type": "float", "role": "target"},
        "x": {"type": "float"},
        "row": {"type": "int", "role": "id"},
    }
    columns[column]["leakage"] = "warn"
    with pytest.raises(
        ValueError, match=rf"data\.columns\.{column}\.leakage: the leakage check applies to features only"
    ):
        DataSettings(target="y", task="regression", columns=columns)


def test_the_threshold_is_a_setting() -> None:
    """A lower max_score refuses the honest strong feature: the threshold decides, not a constant."""
    message = str(refused(numbers(), "y", "regression", max_score=0.5))
    assert "column 'x'" in message and "data.leakage.max_score 0.5" in message


def test_a_copy_of_the_target_outside_the_contract_is_warned_about_not_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = classes()
    data = contract(frame, "kind", "classification")
    frame["kind_again"] = frame["kind"]
    frame["harmless"] = np.arange(len(frame))
    with caplog.at_level("WARNING", logger="pipeline.leakage"):
        report = check_leakage(frame, data, LABEL, seed=0, undeclared=["kind_again", "harmless"])
    summary = report.summary()
    assert report.status == "warned" and summary["warned_columns"] == ["kind_again"]
    assert summary["checked_columns"] == 2 and summary["checked_undeclared_columns"] == 2
    assert summary["max_score_column"] == "strong"  # the figures of the model's own features
    assert any(
        "'kind_again'" in r.message and "outside the data contract" in r.message for r in caplog.records
    )


def test_undeclared_columns_beyond_the_cap_are_counted_not_checked() -> None:
    frame = classes()
    data = contract(frame, "kind", "classification", max_undeclared_columns=1)
    frame["u1"], frame["u2"] = 1.0, frame["kind"]
    report = check_leakage(frame, data, LABEL, seed=0, undeclared=["u1", "u2"])
    assert report.summary()["unchecked_undeclared_columns"] == 1 and report.warned == []


def test_a_large_split_is_sampled_to_max_rows() -> None:
    frame = numbers(rows=1500)
    assert check(frame, "y", "regression", max_rows=500).rows == 500


def test_too_few_rows_skip_the_check_and_say_so() -> None:
    frame = numbers(rows=8)
    frame["leak"] = frame["y"]
    report = check(frame, "y", "regression")
    assert report.status == "skipped" and "too few" in report.note


def test_the_check_is_deterministic_for_a_seed() -> None:
    frame = classes()
    frame["leak"] = np.where(frame["kind"] == "Gentoo", "big", "small")
    data = contract(frame, "kind", "classification", action="warn")
    first = check_leakage(frame, data, LABEL, seed=0).summary()
    again = check_leakage(frame, data, LABEL, seed=0).summary()
    assert first == again and first["warned_columns"] == ["leak"]


# ---- the preprocess step --------------------------------------------------------------------


def penguins_with(column: str, values) -> pd.DataFrame:
    frame = pd.read_csv(resolve_package_uri("pkg://palmerpenguins/data/penguins.csv"))
    frame[column] = values(frame)
    return frame


def step_settings(tmp_path, frame: pd.DataFrame, **columns):
    import yaml

    from pipeline.settings import Settings, packaged_config

    source = tmp_path / "leaky.csv"
    frame.to_csv(source, index=False)
    config = yaml.safe_load(packaged_config("penguins.yaml").read_text())
    config["data"]["source"]["uri"] = str(source)
    config["data"]["columns"].update(columns)
    path = tmp_path / "leaky.yaml"
    path.write_text(yaml.safe_dump(config))
    return Settings.load(path)


@pytest.mark.slow
def test_the_preprocess_step_refuses_a_leaky_feature_and_publishes_nothing(home, tmp_path) -> None:
    from pipeline.runner import execute_step, make_store

    frame = penguins_with(
        "species_code", lambda f: f["species"].map({"Adelie": 0, "Chinstrap": 1, "Gentoo": 2})
    )
    frame["species_again"] = frame["species"]  # outside the contract: warned about, not used
    settings = step_settings(tmp_path, frame, species_code={"type": "int"})
    for step in ("ingest", "validate"):
        execute_step(settings, "leak-1", step)
    with pytest.raises(ValidationFailedError) as caught:
        execute_step(settings, "leak-1", "preprocess")
    message = str(caught.value)
    assert "column 'species_code'" in message and "leaky.csv" in message and "species_again" not in message
    assert make_store(settings).read_manifest("leak-1", "preprocess") is None

    downgraded = step_settings(tmp_path, frame, species_code={"type": "int", "leakage": "warn"})
    manifest = execute_step(downgraded, "leak-1", "preprocess")
    leakage = manifest.summary["leakage"]
    assert leakage["status"] == "warned" and leakage["checked_columns"] == 7
    assert sorted(leakage["warned_columns"]) == ["species_again", "species_code"]
    assert leakage["max_score_column"] == "species_code" and leakage["max_score"] == 1.0
