"""Which setting keys a manual run's params may set (MLP_DAG_TRIGGER_ALLOWED_KEYS), checked by the
real DAG: its first task, and every step task again when it renders its arguments."""

from __future__ import annotations

import types

import pytest

from tests.dags.conftest import CHECK, load_dag, load_dagbag

pytestmark = pytest.mark.airflow


def test_patterns_match_whole_dotted_keys():
    from ml_pipeline_support.trigger import key_allowed

    patterns = ("train.*", "evaluate.permutation_repeats", "sweep.space.*")
    for key in (
        "train.max_epochs",
        "train.hidden_sizes",
        "evaluate.permutation_repeats",
        "sweep.space.lr.low",
    ):
        assert key_allowed(key, patterns), key
    for key in (
        "train",  # the whole section, value and all, is not one of its keys
        "gate.margin",
        "evaluate.primary_metric",
        "evaluate.permutation_repeats_x",
        "TRAIN.max_epochs",  # case matters, as for the settings
        "xtrain.max_epochs",
        "sweep.space",
        "sweep.storage_url",
        "data.source.uri",
    ):
        assert not key_allowed(key, patterns), key
    assert not key_allowed("train.max_epochs", ())


def test_the_default_allows_tuning_and_nothing_that_moves_data_or_the_gate():
    from ml_pipeline_support.settings import DagSettings
    from ml_pipeline_support.trigger import key_allowed

    allowed = DagSettings.from_env(("ingest",), {}).trigger_allowed_keys
    for key in (
        "train.max_epochs",
        "train.learning_rate",
        "evaluate.permutation_repeats",
        "sweep.n_trials",
        "sweep.max_epochs",
        "sweep.space.learning_rate.high",
        "sweep.pruner_warmup_epochs",
    ):
        assert key_allowed(key, allowed), key
    for key in (
        "gate.margin",
        "gate.min_score",
        "gate.require_beat_baseline",
        "evaluate.primary_metric",
        "evaluate.baseline",
        "preprocess.test_fraction",
        "seed",
        "data.source.uri",
        "data.source.query",
        "data.source.http.headers.Authorization",
        "data.columns.island.allowed",
        "tracking_uri",
        "feature_store_url",
        "artifact_root",
        "dvc_remote",
        "s3.endpoint_url",
        "sweep.storage_url",
        "model_name",
        "secret_settings",
    ):
        assert not key_allowed(key, allowed), key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        ("none", ()),
        (" train.* , gate.margin,train.*", ("train.*", "gate.margin")),
        ("*", ("*",)),
    ],
)
def test_the_setting_is_a_comma_separated_list(raw, expected):
    from ml_pipeline_support.settings import DEFAULT_TRIGGER_ALLOWED_KEYS, DagSettings

    settings = DagSettings.from_env(("ingest",), {"MLP_DAG_TRIGGER_ALLOWED_KEYS": raw})
    assert settings.trigger_allowed_keys == (DEFAULT_TRIGGER_ALLOWED_KEYS if expected is None else expected)


@pytest.mark.parametrize("raw", ["train.[a-z]*", "gate margin", "train..x", "data.source.uri=x"])
def test_a_malformed_pattern_is_refused(raw):
    from ml_pipeline_support.settings import DagSettings

    with pytest.raises(ValueError, match="MLP_DAG_TRIGGER_ALLOWED_KEYS"):
        DagSettings.from_env(("ingest",), {"MLP_DAG_TRIGGER_ALLOWED_KEYS": raw})


def run_check(dag, params):
    task = dag.get_task(CHECK)
    return task.execute({"params": params, "ti": types.SimpleNamespace(task_id=CHECK)})


def test_the_first_task_refuses_keys_outside_the_list_and_names_the_setting(mlp_env):
    from airflow.sdk.exceptions import AirflowFailException

    dag = load_dag()
    assert dag.get_task(CHECK).downstream_task_ids == {"preflight"}
    run_check(dag, {"source": None, "overrides": ["train.max_epochs=5", "evaluate.permutation_repeats=2"]})
    with pytest.raises(AirflowFailException) as raised:
        run_check(
            dag,
            {
                "source": "http://169.254.169.254/latest/meta-data",
                "overrides": ["train.max_epochs=5", "gate.margin=-1", "tracking_uri=http://u:hunter2@evil/"],
            },
        )
    message = str(raised.value)
    assert "data.source.uri (param 'source' sets data.source.uri), gate.margin, tracking_uri" in message
    assert "train.max_epochs" not in message.split("may not be set")[0]
    assert "MLP_DAG_TRIGGER_ALLOWED_KEYS (chart value airflow.dag.triggerAllowedKeys): train.*" in message
    assert "hunter2" not in message and "169.254" not in message  # keys only, never values
    assert raised.value.retryable is False


def test_every_step_task_checks_again(mlp_env):
    """Even with the check task cleared or marked success by hand, no step runs a refused key."""
    from ml_pipeline_support.trigger import TriggerParamsRefused

    dag = load_dag()
    for task in dag.tasks:
        if task.task_id == CHECK:
            continue
        task.arguments = list(task.arguments)
        with pytest.raises(TriggerParamsRefused, match=r"gate\.margin"):
            task.render_template_fields({"params": {"overrides": ["gate.margin=-1"]}, "run_id": "r"})


def test_the_sweep_dag_checks_first_too(mlp_env):
    from ml_pipeline_support.trigger import TriggerParamsRefused

    dag = load_dagbag().dags["ml_pipeline_sweep"]
    assert dag.get_task(CHECK).downstream_task_ids == {"sweep_prepare"}
    run_check(dag, {"overrides": ["sweep.n_trials=40", "sweep.max_epochs=5"]})
    with pytest.raises(TriggerParamsRefused, match=r"sweep\.storage_url"):
        run_check(dag, {"overrides": ["sweep.storage_url=postgresql://evil/optuna"]})


def test_none_refuses_every_param(mlp_env):
    from ml_pipeline_support.trigger import TriggerParamsRefused

    mlp_env.setenv("MLP_DAG_TRIGGER_ALLOWED_KEYS", "none")
    dag = load_dag()
    run_check(dag, {"source": None, "overrides": []})  # a run without params is always fine
    with pytest.raises(TriggerParamsRefused, match=r"train.max_epochs may not be set .*: none\."):
        run_check(dag, {"overrides": ["train.max_epochs=5"]})
