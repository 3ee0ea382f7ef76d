"""Benchmark of the tasks issue's targets at full budget; prints the figures, asserts nothing.

    python benchmarks/tasks.py LunarLander-v3     # or Acrobot-v1, CartPole-v1; several ids run one after another
    python benchmarks/tasks.py Acrobot-v1 --keep DIR   # keep the scratch project in DIR
    python benchmarks/tasks.py LunarLander-v3 --set parents.dqn.buffer.n_states=50000   # other params too

Each task runs in a scratch copy of the project (its own DVC repo, the shipped params with
`parents.env` set, nothing else changed): the core stages one by one, each timed as a whole
process (`python -m stages.<name>`), then the returns and primary / U from the reports
(100 fixed-seed episodes: validate_recombination's `eval_episodes`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import ROOT, Project  # noqa: E402

CORE = ("inputs", "parents", "distill", "validate_distillation", "ptq", "qat", "validate_quantized", "crossover",
        "finetune", "validate_recombination")


def run_task(env_id: str, folder: Path, changes: dict) -> None:
    p = Project(folder)
    shutil.copy(ROOT / "params.yaml", p.path / "params.yaml")
    p.set(**{"parents.env": env_id, **changes})
    print(f"## {env_id}" + "".join(f", {k}={v}" for k, v in changes.items()))
    print("| stage | seconds |")
    print("|---|---|")
    for stage in CORE:
        start = time.perf_counter()
        proc = p.stage(stage, check=False)
        print(f"| {stage} | {time.perf_counter() - start:.1f} |", flush=True)
        if proc.returncode != 0:
            print(f"stopped: {proc.stderr.strip().splitlines()[-1]}")
            return
    parents = [json.loads((p.path / f"data/parents/parent_{x}.json").read_text()) for x in "AB"]
    print("parents:", ", ".join(f"seed {m['metrics']['seed']}: best training-eval return {m['metrics']['greedy_return']:.1f} "
                                f"at step {m['metrics']['best_step']}" for m in parents))
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    print("| network | greedy return (100 episodes) | 95 % interval |")
    print("|---|---|---|")
    for name, r in report["greedy_return_interval"].items():
        print(f"| {name} | {r['mean']:.1f} | [{r['low']:.1f}, {r['high']:.1f}] |")
    child = report["children"]["child"]
    print(f"child primary / U {child['primary_over_bound']:.4f} [{child['primary_over_bound_ci']['low']:.4f}, "
          f"{child['primary_over_bound_ci']['high']:.4f}]; gates passed: {report['passed']}")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("envs", nargs="+")
    cli.add_argument("--keep", type=Path, help="build the scratch projects here (kept)")
    cli.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="another params.yaml value (a YAML scalar), as `dvc exp run -S`")
    args = cli.parse_args()
    changes = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        for env_id in args.envs:
            run_task(env_id, root / env_id, changes)


if __name__ == "__main__":
    main()
