"""Every MLflow name the pipeline writes is declared once, in pipeline/names.py: no module of the
package spells one as a string literal (a reader drifting from its writer is how a renamed tag
silently empties a report column or a lineage record)."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline import names

PACKAGE = Path(names.__file__).parent
DECLARED = {
    value: key
    for key, value in vars(names).items()
    if key.isupper() and isinstance(value, str) and "." in value.strip(".")
}


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_names_module_declares_each_name_once() -> None:
    values = [v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)]
    assert len(values) == len(set(values)), sorted(v for v in values if values.count(v) > 1)


def test_no_module_spells_a_declared_mlflow_name() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r} is names.{DECLARED[value]}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(names.__file__)
        for line, value in _literals(path)
        if value in DECLARED
    ]
    assert not found, "\n".join(found)


def test_the_check_sees_a_literal(tmp_path: Path) -> None:
    """The scan is not vacuous: a module that spells a tag is caught."""
    module = tmp_path / "m.py"
    module.write_text(f'"""Doc {names.DECISION}."""\nTAGS = {{"{names.DECISION}": 1}}\n')
    assert _literals(module) == [(2, names.DECISION)]
