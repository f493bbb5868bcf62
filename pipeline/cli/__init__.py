"""The ``pipeline`` command line (also ``python -m pipeline``).

Heavy libraries are imported inside the commands that need them, so ``pipeline --help`` and the
Airflow DAG's parse stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from pipeline.errors import EXIT_BAD_INPUT, EXIT_RETRYABLE, PipelineError, exit_code_for, one_line
from pipeline.redaction import redact

app = typer.Typer(
    name="pipeline",
    help="End-to-end ML training pipeline: ingest, validate, preprocess, features, version, train, "
    "evaluate, register.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
logger = logging.getLogger("pipeline")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (dataset, contract, hyperparameters). Default: PIPELINE_CONFIG "
        "or the packaged penguins config.",
        exists=False,
        dir_okay=False,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one setting, e.g. --set train.max_epochs=5 (repeatable)."),
]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.max_epochs=5", "data.source.uri=x.csv"]`` -> nested dict (values parsed as YAML)."""
    from pipeline.errors import ConfigError

    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.max_epochs=5")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set twice")
        node[parts[-1]] = value
    return result


def load_settings(config: Path | None, overrides: list[str] | None):
    from pydantic import ValidationError

    from pipeline.errors import ConfigError
    from pipeline.settings import Settings

    try:
        settings = Settings.load(config, **parse_overrides(overrides))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"invalid configuration ({config or os.environ.get('PIPELINE_CONFIG') or 'default'}): {problems}"
        ) from None
    if _COMMAND_LEVEL is None:  # a command that fixes its own level (e.g. `config`) keeps it
        logging.getLogger().setLevel(settings.log_level)
    return settings


_COMMAND_LEVEL: str | None = None


def _prepare(level: str | None = None) -> None:
    """Logging, telemetry and signals for a command. ``level`` fixes the command's log level;
    without it the level is ``PIPELINE_LOG_LEVEL`` until the settings load, then ``log_level``."""
    from pipeline.logs import setup_logging
    from pipeline.tracking import quiet_telemetry

    global _COMMAND_LEVEL
    _COMMAND_LEVEL = level
    setup_logging(level or os.environ.get("PIPELINE_LOG_LEVEL", "INFO"))
    quiet_telemetry()

    def on_sigterm(signum, frame):  # let finally-blocks run: MLflow runs end as KILLED, temp dirs go
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)


def fail(
    exc: BaseException, context: str = "", details: list[str] | None = None, resume: str | None = None
) -> typer.Exit:
    """Print the error once, as one block, and map it to the exit-code contract.

    The block is a head line (what failed, whether a retry can help), then ``details`` (e.g.
    where the failed step saved its report) and the ``resume`` command when the caller gives
    one (a command that can help: see ``pipeline run``); its last line is the message itself, on
    one line after ``pipeline: error:``: what an alert or a task log shows
    (dags/ml_pipeline_support/operators.py reads it). The message is printed verbatim (never
    read as console markup) and only there.
    """
    code = exit_code_for(exc)
    if isinstance(exc, KeyboardInterrupt):
        message = f"interrupted ({exc or 'Ctrl-C'})"
    elif isinstance(exc, PipelineError):
        message = str(exc)
    else:
        logger.error("unexpected error", exc_info=exc)
        message = f"{type(exc).__name__}: {exc}"
    if code == EXIT_BAD_INPUT:
        kind = f"bad input (exit {code}: a retry cannot help)"
    else:
        kind = f"failed (exit {code}: retryable)"
    head = f"{context}{kind}"
    lines = [head, *(f"  {line}" for line in details or [])]
    if resume:
        lines.append(f"  Resume with: {resume}")
    for line in lines:
        console.print(redact(line), highlight=False, markup=False, soft_wrap=True)
    # The last line of stderr is always one line: what an alert or a task log shows.
    print(f"pipeline: error: {context}{one_line(redact(message))}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def saved_outputs(settings: Any, run_id: str, step: str, since: str) -> list[str]:
    """Where a step that failed at or after ``since`` (:func:`pipeline.storage.utcnow`) published
    what it saved for inspection (the validate step's report and Data Docs), as its manifest
    records them: one ``name: location`` line each. Nothing when the step published nothing in
    this attempt (an older attempt's outputs would describe other data)."""
    from pipeline.runner import make_store

    try:
        manifest = make_store(settings).read_manifest(run_id, step)
    except Exception as exc:  # the error being reported matters more than its details
        logger.debug("could not read the manifest of %s/%s: %s", run_id, step, exc)
        return []
    if manifest is None or manifest.status != "failed" or manifest.started_at < since:
        return []
    lines = []
    # files first (the report), then folders (the Data Docs)
    for name, entry in sorted(manifest.outputs.items(), key=lambda item: "sha256" not in item[1]):
        uri = entry["uri"]
        if "sha256" not in entry:  # a folder: name its entry page when it has one
            index = f"{uri.rstrip('/')}/index.html"
            if uri.startswith("s3://") or Path(index).is_file():
                uri = index
        lines.append(f"{name.replace('_', ' ')}: {uri}")
    return lines


@contextlib.contextmanager
def reported(
    context: str = "",
    resume: Callable[[], str | None] | None = None,
    details: Callable[[], list[str]] | None = None,
) -> Iterator[None]:
    """Every command's error path: any failure inside is printed once, redacted, and mapped to the
    exit-code contract by :func:`fail`; ``resume`` names the command that resumes the work when
    the failure is worth a retry, ``details`` what else the user should see (saved reports)."""
    try:
        yield
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        hint = resume() if resume is not None and exit_code_for(exc) == EXIT_RETRYABLE else None
        raise fail(exc, context, details() if details is not None else None, hint) from None


# The commands, registered on `app` in this order (`pipeline --help` lists them so).
# isort: off
from pipeline.cli import running  # noqa: E402, F401
from pipeline.cli import lineage  # noqa: E402, F401
from pipeline.cli import experiments  # noqa: E402, F401
from pipeline.cli import serving  # noqa: E402, F401
from pipeline.cli import monitoring  # noqa: E402, F401
# isort: on


def main() -> None:
    from pipeline.redaction import install_stream_redaction, register_environment

    # Everything this process prints goes through the one redaction (pipeline.redaction): the
    # environment's secrets are known before the settings are even read.
    register_environment()
    install_stream_redaction()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_RETRYABLE)


if __name__ == "__main__":
    main()
