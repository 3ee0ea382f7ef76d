"""Benchmark of the specialists issue: specialist parents, the default and the competence-aware child, the skills
map; prints, asserts nothing.

    python benchmarks/specialists.py --seeds 4 0 2 8 6 --keep /tmp/specialists
    python benchmarks/specialists.py --seeds 4 --a '{}' --b '{}' --rollouts own \
        --also '[{gravity: 4.0}, {pole_length: 2.0}]'        # nominal parents, a buffer that covers two shifts

Per seed pair s (parents s, s + 1), in a scratch copy of the project (the stages called in process, as
`python -m stages.<name>` calls them): parents trained in the variants `--a` and `--b` (CartPole's default:
force_magnitude ×0.25 and pole_length ×3, where the default parent A returns 46 and 62), their buffer
(`--rollouts`, `--also`), students, int8 students, the raw child, then for each teacher mode (balanced, the
default; competent) the fine-tuned child and `generalize`'s skills map; the compute-matched DQN (`baseline`) when
`--baseline`. Table: every network's return in nominal and in each parent's variant, union coverage and lowest
retention, per pair and mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import Project  # noqa: E402

MODES = ("balanced", "competent")


def run_pair(seed: int, folder: Path, overrides: dict, baseline: bool) -> dict:
    """Every stage up to the skills map for one pair, once per teacher mode; returns the skills maps."""
    import torch

    torch.set_num_threads(1)
    p = Project(folder)
    p.set(**{"parents.dqn.seed": seed, "parents.dqn.workers": 1, "generalize.workers": 1, **overrides})
    os.chdir(p.path)
    sys.path.insert(0, str(p.path))
    from stages import common, crossover, distill, finetune, generalize, parents, ptq  # noqa: PLC0415

    before = [parents, distill, ptq, crossover]
    if baseline:
        from stages import baseline as baseline_stage  # noqa: PLC0415
        before.append(baseline_stage)
    found, started = {}, time.time()
    for stage in before:
        stage.main(common.with_task_values(common.load_params("params.yaml")))
    for mode in MODES:
        p.set(**{"finetune.teacher_mode": mode})
        params = common.with_task_values(common.load_params("params.yaml"))
        finetune.main(params)
        generalize.main(params)
        summary = json.loads((p.path / "data/reports/generalization/generalization_summary.json").read_text())
        child = json.loads((p.path / "data/children/finetuned/child.json").read_text())
        found[mode] = {"skills": summary["skills"], "returns": summary["returns"], "balance": child["balance"]}
    found["conditions"] = json.loads((p.path / "data/states/conditions.json").read_text())["conditions"]
    found["seconds"] = time.time() - started
    return found


def variant_label(found: dict) -> list[str]:
    return [c["name"] for c in found["conditions"]]


def print_tables(results: dict[int, dict]) -> None:
    first = next(iter(results.values()))
    print("| pair | teacher mode | network | " + " | ".join(
        ["nominal", *(f"{c['name']}" for c in first["conditions"] if c["setting"])]) + " | union coverage | lowest retention |")
    print("|---|---|---|" + "---|" * (1 + sum(1 for c in first["conditions"] if c["setting"])) + "---|---|")
    for seed, found in results.items():
        for mode in MODES:
            skills = found[mode]["skills"]
            for network in ("parent_A", "parent_B", "child", "dqn_baseline"):
                if network not in skills["networks"] or (mode != MODES[0] and network != "child"):
                    continue
                cells = [found[mode]["returns"][network]["nominal"]]
                for c in found["conditions"]:
                    if c["setting"]:
                        (key, level), = c["setting"].items() if len(c["setting"]) == 1 else [(None, None)]
                        cells.append(found[mode]["returns"][network].get(key, {}).get(f"{level:g}".replace(".", "p"),
                                                                                      float("nan")))
                s = skills["networks"][network]
                print(f"| {seed}/{seed + 1} | {mode} | {network} | " + " | ".join(f"{v:.1f}" for v in cells)
                      + f" | {s.get('union_coverage', float('nan')):.2f} | {s.get('min_retention', float('nan')):.3f} |")
    for mode in MODES:
        covered = [found[mode]["skills"]["networks"]["child"].get("union_coverage") for found in results.values()]
        print(f"{mode}: child union coverage per pair {covered}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 0, 2, 8, 6])
    parser.add_argument("--a", default="{force_magnitude: 0.25}", help="parent A's variant (YAML)")
    parser.add_argument("--b", default="{pole_length: 3.0}", help="parent B's variant (YAML)")
    parser.add_argument("--rollouts", default="crossed", choices=["own", "crossed"])
    parser.add_argument("--also", default="[]", help="further buffer variants (YAML list)")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides, key=YAML value")
    parser.add_argument("--baseline", action="store_true", help="also train the compute-matched DQN")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, required=True, help="folder for the scratch projects and results")
    args = parser.parse_args()
    overrides = {"parents.dqn.variants.a": yaml.safe_load(args.a), "parents.dqn.variants.b": yaml.safe_load(args.b),
                 "parents.dqn.variants.rollouts": args.rollouts, "parents.dqn.variants.also": yaml.safe_load(args.also),
                 **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}}
    args.keep.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {s: pool.submit(run_pair, s, args.keep / f"pair_{s}", overrides, args.baseline) for s in args.seeds}
        results = {s: f.result() for s, f in futures.items()}
    (args.keep / "results.json").write_text(json.dumps(results, indent=1))
    print(f"overrides: {overrides}; {time.time() - started:.0f} s")
    print_tables(results)


if __name__ == "__main__":
    main()
