"""Benchmark of the recombination issue's targets; prints the figures, asserts nothing.

    python benchmarks/recombination.py            # both parts
    python benchmarks/recombination.py synthetic  # seeds' harness: primary/U per teacher mode and operator
    python benchmarks/recombination.py cartpole   # cold `dvc repro` and child returns for several parent seed pairs

Each harness runs in a scratch copy of the project (its own DVC repo), so it
neither needs nor touches `data/`. Variants rerun only crossover, finetune and
validate_recombination in the same copy.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import Project  # noqa: E402

from foundation import SYNTHETIC  # noqa: E402  (the seeds' harness, as the foundation benchmark runs it)

OPERATORS = ("aligned", "weighted", "random", "layer", "slerp")
CARTPOLE_SEEDS = (4, 0, 2, 8)  # parents.dqn.seed: parent A uses it, parent B seed + 1; 4 is the default


def rerun_child(p: Project, **settings) -> dict:
    p.set(**settings)
    for stage in ("crossover", "finetune", "validate_recombination"):
        p.stage(stage)
    return json.loads((p.path / "data/reports/recombination.json").read_text())


def child_row(label: str, report: dict) -> str:
    raw, child = report["children"]["child_raw"], report["children"]["child"]
    returns = report["greedy_return"]
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    return (f"| {label} | {raw['primary_over_bound']:.3f} | {fmt(returns['child_raw'])} | "
            f"{child['vs_a']['action_agreement']:.3f} | {child['vs_b']['action_agreement']:.3f} | "
            f"{child['primary']:.3f} | {child['primary_over_bound']:.3f} | {fmt(returns['child'])} |")


HEADER = ("| variant | raw child primary/U | raw child return | agreement A | agreement B | primary | "
          "primary/U (≥ 0.97 synthetic) | child return (≥ 490 CartPole) |\n|---|---|---|---|---|---|---|---|")


def synthetic(workdir: Path) -> None:
    p = Project(workdir / "synthetic")
    p.set(**SYNTHETIC)
    p.run("dvc", "repro", "validate_recombination")
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    print("## Synthetic 8/4/64, parents seeded 42/43, 5000 states (1000 held out)")
    print(f"parents agree on {report['parents_agreement']:.4f} of held-out states, U = {report['bound']:.4f}\n")
    print(HEADER)
    print(child_row("default recipe (aligned, balanced)", report))
    for mode in ("a", "dual"):
        print(child_row(f"teacher_mode {mode}", rerun_child(p, **{"finetune.teacher_mode": mode})))
    p.set(**{"finetune.teacher_mode": "balanced"})
    for mode in OPERATORS[1:]:
        print(child_row(f"crossover {mode}", rerun_child(p, **{"crossover.mode": mode})))
    print()


def cartpole(workdir: Path) -> None:
    print("## CartPole-v1, default params, per parent seed pair")
    for seed in CARTPOLE_SEEDS:
        p = Project(workdir / f"cartpole{seed}")
        p.set(**{"parents.dqn.seed": seed})
        start = time.perf_counter()
        p.run("dvc", "repro")
        cold = time.perf_counter() - start
        report = json.loads((p.path / "data/reports/recombination.json").read_text())
        returns = report["greedy_return"]
        print(f"\n### parents.dqn.seed {seed} (parents {seed}/{seed + 1})")
        print(f"cold `dvc repro` of the whole pipeline: {cold:.1f} s (≤ 60 s); parents agree "
              f"{report['parents_agreement']:.4f}, U = {report['bound']:.4f}; returns: "
              + ", ".join(f"{k} {v:.1f}" for k, v in returns.items() if not k.startswith("child")))
        print(HEADER)
        print(child_row("default (aligned)", report))
        for mode in OPERATORS[1:]:
            print(child_row(f"crossover {mode}", rerun_child(p, **{"crossover.mode": mode})))


def main(parts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts or ["synthetic", "cartpole"]:
            {"synthetic": synthetic, "cartpole": cartpole}[part](Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
