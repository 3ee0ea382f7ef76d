"""Benchmark of the connectivity issue's targets over parent pairs: every method's barriers on each pair's students;
prints, asserts nothing.

    python benchmarks/connectivity_seeds.py data/ablation/distill_only/seed_{4,0,2,8,6}
    python benchmarks/connectivity_seeds.py DIR/data/ablation/default/seed_4      # a task_seeds.py run (--keep DIR)

Each folder holds a run's `parents/`, `students/` and `states/` (an ablation run's, or a project's `data/`). The
`connectivity` stage's library call runs on each with params.yaml's `connectivity`, `crossover.align_max_passes`
and `uncertainty` sections, the students crossed. Printed: per pair, each method's loss and return barrier, its
reduction against plain averaging and its raw child at the α nearest 0.5; across pairs, each method's mean
reduction with a bootstrap interval over pairs, and on how many pairs each method's raw child reaches the task's
return bar.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recomb.artifacts import load_checkpoint, load_states  # noqa: E402
from recomb.config import load_params  # noqa: E402
from recomb.recombination.connectivity import METHODS, ConnectivityConfig, connectivity  # noqa: E402
from recomb.recombination.crossover import CrossoverConfig  # noqa: E402
from recomb.stats import UncertaintyConfig, mean_interval  # noqa: E402
from recomb.training.tasks import of_parents  # noqa: E402


def run(folder: Path, cfg: ConnectivityConfig, passes: int, unc: UncertaintyConfig) -> tuple[dict, float | None]:
    a, b = (load_checkpoint(folder / f"students/student_{side}.safetensors") for side in "AB")
    parent = load_checkpoint(folder / "parents/parent_A.safetensors")
    train = torch.from_numpy(load_states(folder / "states/train.npy", a.arch.input_dim))
    heldout = load_states(folder / "states/heldout.npy", a.arch.input_dim)
    task = of_parents(parent.meta)
    return connectivity(a.model, b.model, train, heldout, task, cfg, passes, unc), task


def cell(figure: dict | None, digits: int) -> str:
    return "–" if figure is None else f"{figure['value']:.{digits}f} [{figure['low']:.{digits}f}, {figure['high']:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    cfg = ConnectivityConfig.from_params(params, "connectivity")
    passes = CrossoverConfig.from_params(params, "crossover").align_max_passes
    unc = UncertaintyConfig.from_params(params, "uncertainty")
    reductions: dict[tuple[str, str], list[float]] = {}
    reached: dict[str, int] = {m: 0 for m in METHODS}
    bar = None
    for folder in args.folders:
        started = time.perf_counter()
        summary, task = run(folder, cfg, passes, unc)
        middle = min(range(len(cfg.alphas)), key=lambda i: abs(cfg.alphas[i] - 0.5))
        print(f"\n## {folder} ({time.perf_counter() - started:.1f} s)\n")
        print("| method | loss barrier | loss reduction | return barrier | return reduction | raw primary / U | raw return |")
        print("|---|---|---|---|---|---|---|")
        for method in METHODS:
            entry = summary["methods"][method]
            mid = entry["path"][middle]
            ret = entry["return"] or {}
            print(f"| {method} | {cell(entry['loss']['barrier'], 4)} | {cell(entry['loss'].get('reduction'), 3)} | "
                  f"{cell(ret.get('barrier'), 1)} | {cell(ret.get('reduction'), 3)} | {mid['primary_over_bound']:.4f} | "
                  f"{mid.get('return', float('nan')):.1f} |")
            for kind in ("loss", "return"):
                found = (entry[kind] or {}).get("reduction")
                if found is not None:
                    reductions.setdefault((method, kind), []).append(found["value"])
            if task is not None and mid.get("return") is not None:
                bar = params["parents"]["presets"][task.env_id]["pass_return"]
                reached[method] += mid["return"] >= bar
    print(f"\n## Across {len(args.folders)} pairs: mean reduction against plain averaging [interval over pairs]\n")
    print("| method | loss reduction | return reduction | raw child at α ≈ 0.5 reaches the bar |")
    print("|---|---|---|---|")
    for method in METHODS:
        figures = []
        for kind in ("loss", "return"):
            values = reductions.get((method, kind), [])
            if len(values) < len(args.folders) or method == "plain":
                figures.append(f"– ({len(values)} of {len(args.folders)} pairs defined)" if method != "plain" else "–")
                continue
            found = mean_interval(np.asarray(values), unc)
            figures.append(f"{found['mean']:.3f} [{found['low']:.3f}, {found['high']:.3f}]")
        print(f"| {method} | {figures[0]} | {figures[1]} | {reached[method]} of {len(args.folders)}"
              f"{f' (bar {bar:g})' if bar is not None else ''} |")


if __name__ == "__main__":
    main()
