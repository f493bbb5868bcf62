"""Data values never become markup in the published Great Expectations Data Docs.

The contract runs for real (GX, its Data Docs site builder) on the penguins data with script
payloads in a category column and in a column name; the pages GX writes are parsed with the
standard library's HTML parser: no element or attribute of a payload exists, and each payload is
still shown, as text, in the table of unexpected values; where Debian's headless Chromium is
installed, the page is opened in it and no payload ran.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.contract import validate_frame
from pipeline.settings import Settings
from tests.support import unavailable

IMG = "<img src=x onerror=window.__mlp_xss=1>"
SCRIPT = "<script>window.__mlp_xss=2</script>"
BREAKOUT = '</td></div><svg onload=window.__mlp_xss=3>"x'
COLUMN = '<img src="y" onerror="window.__mlp_xss=4">'
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


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's chromium through chromedriver (as tests/analysis/test_report.py uses it)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium", "pip install -e '.[dev]'")
    binary = shutil.which("chromium")
    if binary is None or not Path("/usr/bin/chromedriver").exists():
        unavailable("headless Chromium and its driver", "apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(120)
        yield driver
    finally:
        driver.quit()


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
            assert tag != "svg", (path, tag, attrs)  # GX itself has none
            assert not (tag == "img" and attrs.get("src") in ("x", "y")), (path, attrs)  # GX's logo is an img
            # GX has onclick handlers of its own; none carries a payload's script
            assert not any("__mlp_xss" in (value or "") for value in attrs.values()), (path, tag, attrs)
            assert not any(name in ("onerror", "onload") for name in attrs), (path, tag, attrs)
        assert not any("__mlp_xss" in script for script in page.scripts), path


def test_each_payload_is_still_shown_as_text(docs):
    root, _ = docs
    (validation,) = [p for p in pages(root) if "validations" in p.parts]
    text = "".join(parse(validation).text)
    for payload in PAYLOADS:
        assert payload in text
    assert COLUMN in text


def test_no_payload_runs_when_the_page_is_opened(docs):
    root, _ = docs
    (validation,) = [p for p in pages(root) if "validations" in p.parts]
    with headless_chromium() as browser:
        browser.get(validation.resolve().as_uri())  # offline: GX's CDN styles and scripts just fail
        assert browser.execute_script("return window.__mlp_xss === undefined") is True
        assert (
            browser.execute_script("return document.querySelectorAll('img[src=x], img[src=y], svg').length")
            == 0
        )
        shown = browser.execute_script("return document.body.innerText")
        assert IMG in shown and SCRIPT in shown
