"""Bad input: each case fails with the bad-input exit code and a message naming the problem, and
leaves no trace downstream: nothing registered, no new feature-set version, champion untouched."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.errors import EXIT_BAD_INPUT
from pipeline.sources import resolve_package_uri
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

PENGUINS = resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes()


def rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO(PENGUINS.decode())))


def to_csv(table: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table)
    return out.getvalue().encode()


def set_column(name: str, value: Callable[[int, str], str]) -> bytes:
    table = rows()
    index = table[0].index(name)
    for i, row in enumerate(table[1:]):
        row[index] = value(i, row[index])
    return to_csv(table)


def drop_column(name: str) -> bytes:
    table = rows()
    index = table[0].index(name)
    return to_csv([[v for j, v in enumerate(row) if j != index] for row in table])


def with_raw_line(line_number: int, raw: bytes) -> bytes:
    lines = PENGUINS.split(b"\n")
    lines[line_number - 1] = raw
    return b"\n".join(lines)


def to_delimited(delimiter: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows())
    return out.getvalue().encode()


def with_header(old: str, new: str) -> bytes:
    header, rest = PENGUINS.split(b"\n", 1)
    cells = [new if cell == old else cell for cell in header.decode().split(",")]
    return ",".join(cells).encode() + b"\n" + rest


def several_header_problems() -> bytes:
    """No target column, a 2000-character name, and one column more than --set data.max_columns=7."""
    table = rows()
    index = table[0].index("species")
    table = [[v for j, v in enumerate(row) if j != index] for row in table]
    table[0].append("x" * 2000)
    for row in table[1:]:
        row.append("1")
    return to_csv(table)


def all_identical_rows() -> bytes:
    table = rows()
    return to_csv([table[0]] + [table[1]] * (len(table) - 1))


def wide(extra: int) -> bytes:
    """The penguins with ``extra`` undeclared columns."""
    table = rows()
    table[0] += [f"u{i}" for i in range(extra)]
    for row in table[1:]:
        row += ["0"] * extra
    return to_csv(table)


DUPLICATED_HEADER = b"species,island,island\n" + b"\n".join(
    b",".join(line.split(b",")[:3]) for line in PENGUINS.split(b"\n")[1:] if line
)


@dataclass
class Case:
    id: str
    data: bytes | None
    expected: tuple[str, ...]
    args: tuple[str, ...] = ()


CASES = [
    Case("empty-file", b"", ("the file is empty",)),
    Case("header-only", PENGUINS.split(b"\n")[0] + b"\n", ("header but no data rows",)),
    Case("missing-target-column", drop_column("species"), ("column 'species'", "missing")),
    Case(
        "numeric-column-holding-text",
        set_column("body_mass_g", lambda i, v: "heavy" if i == 10 else v),
        ("column 'body_mass_g'", "non-numeric values ['heavy']", "data rows [11]"),
    ),
    Case(
        "all-null-column",
        set_column("bill_depth_mm", lambda i, v: ""),
        ("column 'bill_depth_mm'", "100.0%", "missing values"),
    ),
    Case(
        "category-outside-allowed-set",
        set_column("island", lambda i, v: "Atlantis" if i == 3 else v),
        ("column 'island'", "'Atlantis'", "values in ['Biscoe', 'Dream', 'Torgersen']"),
    ),
    Case(
        "non-utf8-bytes",
        with_raw_line(6, b"Adelie,Torgersen,36.7,19.3,193,3450,f\xe9male,2007"),
        ("line 6", "not valid utf-8"),
    ),
    Case(
        "ragged-rows",
        with_raw_line(9, b"Adelie,Torgersen,34.1,18.1,193,3475,,2007,extra"),
        ("line 9", "9 fields, expected 8"),
    ),
    Case("duplicated-column-names", DUPLICATED_HEADER, ("duplicated column names ['island']",)),
    Case(
        "single-class-target",
        set_column("species", lambda i, v: "Adelie"),
        ("column 'species'", "at least 2 distinct classes"),
    ),
    Case(
        "nan-beyond-allowed-fraction",
        set_column("bill_length_mm", lambda i, v: "NaN" if i % 10 == 0 else v),
        ("column 'bill_length_mm'", "missing values (NaN/null) at most 5.0%"),
    ),
    Case(
        "infinity-beyond-allowed-fraction",
        set_column("flipper_length_mm", lambda i, v: "inf" if i % 50 == 0 else v),
        ("column 'flipper_length_mm'", "inf", "finite values within"),
    ),
    # issue 13: errors that say the real cause
    Case(
        "semicolon-delimited", to_delimited(";"), ("looks ;-delimited", "set data.source.csv.delimiter=';'")
    ),
    Case(
        "zero-width-space-in-header",
        with_header("species", "species\u200b"),
        (
            "column 'species': missing",
            r"header cell 1 'species\u200b' looks like contract column 'species'",
            "zero-width space (U+200B) at position 8",
        ),
    ),
    Case(
        "several-header-problems-at-once",
        several_header_problems(),
        (
            "3 problems with its header",
            "8 columns, more than data.max_columns=7",
            "checked from its header before any row is parsed",
            "header cell 8 'xxxxxxxx",
            "a name of 2000 characters",
            "column 'species': missing",
        ),
        ("--set", "data.max_columns=7"),
    ),
    Case(
        "allowed-list-distinct-values-with-rows",
        set_column("island", lambda i, v: "Atlantis" if i in (3, 8) else "Mars" if i == 11 else v),
        (
            "column 'island': 3 of 344 rows hold values outside the allowed list",
            "'Atlantis' (2 rows: data rows [4, 9]), 'Mars' (1 row: data row [12])",
        ),
    ),
    Case(
        "formula-values-refused",
        set_column("sex", lambda i, v: "@SUM(A1)" if i == 20 else v),
        (
            "column 'sex'",
            "spreadsheet formula",
            "'@SUM(A1)' (1 row: data row [21])",
            "data.formula_values=fail",
        ),
        ("--set", "data.formula_values=fail", "--set", "data.columns.sex.allowed=null"),
    ),
    Case(
        "all-identical-rows",
        all_identical_rows(),
        ("343 of 344 data rows (99.7%) repeat an earlier row", "appears 344 times", "max_duplicate_fraction"),
    ),
    Case(
        "strict-contract-refuses-undeclared-columns",
        wide(9990),
        ("9990 column(s) outside the contract: ['u0', 'u1',", "and 9980 more", "data.strict=true"),
        ("--set", "data.strict=true"),
    ),
    Case("path-traversal-run-id", None, ("run id", "'../../etc'", "no '..'"), ("--run-id", "../../etc")),
    Case(
        "path-traversal-dataset-name",
        None,
        ("data.name", "../evil", "not a safe name"),
        ("--set", "data.name=../evil"),
    ),
    Case(
        "path-traversal-model-name",
        None,
        ("model_name", "not a safe name"),
        ("--set", "model_name=a/../../b"),
    ),
]


@pytest.fixture(scope="module")
def with_champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("badinput") / "home"
    result = run_cli(["run", *FAST], home)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def state(home: Path) -> dict:
    """Everything downstream of validation a bad input must not touch."""
    import sqlalchemy as sa
    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}", registry_uri=f"sqlite:///{home / 'mlflow.db'}"
    )
    versions = sorted(str(v.version) for v in client.search_model_versions("name = 'penguins'"))
    champion = str(client.get_model_version_by_alias("penguins", "champion").version)
    engine = sa.create_engine(f"sqlite:///{home / 'features.db'}")
    with engine.connect() as connection:
        feature_versions = connection.execute(
            sa.text("SELECT feature_set, version FROM feature_set_versions")
        ).all()
    engine.dispose()
    runs = sorted(p.name for p in (home / "artifacts" / "runs").iterdir())
    downstream = sorted(
        f"{run}/{step}"
        for run in runs
        for step in ("preprocess", "features", "version", "train", "evaluate", "register")
        if (home / "artifacts" / "runs" / run / step / "manifest.json").exists()
    )
    return {
        "versions": versions,
        "champion": champion,
        "features": sorted(map(tuple, feature_versions)),
        "downstream": downstream,
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, with_champion: Path, tmp_path: Path) -> None:
    before = state(with_champion)
    args = ["run", *FAST, *case.args]
    if case.data is not None:
        source = tmp_path / "input.csv"
        source.write_bytes(case.data)
        args += ["--set", f"data.source.uri={source}"]
    result = run_cli(args, with_champion)
    output = result.stderr
    assert result.returncode == EXIT_BAD_INPUT, output[-3000:]
    for expected in case.expected:
        assert expected in output, f"{expected!r} not in:\n{output[-3000:]}"
    if case.data is not None:
        assert str(tmp_path / "input.csv") in output or "snapshot" in output  # the message names the file
    last = output.strip().splitlines()[-1]
    assert last.startswith("pipeline: error:"), "the last stderr line is one line, for alerts and task logs"
    assert state(with_champion) == before


def test_step_command_uses_the_same_exit_code(with_champion: Path, tmp_path: Path) -> None:
    source = tmp_path / "input.csv"
    source.write_bytes(set_column("island", lambda i, v: "Atlantis" if i == 0 else v))
    env = {"PIPELINE_DATA__SOURCE__URI": str(source)}
    assert run_cli(["step", "ingest", "--run-id", "bad-1"], with_champion, **env).returncode == 0
    result = run_cli(["step", "validate", "--run-id", "bad-1"], with_champion, **env)
    assert result.returncode == EXIT_BAD_INPUT
    assert "'Atlantis'" in result.stderr
    # The failed validation's report is published (for inspection) and marked failed ...
    manifest = (with_champion / "artifacts" / "runs" / "bad-1" / "validate" / "manifest.json").read_text()
    assert '"status": "failed"' in manifest
    # ... and the next step refuses to run on it.
    downstream = run_cli(["step", "preprocess", "--run-id", "bad-1"], with_champion, **env)
    assert downstream.returncode == EXIT_BAD_INPUT
    assert "validate" in downstream.stderr and "failed" in downstream.stderr
    assert not os.path.exists(with_champion / "artifacts" / "runs" / "bad-1" / "preprocess")


def test_undeclared_columns_and_formula_values_are_warnings_recorded_by_validate(
    with_champion: Path, tmp_path: Path
) -> None:
    """Columns outside a non-strict contract and formula-like text pass (exit 0), each named in a
    warning on stderr and recorded in the validate step's summary and report."""
    import json

    source = tmp_path / "input.csv"
    table = list(csv.reader(io.StringIO(wide(9990).decode())))
    table[21][table[0].index("sex")] = '=HYPERLINK("http://example.invalid")'
    source.write_bytes(to_csv(table))
    args = [
        "--run-id",
        "warn-1",
        "--set",
        f"data.source.uri={source}",
        "--set",
        "data.columns.sex.allowed=null",
    ]
    assert run_cli(["step", "ingest", *args], with_champion).returncode == 0
    result = run_cli(["step", "validate", *args], with_champion)
    assert result.returncode == 0, result.stderr[-3000:]
    undeclared = "9990 column(s) outside the contract are ignored: ['u0', 'u1',"
    formula = "column 'sex': 1 value(s) start like a spreadsheet formula"
    for text in (undeclared, "and 9980 more", formula, "(1 row: data row [21])"):
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr[-3000:]}"
    step = with_champion / "artifacts" / "runs" / "warn-1" / "validate"
    manifest = json.loads((step / "manifest.json").read_text())
    summary = manifest["summary"]
    assert summary["undeclared_columns"] == 9990
    assert any(undeclared in w for w in summary["warnings"]) and any(
        formula in w for w in summary["warnings"]
    )
    uri = manifest["outputs"]["report"]["uri"]
    report = json.loads(Path(uri.removeprefix("file://")).read_text())
    assert report["success"] is True and len(report["warnings"]) == 2


# Bounded sources (issue 12): each bound a source breaks is bad input (65), refused before the
# table is built, and leaves nothing downstream. ----------------------------------------------


def many_rows_parquet(rows: int) -> bytes:
    """A tiny Parquet file with ``rows`` rows whose data pages are garbage: only its footer can be
    read, so a refusal naming the row count proves the rows were never decoded."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"species": pa.array(np.zeros(rows, dtype="int8"))}), buffer)
    data = bytearray(buffer.getvalue())
    footer = int.from_bytes(data[-8:-4], "little")
    data[4 : len(data) - 8 - footer] = b"\xff" * (len(data) - 12 - footer)
    return bytes(data)


@pytest.fixture(scope="module")
def nested_json_api():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Deep(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"[" * 50_000 + b"]" * 50_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Deep)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/records"
    server.shutdown()


def test_a_parquet_file_over_the_default_row_cap_is_refused_from_its_footer(
    with_champion: Path, tmp_path: Path
) -> None:
    before = state(with_champion)
    source = tmp_path / "big.parquet"
    source.write_bytes(many_rows_parquet(12_000_000))
    assert source.stat().st_size < 1 << 20
    result = run_cli(["run", *FAST, "--set", f"data.source.uri={source}"], with_champion)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert f"{source}: 12000000 rows, more than data.max_rows=10000000" in result.stderr
    assert state(with_champion) == before


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nested-json", ("nests 50000 levels deep", "data.source.http.max_json_depth=64")),
        ("ftp-scheme", ("scheme 'ftp' is not supported",)),
        ("pkg-traversal", ("pkg://<package>/<path inside the package>",)),
        ("header-variable-missing", ("headers_from_env: header 'X-API-Key'", "not set")),
    ],
)
def test_a_source_outside_its_bounds_is_bad_input(
    case: str, expected: tuple[str, ...], with_champion: Path, nested_json_api: str
) -> None:
    before = state(with_champion)
    args = {
        "nested-json": ["--set", f"data.source.uri={nested_json_api}"],
        "ftp-scheme": [
            "--set",
            "data.source.uri=ftp://127.0.0.1/penguins.csv",
            "--set",
            "data.source.kind=http",
        ],
        "pkg-traversal": [
            "--set",
            "data.source.uri=pkg://palmerpenguins//etc/passwd",
            "--set",
            "data.source.format=csv",
        ],
        "header-variable-missing": [
            "--set",
            f"data.source.uri={nested_json_api}",
            "--set",
            'data.source.http.headers_from_env={"X-API-Key": "NO_SUCH_SOURCE_KEY"}',
        ],
    }[case]
    result = run_cli(["run", *FAST, *args], with_champion)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr[-3000:]}"
    assert result.stderr.strip().splitlines()[-1].startswith("pipeline: error:")
    assert state(with_champion) == before
