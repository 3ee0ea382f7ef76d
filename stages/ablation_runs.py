"""The ablation's runs, made by this pipeline's own stage functions: what the ablation measures is what
`dvc repro` builds.

A job runs stage `main`s with a run's effective params in the run's folder, where a `data` link points
back at the folder (so `data/students/…` lands in `<run>/students/…`) and `data/inputs` at the pipeline's
imported inputs. Shared work (parents, students, int8 students: `Plan.shared`) runs once, in the first
run's folder, and is copied to the others before the next kind starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from recomb.artifacts import read_json
from recomb.evaluation.ablation import DVC_STAGES, SHARED_BY, Plan, Run, pipeline_stages_of
from recomb.evaluation.ablation_summary import run_row

from . import (crossover, distill, finetune, parents, paths, ptq, qat, validate_distillation, validate_quantized,
               validate_recombination)

MAINS = {module.__name__.rsplit(".", 1)[1]: module.main for module in (  # a dvc.yaml stage name → its entry point
    parents, distill, validate_distillation, ptq, qat, validate_quantized, crossover, finetune, validate_recombination)}
STEPS = {"parents": ("parents",), **DVC_STAGES}  # the ablation's steps, as the pipeline stages they run
OWN_STEPS = ("crossover", "compare")  # never shared: each run crosses its own pair
Mapper = Callable[[Callable, list], list]


def made(pipeline: dict, what: str) -> tuple[str, ...]:
    """What a kind of shared work leaves in a run's folder (its stages' outs and metrics in dvc.yaml), copied to
    the runs that share it."""
    return tuple(next(iter(entry)) if isinstance(entry, dict) else entry for stage in pipeline_stages_of(what)
                 for key in ("outs", "metrics", "plots") for entry in pipeline[stage].get(key, []))


@dataclass(frozen=True)
class Job:
    folder: str      # absolute: the run's folder
    steps: tuple[str, ...]
    params: dict     # the run's effective params
    inputs: str      # absolute: the pipeline's data/inputs
    threads: int


class _RunLabel(logging.Filter):
    """Prefixes the stages' log lines (a failed gate, say) with the run they belong to."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"{self.label}: {record.msg}"
        return True


def run_job(job: Job) -> float:
    """Run the job's stage functions in its folder; returns their wall seconds."""
    torch.set_num_threads(job.threads)
    folder, here = Path(job.folder), os.getcwd()
    label = _RunLabel("/".join(folder.parts[-2:]) + f" ({', '.join(job.steps)})")
    logging.getLogger("recomb").addFilter(label)
    folder.mkdir(parents=True, exist_ok=True)
    links = (folder / "data", folder / "inputs")
    links[0].symlink_to(".")
    links[1].symlink_to(job.inputs)
    started = time.perf_counter()
    try:
        os.chdir(folder)
        for step in job.steps:
            for stage in STEPS[step]:
                MAINS[stage](job.params)
    finally:
        os.chdir(here)
        for link in links:
            link.unlink()
        logging.getLogger("recomb").removeFilter(label)
    return time.perf_counter() - started


def folder_of(root: Path, run: Run) -> Path:
    return root / run.condition / f"seed_{run.seed}"


def _copy(paths_made: tuple[str, ...], source: Path, target: Path) -> None:
    for path in paths_made:
        relative = Path(path).relative_to("data")
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        if (source / relative).is_dir():
            shutil.copytree(source / relative, target / relative)
        else:
            shutil.copy2(source / relative, target / relative)


def execute(planned: Plan, root: Path, inputs: Path, threads: int, mapper: Mapper, pipeline: dict) -> dict[str, float]:
    """Every run of the plan under `root`; returns the wall seconds each run's work took (shared work counted
    in full for every run that uses it: what the run would cost alone)."""
    seconds = {id(run): 0.0 for run in planned.runs}

    def job(run: Run, steps: tuple[str, ...]) -> Job:
        return Job(str(folder_of(root, run).resolve()), steps, run.params, str(inputs.resolve()), threads)

    for what in SHARED_BY:
        groups = [g for g in planned.shared if g.what == what]
        took = mapper(run_job, [job(g.runs[0], (g.stage or "parents",)) for g in groups])
        for group, spent in zip(groups, took):
            for run in group.runs:
                seconds[id(run)] += spent
                if run is not group.runs[0]:
                    _copy(made(pipeline, what), folder_of(root, group.runs[0]), folder_of(root, run))
    own = [run for run in planned.runs if any(step in run.stages for step in OWN_STEPS)]
    took = mapper(run_job, [job(run, tuple(s for s in run.stages if s in OWN_STEPS)) for run in own])
    for run, spent in zip(own, took):
        seconds[id(run)] += spent
    return {f"{run.condition}/seed_{run.seed}": seconds[id(run)] for run in planned.runs}


def row(run: Run, folder: Path) -> dict:
    """The run's summary row, from the reports its stages wrote in its folder."""
    def report(path: str, stage: str) -> dict | None:
        return read_json(folder / Path(path).relative_to("data"), "report") if stage in run.stages else None
    int8 = "qat" if run.params["crossover"]["parents"] == "qat" else "ptq"
    return run_row(run.condition, run.seed, run.stages, int8, run.params["validate_recombination"]["parents_role"],
                   report(paths.DISTILL_REPORT, "distill"), report(paths.QUANT_REPORT, "quantize"),
                   report(paths.RECOMB_REPORT, "compare"))
