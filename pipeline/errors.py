"""Error types and the exit codes they map to.

Exit codes say who is at fault, so an orchestrator knows whether a retry can help:

* ``0`` — success.
* ``65`` (``EX_DATAERR``) — bad input or failed validation. Retrying cannot help; a person has
  to fix the data or the configuration. Airflow tasks do not retry on this code.
* ``75`` (``EX_TEMPFAIL``) — everything else: a backend was unreachable, a process was killed,
  an unexpected bug. Worth retrying.
* ``2`` — command-line usage error (raised by Typer/Click before any step runs).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 65
EXIT_RETRYABLE = 75


def one_line(text: str, separator: str = " | ") -> str:
    """``text`` on one line: its non-blank lines, stripped, joined by ``separator`` (for a log
    line, a chat alert or the last stderr line an orchestrator shows)."""
    return separator.join(line.strip() for line in text.splitlines() if line.strip())


class PipelineError(Exception):
    """Base class for errors the pipeline raises on purpose."""

    exit_code = EXIT_RETRYABLE


class BadInputError(PipelineError):
    """The input data or the configuration is wrong: not worth retrying.

    The message must name the file (or source), the row or column, and the rule broken.
    """

    exit_code = EXIT_BAD_INPUT


class ValidationFailedError(BadInputError):
    """The data contract (Great Expectations suite) failed on the raw snapshot."""

    def __init__(self, message: str, failures: list[str] | None = None):
        super().__init__(message)
        self.failures = failures or []


class ConfigError(BadInputError):
    """The configuration is invalid (unknown column, impossible option, unsafe name)."""


class UpstreamMissingError(PipelineError):
    """A step was started before the step it depends on published its outputs."""

    exit_code = EXIT_BAD_INPUT


class RetryableError(PipelineError):
    """A transient failure: a backend was unreachable or timed out."""

    exit_code = EXIT_RETRYABLE


def exit_code_for(exc: BaseException) -> int:
    """Map any exception to the exit code contract."""
    if isinstance(exc, PipelineError):
        return exc.exit_code
    return EXIT_RETRYABLE
