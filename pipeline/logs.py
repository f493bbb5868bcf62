"""Logging set-up for the CLI: human-readable lines on stderr; stdout is kept for the JSON summary."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from pipeline.redaction import RedactingFormatter

NOISY = (
    "great_expectations",
    "alembic",
    "urllib3",
    "botocore",
    "s3fs",
    "fsspec",
    "dvc",
    "git",
    "matplotlib",
    "aiobotocore",
    "asyncio",
    "filelock",
    "numexpr",
    "optuna",
)


class _QuietLibraries(logging.Filter):
    """Drops what the libraries in :data:`NOISY` log below WARNING, even where a library sets its
    own loggers' levels when it is imported (Great Expectations announces every temporary docs
    folder at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        return not any(name == noisy or name.startswith(noisy + ".") for noisy in NOISY)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_QuietLibraries())
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in pods and CI logs
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
