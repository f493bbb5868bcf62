"""GPU: a CUDA device is visible when the settings ask for one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipeline.doctor.report import OK, PROBLEM, Report

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def check_gpu(settings: Settings, report: Report) -> None:
    wanted = settings.require_gpu or settings.train.device == "cuda"
    if not wanted:
        report.add("gpu", OK, f"not required (train.device={settings.train.device})")
        return
    why = "PIPELINE_REQUIRE_GPU=true" if settings.require_gpu else "train.device=cuda"
    try:
        import torch
    except ImportError as exc:
        report.add("gpu", PROBLEM, f"{why}, but torch cannot be imported: {exc}")
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        built = torch.version.cuda or "none (a CPU build of torch)"
        report.add(
            "gpu",
            PROBLEM,
            f"{why}, but no CUDA device is visible (torch {torch.__version__}, CUDA {built}): run on a GPU "
            "node with the CUDA image, or set train.device=cpu",
        )
        return
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    report.add("gpu", OK, f"{torch.cuda.device_count()} CUDA device(s): {names}")
