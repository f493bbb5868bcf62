"""values.schema.json documents every value, matches the values files, and refuses bad values
with a message naming the key; the values that mirror a setting take the setting's schema."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import typing
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.charts.chart_utils import CHART, HelmFailedError, render_chart

pytestmark = pytest.mark.charts

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
SUBCHARTS = ("postgresql", "minio", "mlflow", "airflow", "redis")
HELM_ADDED = {"global", "common"}  # set by helm while rendering, not values


def properties(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, sub in schema.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        yield where, sub
        yield from properties(sub, where)


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


@cache
def merged_values() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in SUBCHARTS:
        sub = yaml.safe_load((CHART / "charts" / name / "values.yaml").read_text())
        values[name] = {**sub, **values.get(name, {})}
    return values


@cache
def generator() -> ModuleType:
    """charts/ml-pipeline/hack/generate_schema.py, imported."""
    spec = importlib.util.spec_from_file_location("generate_schema", CHART / "hack" / "generate_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


DOCUMENTED = [(p, s) for p, s in properties(SCHEMA) if p.split(".")[-1] not in HELM_ADDED]


def test_schema_is_valid_draft7():
    import jsonschema

    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_values_files_validate_against_the_schema():
    import jsonschema

    jsonschema.Draft7Validator(SCHEMA).validate(merged_values())


@pytest.mark.parametrize(("path", "schema"), DOCUMENTED, ids=[p for p, _ in DOCUMENTED])
def test_every_property_has_description_and_default_matching_values(path, schema):
    assert schema.get("description", "").strip(), f"{path} has no description"
    assert "default" in schema, f"{path} has no default"
    assert schema["default"] == lookup(merged_values(), path), f"{path}: default differs from values.yaml"


def test_every_object_with_properties_refuses_unknown_keys():
    objects = [("<root>", SCHEMA), *properties(SCHEMA)]
    for path, schema in objects:
        if "properties" in schema:
            assert schema.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_every_value_is_declared_in_the_schema():
    def walk(values: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        if "properties" not in schema:
            return
        for key, value in values.items():
            assert key in schema["properties"], f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict):
                walk(value, schema["properties"][key], f"{path}{key}.")

    walk(merged_values(), SCHEMA, "")


def test_only_local_refs():
    refs = list(all_refs(SCHEMA))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), f"remote $ref {ref} fails offline"


def test_schema_file_is_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(CHART / "hack" / "generate_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_value_that_mirrors_a_setting_has_the_settings_schema():
    """Read back from the file: the enum, bounds and pattern are the declarations' own."""
    from pipeline.settings import SAFE_NAME, Settings

    gen = generator()
    dag = gen._config_docs()._dag_settings_module()
    levels = typing.get_args(Settings.model_fields["log_level"].annotation)
    assert gen.schema_at(SCHEMA, "pipeline.logLevel")["enum"] == list(levels)
    assert gen.schema_at(SCHEMA, "airflow.dag.taskRunner")["enum"] == list(dag.TASK_RUNNERS)
    assert gen.schema_at(SCHEMA, "airflow.dag.onFinishAction")["enum"] == list(dag.ON_FINISH_ACTIONS)
    assert gen.schema_at(SCHEMA, "global.images.pipeline.pullPolicy")["enum"] == list(dag.PULL_POLICIES)
    assert gen.schema_at(SCHEMA, "airflow.dag.retryDelaySeconds")["minimum"] == 1
    assert gen.schema_at(SCHEMA, "airflow.dag.retries")["minimum"] == 0
    assert gen.schema_at(SCHEMA, "pipeline.modelName")["pattern"] == "^$|" + SAFE_NAME.pattern
    # every derived setting, wherever its value's schema lives (a shared definition included)
    assert gen.misplaced(SCHEMA, gen.declared_settings()) == []


def test_a_values_description_names_the_variable_it_sets():
    for setting in generator().declared_settings():
        node = SCHEMA
        for key in setting.path.split("."):
            node = node.get("properties", {}).get(key, {})
        if node:  # a key inside a shared definition (pullPolicy) has no description of its own
            assert setting.env in node["description"], setting.path


def test_every_level_the_pipeline_accepts_the_chart_accepts():
    # the chart's own list of levels had left out CRITICAL, which the pipeline accepts
    objects = render_chart({"pipeline": {"logLevel": "CRITICAL"}})
    env = next(o for o in objects if o["metadata"]["name"] == "mlp-pipeline-env")
    assert env["data"]["PIPELINE_LOG_LEVEL"] == "CRITICAL"


REFUSED = [
    ({"airflow": {"executor": "LocalExecutor"}}, "/airflow/executor"),
    ({"airflow": {"dag": {"onFinishAction": "explode"}}}, "/airflow/dag/onFinishAction"),
    ({"airflow": {"dag": {"gpu": {"count": 0}}}}, "/airflow/dag/gpu/count"),
    ({"airflow": {"dag": {"gpu": {"resource": "gpu please"}}}}, "/airflow/dag/gpu/resource"),
    ({"airflow": {"dag": {"taskRunner": "docker"}}}, "/airflow/dag/taskRunner"),
    ({"airflow": {"dag": {"stepTimeoutSeconds": -5}}}, "/airflow/dag/stepTimeoutSeconds"),
    ({"global": {"images": {"pipeline": {"digest": "latest"}}}}, "/global/images/pipeline/digest"),
    ({"global": {"images": {"pipeline": {"pullPolicy": "Sometimes"}}}}, "/global/images/pipeline/pullPolicy"),
    ({"global": {"s3": {"bucket": "Not_A_Bucket"}}}, "/global/s3/bucket"),
    ({"global": {"s3": {"endpoint": "minio:9000"}}}, "/global/s3/endpoint"),
    ({"global": {"postgresql": {"port": 70000}}}, "/global/postgresql/port"),
    ({"global": {"pipeline": {"namespace": "Bad_Namespace"}}}, "/global/pipeline/namespace"),
    ({"postgresql": {"bogus": True}}, "bogus"),
    ({"mlflow": {"replicas": 0}}, "/mlflow/replicas"),
    ({"pipeline": {"logLevel": "LOUD"}}, "/pipeline/logLevel"),
    ({"pipeline": {"modelName": "../other"}}, "/pipeline/modelName"),
    ({"airflow": {"dag": {"retryDelaySeconds": 0}}}, "/airflow/dag/retryDelaySeconds"),
    (
        {"airflow": {"dag": {"gpu": {"runtimeClassName": "Nvidia Runtime"}}}},
        "/airflow/dag/gpu/runtimeClassName",
    ),
    (
        {"airflow": {"dag": {"resources": {"train": {"limits": {"memory": "lots"}}}}}},
        "/airflow/dag/resources",
    ),
    ({"pipeline": {"model": {"version": "v7"}}}, "/pipeline/model/version"),
    ({"unknownTopLevel": 1}, "unknownTopLevel"),
    (
        {
            "minio": {
                "image": {"repository": "x", "tag": "y", "digest": "", "pullPolicy": "Never", "extra": 1}
            }
        },
        "/minio/image",
    ),
]


@pytest.mark.parametrize(("values", "key"), REFUSED, ids=[k for _, k in REFUSED])
def test_bad_values_are_refused_naming_the_key(values, key):
    with pytest.raises(HelmFailedError, match="values don't meet the specifications") as failure:
        render_chart(values)
    assert key in failure.value.stderr
