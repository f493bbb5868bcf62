"""The checks' report: one line per check, and the exit status it maps to."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RETRYABLE

if TYPE_CHECKING:  # pragma: no cover
    pass

logger = logging.getLogger(__name__)


PROBE_PREFIX = "_doctor"
TIMEOUT_S = 5.0

OK = "ok"
PROBLEM = "problem"  # a person must change something
UNREACHABLE = "unreachable"  # a backend did not answer: worth retrying
SKIPPED = "skipped"  # depends on a check that failed


@dataclass
class Check:
    name: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status in (PROBLEM, UNREACHABLE)

    def line(self) -> str:
        label = {OK: "ok", PROBLEM: "FAIL", UNREACHABLE: "FAIL", SKIPPED: "skip"}[self.status]
        return f"{label:<5}{self.name:<15}{self.message}"


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, message: str) -> Check:
        check = Check(name, status, " ".join(message.split()))
        self.checks.append(check)
        return check

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def exit_code(self) -> int:
        if any(c.status == PROBLEM for c in self.checks):
            return EXIT_BAD_INPUT
        if any(c.status == UNREACHABLE for c in self.checks):
            return EXIT_RETRYABLE
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "exit_code": self.exit_code,
            "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in self.checks],
        }


def probe_bytes() -> tuple[str, bytes]:
    token = uuid.uuid4().hex
    return token, f"ml-pipeline doctor probe {token}\n".encode()
