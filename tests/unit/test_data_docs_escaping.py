"""Data values never become markup in the published Great Expectations Data Docs.

The contract runs for real (GX, its Data Docs site builder) on the penguins data with script
payloads in a category column and in a column name; the pages GX writes are parsed with the
standard library's HTML parser: no element or attribute of a payload exists, and each payload is
still shown, as text, in the table of unexpected values.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from pipeline.contract import validate_frame
from pipeline.settings import Settings

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
BREAKOUT = '</td></div><svg onload=alert(3)>"x'
COLUMN = "<iframe srcdoc=alert(4)>"
PAYLOADS = (IMG, SCRIPT, BREAKOUT)


class _Page(HTMLParser):
    """Every element with its attributes, the text of each script, and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> tuple[Path, list[str]]:
    import palmerpenguins

    frame = pd.read_csv(Path(palmerpenguins.__file__).parent / "data" / "penguins.csv")
    for row, payload in enumerate(PAYLOADS):
        frame.loc[row, "island"] = payload
    frame[COLUMN] = 1.0  # an unexpected column, named by the data
    out = tmp_path_factory.mktemp("data-docs")
    data = Settings.load().data.model_copy(update={"allow_extra_columns": False})
    outcome = validate_frame(frame, data, "payload.csv", docs_dir=out)
    assert not outcome.success
    assert any(
        "'island'" in f and "values in ['Biscoe', 'Dream', 'Torgersen']" in f for f in outcome.failures
    )
    return out, outcome.failures


def pages(root: Path) -> list[Path]:
    found = sorted(root.rglob("*.html"))
    assert any("validations" in p.parts for p in found), found
    return found


def test_no_payload_becomes_an_element_or_attribute(docs):
    root, _ = docs
    for path in pages(root):
        page = parse(path)
        for tag, attrs in page.elements:
            assert tag not in ("svg", "iframe"), (path, tag, attrs)  # GX itself uses neither
            assert not (tag == "img" and attrs.get("src") == "x"), (path, attrs)  # GX's logo is an img
            # GX has onclick handlers of its own; none carries a payload's script
            assert not any("alert(" in (value or "") for value in attrs.values()), (path, tag, attrs)
            assert not any(name in ("onerror", "onload") for name in attrs), (path, tag, attrs)
            assert "srcdoc" not in attrs
        assert not any("alert(" in script for script in page.scripts), path


def test_each_payload_is_still_shown_as_text(docs):
    root, _ = docs
    (validation,) = [p for p in pages(root) if "validations" in p.parts]
    text = "".join(parse(validation).text)
    for payload in PAYLOADS:
        assert payload in text
    assert COLUMN in text
