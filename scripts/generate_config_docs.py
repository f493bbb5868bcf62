"""Write the generated tables of docs/configuration.md from the settings declarations.

* ``PIPELINE_*``: from the pydantic models of ``pipeline/settings.py`` (field names become
  variables with the ``PIPELINE_`` prefix and ``__`` nesting; the field's default and description);
* ``MLP_DAG_*``: from ``DagSettings`` in ``dags/ml_pipeline_support/settings.py``.

Each table sits between a BEGIN and an END marker comment; the text around them is hand-written.

    python scripts/generate_config_docs.py          # rewrite the tables
    python scripts/generate_config_docs.py --check  # exit 1 if docs/configuration.md is out of date

tests/unit/test_config_docs.py and tests/charts/test_dag_settings.py fail when the docs drift.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "configuration.md"
PIPELINE_BEGIN = "<!-- BEGIN PIPELINE table: python scripts/generate_config_docs.py -->"
PIPELINE_END = "<!-- END PIPELINE table -->"
DAG_BEGIN = "<!-- BEGIN MLP_DAG table: python scripts/generate_config_docs.py -->"
DAG_END = "<!-- END MLP_DAG table -->"
PREFIX = "PIPELINE_"


def _model_class(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def env_names(path: tuple[str, ...], info: FieldInfo) -> list[str]:
    """The variables of one field: ``PIPELINE_`` + the dotted path joined by ``__``, or the
    upper-case names of a top-level field's ``validation_alias``."""
    alias = info.validation_alias
    if len(path) == 1 and isinstance(alias, AliasChoices):
        return [a for a in alias.choices if isinstance(a, str) and a.isupper()]
    if len(path) == 1 and isinstance(alias, str) and alias.isupper():
        return [alias]
    return [PREFIX + "__".join(part.upper() for part in path)]


def shown_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        factory = info.default_factory
        if getattr(factory, "__module__", "") == "pipeline.settings" and factory.__name__ != "<lambda>":
            return f"computed (`{factory.__name__}()`)"
        value = factory()
    else:
        value = info.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "—"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list | tuple):
        return f"`{json.dumps(value)}`"
    if isinstance(value, Path):
        return f"`{value}`"
    return f"`{value}`"


def rows(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[list[str], str, str]]:
    """(variables, default, description) of every leaf field, nested models expanded in place."""
    for name, info in model.model_fields.items():
        where = (*path, name)
        nested = _model_class(info.annotation)
        if nested is not None:
            yield from rows(nested, where)
            continue
        meaning = " ".join((info.description or "").split()).replace("|", "\\|")
        yield env_names(where, info), shown_default(info), meaning


def pipeline_table(model: type[BaseModel] | None = None) -> str:
    if model is None:
        from pipeline.settings import Settings as model  # noqa: N813
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for names, default, meaning in rows(model):
        variables = " or ".join(f"`{n}`" for n in names)
        lines.append(f"| {variables} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def _dag_settings_module() -> Any:
    if str(REPO / "dags") not in sys.path:
        sys.path.append(str(REPO / "dags"))
    return importlib.import_module("ml_pipeline_support.settings")


def dag_table() -> str:
    """The MLP_DAG_* table: one row per setting ``DagSettings`` declares."""
    lines = ["| variable | default | chart value | meaning |", "|---|---|---|---|"]
    for spec in _dag_settings_module().DagSettings.declared().values():
        chart = f"`{spec.chart}`" if spec.chart else "(the umbrella's names)"
        lines.append(f"| `{spec.env}` | {spec.shown_default()} | {chart} | {spec.doc} |")
    return "\n".join(lines) + "\n"


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with everything between the ``begin`` and ``end`` marker lines replaced by ``body``."""
    head, found, rest = text.partition(begin + "\n")
    if not found or end not in rest:
        raise ValueError(f"markers {begin!r} ... {end!r} not found")
    return head + begin + "\n" + body + rest[rest.index(end) :]


def render(text: str) -> str:
    """``text`` (docs/configuration.md) with both generated tables rewritten."""
    text = replace_between(text, PIPELINE_BEGIN, PIPELINE_END, pipeline_table())
    return replace_between(text, DAG_BEGIN, DAG_END, dag_table())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when docs/configuration.md is out of date"
    )
    args = parser.parse_args(argv)
    text = DOCS.read_text()
    updated = render(text)
    if args.check:
        if updated != text:
            print(f"{DOCS} is out of date: run python scripts/generate_config_docs.py")
            return 1
        return 0
    DOCS.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
