"""Stage `ablation` (pipeline file ablation/dvc.yaml): conditions × seeds, then statistics across seeds."""

import shutil
import time
from pathlib import Path

from recomb.artifacts import Outputs
from recomb.config import pipeline_stages
from recomb.evaluation.ablation import Plan, plan, seed_rule, sharing
from recomb.evaluation.ablation_summary import summary
from recomb.parallel import map_processes, map_ray
from recomb.stats import UncertaintyConfig

from . import paths
from .ablation_runs import execute, folder_of, row
from .common import RuntimeConfig, log, run
from .params_check import validate_section


def build(planned: Plan, staging: Path, threads: int, pipeline: dict) -> tuple[list[dict], dict[str, float]]:
    """Every run under `staging`, each with its run.json; (summary rows, seconds per run)."""
    cfg = planned.config
    if cfg.backend == "ray":
        mapper = lambda fn, jobs: map_ray(fn, jobs, cfg.ray_address, "ablation")  # noqa: E731
    else:
        mapper = lambda fn, jobs: map_processes(fn, jobs, cfg.workers)  # noqa: E731
    seconds = execute(planned, staging, Path(paths.IMPORTED).parent, threads, mapper, pipeline)
    out = Outputs()
    for r in planned.runs:
        out.add_json(folder_of(staging, r) / "run.json", {  # the params this run's stages read
            "condition": r.condition, "seed": r.seed, "stages": list(r.stages),
            "params": {k: v for k, v in r.params.items() if k != "ablation"}})
    out.commit()
    return [row(r, folder_of(staging, r)) for r in planned.runs], seconds


def main(params: dict) -> None:
    pipeline = pipeline_stages(paths.PIPELINE)
    planned = sharing(plan(params, validate_section, paths.ABLATION_DIR), pipeline)  # every condition checked first
    tree, staging = Path(paths.ABLATION_DIR), Path(f"{paths.ABLATION_DIR}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    started = time.perf_counter()
    try:
        rows, seconds = build(planned, staging, RuntimeConfig.from_params(params, "runtime").torch_threads, pipeline)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    wall = time.perf_counter() - started
    cfg = planned.config
    out = summary(rows, UncertaintyConfig.from_params(params, "uncertainty"), cfg.pair, seed_rule(planned.source),
                  f"`{paths.ABLATION_DIR}/<condition>/seed_<s>/` (checkpoints, reports, run.json)",
                  paths.ABLATION_SUMMARY)
    out.add_text(paths.ABLATION_TIMING, "\n".join(
        ["# Ablation: wall seconds (this machine; not hashed)", "",
         f"Whole stage: {wall:.1f} s, {len(planned.runs)} runs ({cfg.backend}, {cfg.workers} workers). "
         "A run's seconds count the shared work it uses in full.", "",
         "| run | seconds |", "|---|---|"] + [f"| {name} | {s:.1f} |" for name, s in seconds.items()]) + "\n")
    shutil.rmtree(tree, ignore_errors=True)
    staging.rename(tree)
    out.commit()
    log.info("ablation: %d runs in %.1f s; %s", len(rows), wall, paths.ABLATION_SUMMARY["markdown"])


if __name__ == "__main__":
    run(main)
