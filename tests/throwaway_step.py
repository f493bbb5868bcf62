"""A step that exists only for tests/dags/test_adding_a_step.py: it reads the evaluate step's
summary (as declared in its StepSpec) and publishes one small JSON file."""

from __future__ import annotations

import json
from typing import Any

from pipeline.context import StepContext, StepResult


def run(ctx: StepContext) -> StepResult:
    evaluate = ctx.upstream("evaluate").summary
    metric = evaluate["primary_metric"]
    (ctx.staging / "audit.json").write_text(json.dumps({"metric": metric, "test": evaluate["test"][metric]}))
    return StepResult(outputs={"audit": "audit.json"}, summary={"audited": metric})


def describe(summary: dict[str, Any]) -> str:
    return f"audited {summary.get('audited')}"
