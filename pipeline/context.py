"""What a step receives: the settings, the run id, the artifact store and its upstream manifests."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError, UpstreamMissingError
from pipeline.settings import Settings
from pipeline.storage import ArtifactStore, Manifest

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.steps import StepSpec

logger = logging.getLogger(__name__)

# Airflow run ids look like ``scheduled__2026-11-30T03:00:00+00:00``: allow ':' and '+', refuse
# anything that could leave the run prefix ('/', '\\', '..').
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,199}$")


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id) or ".." in run_id:
        raise BadInputError(
            f"run id {run_id!r} is not allowed: use letters, digits and '_.:+-' (starting with a letter "
            "or digit, no '/', no '..', at most 200 characters)"
        )
    return run_id


@dataclass
class StepResult:
    """What a step function returns to the runner, which publishes it.

    ``outputs`` maps output names to paths relative to the staging folder; ``summary`` holds small
    JSON-serialisable figures (never data).
    """

    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    status: str = "succeeded"
    error: BaseException | None = None
    on_published: Callable[[], None] | None = None  # e.g. remove checkpoints once outputs are safe


class StepContractError(RuntimeError):
    """A step read or published something its :class:`~pipeline.steps.StepSpec` does not declare
    (a bug in the step, never in the data: declare it in ``pipeline/steps/__init__.py``)."""


@dataclass
class StepContext:
    """What a step runs with. ``spec`` is the step's declared contract: reads of anything it
    does not list as an input raise :class:`StepContractError` (None: no contract, for tools)."""

    settings: Settings
    run_id: str
    step: str
    store: ArtifactStore
    workdir: Path
    spec: StepSpec | None = None
    _upstream: dict[str, Manifest] = field(default_factory=dict)

    def _check_declared(self, step: str, output: str | None = None) -> None:
        if self.spec is not None and not self.spec.reads(step, output):
            what = f"output {output!r} of step {step!r}" if output else f"the manifest of step {step!r}"
            raise StepContractError(
                f"step {self.step!r} read {what}, which its StepSpec does not declare "
                f"(inputs: {', '.join(self.spec.inputs) or 'none'})"
            )

    def upstream(self, step: str, require_success: bool = True) -> Manifest:
        """The manifest a previous step of this run published (cached)."""
        self._check_declared(step)
        if step not in self._upstream:
            manifest = self.store.read_manifest(self.run_id, step)
            if manifest is None:
                raise UpstreamMissingError(
                    f"step {self.step!r} needs the outputs of step {step!r} for run {self.run_id!r}, "
                    "but none were published under "
                    f"{self.store.to_uri(self.store.step_path(self.run_id, step))}"
                    f"; run `pipeline step {step} --run-id {self.run_id}` first"
                )
            self._upstream[step] = manifest
        manifest = self._upstream[step]
        if require_success and not manifest.succeeded:
            raise BadInputError(
                f"step {step!r} of run {self.run_id!r} ended with status {manifest.status!r}: "
                f"{manifest.summary.get('error', 'see its outputs')}"
            )
        return manifest

    def input_path(self, step: str, output: str) -> Path:
        """A local path for an output of an upstream step (downloaded when the store is remote)."""
        self._check_declared(step, output)
        uri = self.upstream(step).uri(output)
        return self.store.local_copy(uri, self.workdir / "in" / step)

    @property
    def staging(self) -> Path:
        """Where the step writes the files it publishes."""
        path = self.workdir / "out"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def scratch(self) -> Path:
        """A private scratch folder (not published, removed after the step)."""
        path = self.workdir / "scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path
