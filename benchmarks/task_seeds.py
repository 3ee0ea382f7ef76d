"""Benchmark of the tasks issue's seed-pair targets: the ablation on a task, one run per parent pair; prints, asserts nothing.

    python benchmarks/task_seeds.py LunarLander-v3 --seeds 4 0 2 --keep /tmp/seeds/LunarLander-v3
    python benchmarks/task_seeds.py Acrobot-v1 --seeds 4 0 2 --workers 1
    python benchmarks/task_seeds.py Acrobot-v1 --keep DIR --report-only   # print the table of a finished run again

A scratch copy of the project (its own DVC repo) with `parents.env` set and nothing else changed, so the task's
own row of `tasks` and its DQN preset apply, runs `dvc repro ablation/dvc.yaml` with two conditions: `default`
(the pipeline as shipped: every stage, no override) and the reference's `full_pipeline`. Seed s is the parent
pair s, s + 1. It prints, per pair, the networks' greedy returns (100 fixed-seed episodes: the validations'),
the default child's primary / U with its interval, and the ablation's summary across pairs (mean and interval).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import ROOT, Project  # noqa: E402

RUN_STAGES = ["distill", "quantize", "crossover", "compare"]


def prepare(env_id: str, folder: Path, seeds: list[int], workers: int) -> Project:
    p = Project(folder)
    (p.path / "ablation").mkdir()
    shutil.copy(ROOT / "ablation/dvc.yaml", p.path / "ablation/dvc.yaml")
    reference = p.params()["ablation"]["conditions"]["full_pipeline"]
    p.set(**{"parents.env": env_id, "ablation.seeds": seeds, "ablation.workers": workers,
             "ablation.conditions": {"default": {"stages": RUN_STAGES, "overrides": {}},
                                     "full_pipeline": reference},
             "ablation.improvement": {"condition": "default", "over": "full_pipeline"}})
    return p


def interval(found: dict, digits: int) -> str:
    return f"{found['mean']:.{digits}f} [{found['low']:.{digits}f}, {found['high']:.{digits}f}]"


def report(p: Project, env_id: str) -> None:
    runs = p.path / "data/ablation/default"
    print(f"## {env_id}: the default pipeline per parent pair (greedy return over 100 episodes, 95 % intervals)")
    print("| pair | parent A / B | student A / B | int8 PTQ A / B | int8 QAT A / B | child | child primary / U |")
    print("|---|---|---|---|---|---|---|")
    for seed_dir in sorted(runs.iterdir(), key=lambda d: int(d.name.split("_")[1])):
        seed = int(seed_dir.name.split("_")[1])
        recomb = json.loads((seed_dir / "reports/recombination.json").read_text())
        quant = json.loads((seed_dir / "reports/quantized.json").read_text())
        ret = recomb["greedy_return_interval"]
        q = {k: v["greedy_return"]["int8"] for k, v in quant["students"].items()}
        child = recomb["children"]["child"]
        print(f"| {seed}/{seed + 1} | {ret['parent_A']['mean']:.1f} / {ret['parent_B']['mean']:.1f} "
              f"| {ret['student_A']['mean']:.1f} / {ret['student_B']['mean']:.1f} "
              f"| {q['ptq_A']:.1f} / {q['ptq_B']:.1f} | {q.get('qat_A', float('nan')):.1f} / "
              f"{q.get('qat_B', float('nan')):.1f} | {interval(ret['child'], 1)} "
              f"| {child['primary_over_bound']:.4f} [{child['primary_over_bound_ci']['low']:.4f}, "
              f"{child['primary_over_bound_ci']['high']:.4f}] |")
    print()
    print((p.path / "data/reports/ablation/ablation_summary.md").read_text())


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("envs", nargs="+")
    cli.add_argument("--seeds", type=int, nargs="+", default=[4, 0, 2])
    cli.add_argument("--workers", type=int, default=2)
    cli.add_argument("--keep", type=Path, help="build the scratch projects here (kept)")
    cli.add_argument("--report-only", action="store_true", help="print the tables of a kept, finished run")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        for env_id in args.envs:
            folder = root / env_id if len(args.envs) > 1 or not args.keep else root
            if args.report_only:
                report(Project.at(folder), env_id)
                continue
            p = prepare(env_id, folder, args.seeds, args.workers)
            start = time.perf_counter()
            p.run("dvc", "repro", "inputs")
            proc = p.run("dvc", "repro", "ablation/dvc.yaml", check=False)
            print(f"{env_id}: ablation over pairs {args.seeds} in {time.perf_counter() - start:.0f} s", flush=True)
            if proc.returncode != 0:
                print(f"stopped: {proc.stderr.strip().splitlines()[-1]}")
                continue
            report(p, env_id)


if __name__ == "__main__":
    main()
