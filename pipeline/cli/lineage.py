"""Lineage of registered versions: `show`, `fetch-data`, `reproduce`, and `ui`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli import (
    ConfigOption,
    SetOption,
    _prepare,
    app,
    console,
    load_settings,
    reported,
)

# --------------------------------------------------------------------------------------------
# lineage
# --------------------------------------------------------------------------------------------

ModelRef = Annotated[str, typer.Argument(help="NAME, NAME@ALIAS (e.g. penguins@champion) or NAME/VERSION.")]


@app.command()
def show(
    model: ModelRef,
    config: ConfigOption = None,
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as JSON.")] = False,
) -> None:
    """Print the lineage of a registered model version: data, code, config, metrics, gate."""
    _prepare("WARNING")
    from pipeline.lineage import describe, resolve_version

    with reported():
        settings = load_settings(config, overrides)
        version = resolve_version(settings, model)
        lineage = describe(settings, version)
    if as_json:
        typer.echo(json.dumps(lineage, indent=2, sort_keys=True, default=str))
        return
    from pipeline.lineage import render

    render(lineage, console=Console())


@app.command("fetch-data")
def fetch_data(
    model: ModelRef,
    dest: Annotated[Path, typer.Option("--dest", help="An empty or new folder to fetch into.")],
    which: Annotated[str, typer.Option("--which", help="raw or processed")] = "raw",
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Fetch the exact data behind a model version from the DVC remote."""
    _prepare("WARNING")
    from pipeline.lineage import fetch_version_data, resolve_version

    with reported():
        settings = load_settings(config, overrides)
        version = resolve_version(settings, model)
        path = fetch_version_data(settings, version, dest, which)
    typer.echo(str(path.resolve()))


@app.command()
def reproduce(
    model: ModelRef,
    tolerance: Annotated[float, typer.Option(help="Largest accepted difference of a test metric.")] = 1e-6,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Fetch a version's data through DVC, retrain it with its recorded configuration in a scratch
    sandbox, and say whether the test metrics match (exit 0 if they do, 1 if not). The dataset,
    contract and training settings come from the version's record alone: --config/--set only say
    where the stores are."""
    _prepare("WARNING")
    from pipeline.lineage import resolve_version
    from pipeline.reproduce import reproduce as run_reproduction

    with reported():
        settings = load_settings(config, overrides)
        version = resolve_version(settings, model)
        result = run_reproduction(settings, version, tolerance)
    table = Table(title=f"{result.model} v{result.version} (data sha256 {result.data_sha256[:12]})")
    for column in ("metric", "original", "reproduced", "match"):
        table.add_column(column)
    for key, value in sorted(result.original.items()):
        again = result.reproduced.get(key, float("nan"))
        table.add_row(key, f"{value:.6f}", f"{again:.6f}", "yes" if key not in result.differences else "NO")
    console.print(table)
    verdict = "reproduced" if result.matches else "NOT reproduced"
    console.print(f"[bold]{verdict}[/] within tolerance {tolerance}")
    print(json.dumps(result.to_dict(), sort_keys=True), flush=True)
    raise typer.Exit(0 if result.matches else 1)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Open the MLflow UI on the embedded store (for a server, browse to it instead)."""
    from pipeline.tracking import prepare_sqlite, quiet_telemetry

    with reported("ui: "):
        settings = load_settings(config, overrides)
    quiet_telemetry()
    if not settings.uses_embedded_tracking:
        typer.echo(f"Tracking is on a server: open {settings.resolved_tracking_uri} in a browser.")
        raise typer.Exit(0)
    uri = settings.resolved_tracking_uri
    prepare_sqlite(uri)
    typer.echo(f"MLflow UI on http://{host}:{port}  (store {uri}; Ctrl-C to stop)", err=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    os.execvp(command[0], command)  # noqa: S606 - replaces this process with the MLflow UI
