"""Which settings a step really reads: every attribute read on the settings object (and the models
inside it) while the step function runs, as dotted paths (tests/e2e/test_step_cache.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pydantic import BaseModel


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _paths(model: BaseModel, prefix: str, into: dict[int, str]) -> None:
    into[id(model)] = prefix
    for name in type(model).model_fields:
        value = model.__dict__.get(name)
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, item in items:
            if isinstance(item, BaseModel):
                _paths(
                    item, _join(_join(prefix, name), key) if key is not None else _join(prefix, name), into
                )


@contextlib.contextmanager
def recording(settings) -> Iterator[set[str]]:
    """Record the settings read in the block: a field's value (a section read whole by
    ``model_dump`` counts as all of it). ``Settings.redacted()`` (the configuration recorded on a
    run, which shapes no output) is not counted."""
    from pipeline.settings import Settings

    paths: dict[int, str] = {}
    _paths(settings, "", paths)
    reads: set[str] = set()
    state = {"paused": 0}
    original = object.__getattribute__
    assert "__getattribute__" not in BaseModel.__dict__

    def getattribute(self, name):
        value = original(self, name)
        if state["paused"] or name.startswith("_"):
            return value
        prefix = paths.get(id(self))
        if prefix is None:
            return value
        if name in type(self).model_fields:
            if not isinstance(value, BaseModel):
                reads.add(_join(prefix, name))
        elif name in ("model_dump", "model_dump_json") and self is not settings:
            reads.add(prefix)
        return value

    redacted = Settings.redacted

    def quiet_redacted(self):
        state["paused"] += 1
        try:
            return redacted(self)
        finally:
            state["paused"] -= 1

    BaseModel.__getattribute__ = getattribute
    Settings.redacted = quiet_redacted
    try:
        yield reads
    finally:
        del BaseModel.__getattribute__
        Settings.redacted = redacted
