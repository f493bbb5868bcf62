"""Issue 15's rule: no module in ``pipeline/`` over about 400 lines without a reason at its top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
LIMIT = 400


def oversized_without_reason(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > LIMIT and "Why one module" not in (ast.get_docstring(ast.parse(text)) or ""):
            found.append(f"{path.relative_to(package.parent)} ({lines} lines)")
    return found


def test_every_large_module_says_why_it_is_one_module() -> None:
    assert len(list(PACKAGE.rglob("*.py"))) > 20, PACKAGE
    assert oversized_without_reason(PACKAGE) == [], (
        f"modules over {LIMIT} lines: split them along their seams, or say at the top of the"
        " docstring why each is one module ('Why one module of this size: ...')"
    )


def test_the_check_finds_a_large_module_without_a_reason(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "small.py").write_text('"""Small."""\n')
    (package / "large.py").write_text('"""Large."""\n' + "x = 1\n" * LIMIT)
    (package / "explained.py").write_text(
        '"""Large.\n\nWhy one module of this size: one job."""\n' + "x = 1\n" * LIMIT
    )
    assert oversized_without_reason(package) == [f"pkg/large.py ({LIMIT + 1} lines)"]
