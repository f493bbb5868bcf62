"""Helpers shared by the test suite.

A test that needs a tool or a service which is not there must not pass silently. On a developer's
laptop it is skipped with a message saying what to install; in CI (``CI`` set, as ``.ci/run``
does) it fails loudly, because there a missing service is a broken setup, not a choice.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(what: str, how_to_install: str) -> None:
    """Skip (laptop) or fail (CI) because ``what`` is missing."""
    message = f"{what} is not available: {how_to_install}"
    if in_ci():
        pytest.fail(f"{message} (required in CI)", pytrace=False)
    pytest.skip(message)


def need_executable(name: str, how_to_install: str, path: str | None = None) -> str:
    """Return the path of an executable or skip/fail saying how to install it."""
    found = shutil.which(name, path=path)
    if not found:
        unavailable(f"the `{name}` executable", how_to_install)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
