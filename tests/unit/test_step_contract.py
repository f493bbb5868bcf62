"""The step contract: each StepSpec declares what the step reads (by step and output) and what it
publishes; the context refuses undeclared reads and the runner undeclared (or missing) outputs,
so the declarations cannot drift from the step bodies. The e2e runs execute every step under
this enforcement; these tests pin the mechanism itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import sweep
from pipeline.context import StepContext, StepContractError, StepResult
from pipeline.errors import UpstreamMissingError
from pipeline.runner import check_outputs, make_store
from pipeline.settings import Settings
from pipeline.steps import DATA_STEPS, STEP_NAMES, STEPS, get_step


def _context(home: Path, step: str, spec=None) -> StepContext:
    settings = Settings.load()
    store = make_store(settings)
    return StepContext(settings=settings, run_id="r1", step=step, store=store, workdir=home, spec=spec)


def test_every_input_names_an_output_an_earlier_step_declares() -> None:
    declared: dict[str, set[str]] = {}
    for spec in STEPS:
        for item in spec.inputs:
            step, _, output = item.partition(".")
            assert step in declared, f"{spec.name} reads {item!r}: {step!r} is not an earlier step"
            assert not output or output in declared[step], f"{spec.name} reads {item!r}, never published"
        declared[spec.name] = set(spec.outputs)
    assert len(set(STEP_NAMES)) == len(STEP_NAMES)


def test_the_data_steps_come_first_and_the_sweep_reads_only_them() -> None:
    assert STEP_NAMES[: len(DATA_STEPS)] == DATA_STEPS
    assert all(get_step(name).kind == "model" for name in STEP_NAMES[len(DATA_STEPS) :])
    assert set(sweep.TRIAL_INPUTS.needs) <= set(DATA_STEPS)


def test_an_undeclared_read_is_refused_before_anything_is_fetched(home: Path) -> None:
    ctx = _context(home, "validate", get_step("validate"))
    with pytest.raises(
        StepContractError, match=r"step 'validate' read output 'features' of step 'preprocess'"
    ):
        ctx.input_path("preprocess", "features")
    with pytest.raises(StepContractError, match="the manifest of step 'train'"):
        ctx.upstream("train")
    with pytest.raises(UpstreamMissingError):  # declared: the read goes ahead (and finds nothing yet)
        ctx.input_path("ingest", "raw")


def test_a_context_without_a_spec_reads_anything(home: Path) -> None:
    with pytest.raises(UpstreamMissingError):
        _context(home, "tool").input_path("preprocess", "features")


def test_the_runner_refuses_outputs_the_spec_does_not_declare() -> None:
    validate = get_step("validate")
    check_outputs(validate, StepResult(outputs={"report": "v.json", "data_docs": "docs"}))
    check_outputs(validate, StepResult(outputs={"report": "v.json"}, status="failed"))  # partial on failure
    with pytest.raises(StepContractError, match="declares"):
        check_outputs(validate, StepResult(outputs={"report": "v.json", "data_docs": "d", "extra": "x"}))
    with pytest.raises(StepContractError, match="declares"):
        check_outputs(validate, StepResult(outputs={"report": "v.json"}))  # success without all


def test_the_architecture_doc_lists_what_each_step_declares() -> None:
    """docs/architecture.md's table of reads and writes is the registry read out; it cannot drift."""
    import re

    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    rows = {
        cells[0]: cells
        for line in doc.splitlines()
        if line.startswith("| ")
        and (cells := [c.strip() for c in line.strip("|").split("|")])[0] in STEP_NAMES
    }
    assert sorted(rows) == sorted(STEP_NAMES)
    for spec in STEPS:
        reads = {
            token
            for token in re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", rows[spec.name][1])
            if token.partition(".")[0] in STEP_NAMES
        }
        writes = set(re.findall(r"`([a-z_]+)`", rows[spec.name][2]))
        assert reads == set(spec.inputs), f"{spec.name}: the doc says it reads {sorted(reads)}"
        assert writes == set(spec.outputs), f"{spec.name}: the doc says it writes {sorted(writes)}"


def test_every_step_module_runs_and_describes_its_result() -> None:
    """What `pipeline run` shows per step comes from the step's own module, not a branch per step."""
    import importlib

    from pipeline.steps import describe

    for spec in STEPS:
        module = importlib.import_module(spec.module)
        assert callable(module.run) and callable(module.describe), spec.module
    line = describe("evaluate", {"primary_metric": "f1", "test": {"f1": 0.5}, "baseline": {"f1": 0.25}})
    assert line == "test f1 0.5000 (baseline 0.2500)"
