"""Search figures: the `search` stage's wall time, a DVC-experiment grid, multi-generation scores.

    python benchmarks/search.py stage      # `default` preset, synthetic 8/4/64 parents, 1000 train states
    python benchmarks/search.py dvc-grid   # 9 children through `dvc exp run --queue` + `--run-all -j 2`
    python benchmarks/search.py multigen   # 3 generations of the minimal preset on the CartPole pipeline

Each runs in a throw-away copy of the project (tests/scratch.py), so data/ is untouched.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import Project  # noqa: E402

# The seeds' synthetic harness: random 8/4/64 parents; 1250 states, 80 % (1000) train.
SYNTHETIC_GRID = {"parents.source": "synthetic", "parents.synthetic.seed": 42, "parents.synthetic.n_states": 1250,
                  "crossover.parents": "parents", "validate_recombination.parents_role": "parents"}


def timed(p: Project, *cmd: str) -> float:
    start = time.perf_counter()
    p.run(*cmd)
    return time.perf_counter() - start


def stage(root: Path) -> None:
    p = Project(root / "stage")
    p.set(**SYNTHETIC_GRID, **{"search.preset": "default"})
    p.stage("parents")
    import_torch = [timed(p, sys.executable, "-c", "import torch") for _ in range(3)]
    walls = [timed(p, sys.executable, "-m", "stages.search") for _ in range(3)]
    board = json.loads((p.path / "data/search/leaderboard.json").read_text())
    best = board["rows"][0]
    print(f"search stage, default preset (14 children), synthetic 8/4/64, 1000 train states, 2 workers:")
    print(f"  whole command wall: median {statistics.median(walls):.2f} s  (runs: "
          + ", ".join(f"{w:.2f}" for w in walls) + ")")
    print(f"  `python -c 'import torch'` alone: median {statistics.median(import_torch):.2f} s")
    print(f"  best: {best['experiment']} primary {best['primary']:.4f} (A {best['agreement_a']:.4f} / "
          f"B {best['agreement_b']:.4f}), primary/U {best['primary_over_bound']:.4f}; "
          f"parents' agreement {board['baselines'][0]['primary']:.4f}")
    print((p.path / "data/reports/search/leaderboard.md").read_text())
    print("training and scoring the 14 children (the stage's own timer), by how they are spread:")
    for workers, patience, how in ((1, 100, "one child per job, one process"), (2, 100, "one child per job, 2 processes"),
                                   (1, 0, "stacks per regime, one process"), (2, 0, "stacks, 2 processes (default)")):
        # A plateau patience longer than any regime never fires but makes every child its own job.
        p.set(**{"search.workers": workers, "finetune.lr_schedule": "cosine" if patience == 0 else "constant",
                 "finetune.lr_schedule_patience": patience})
        log = p.stage("search").stderr
        print(f"  {how}: {re.search(r'trained and scored in ([0-9.]+) s', log).group(1)} s")


def dvc_grid(root: Path) -> None:
    p = Project(root / "grid", git=True)
    p.set(**SYNTHETIC_GRID, **{"distill.epochs": 5, "qat.epochs": 1, "multigen.generations": 1})
    p.run("dvc", "repro")
    p.commit("baseline")
    direct = []
    for _ in range(2):  # what one child costs without DVC: its three stages run directly
        start = time.perf_counter()
        for name in ("crossover", "finetune", "validate_recombination"):
            p.stage(name)
        direct.append(time.perf_counter() - start)
    p.run("git", "checkout", "--", ".")
    p.run("dvc", "exp", "run", "--queue", "-S", "crossover.mode=random,layer,weighted",
          "-S", "finetune.regime=short,medium,long")
    wall = timed(p, "dvc", "exp", "run", "--run-all", "-j", "2")
    shown = json.loads(p.run("dvc", "exp", "show", "--json").stdout)
    n_done = sum(len(e["revs"]) for c in shown for e in (c.get("experiments") or []))
    per_child = statistics.median(direct)
    print(f"DVC grid: 9 experiments queued, `dvc exp run --run-all -j 2`: {wall:.1f} s wall ({n_done} in exp show)")
    print(f"  one child's stages run directly: {per_child:.2f} s; 9 of them on 2 workers ideally "
          f"{9 * per_child / 2:.1f} s; overhead per experiment ≈ {(wall - 9 * per_child / 2) * 2 / 9:.1f} s")
    in_process = timed(p, sys.executable, "-m", "stages.search")  # the same 9 children: the minimal preset
    print(f"  the same 9 children in the `search` stage (minimal preset): {in_process:.1f} s for the whole command")
    print(p.run(str(Path(sys.executable).parent / "recomb"), "leaderboard").stdout)
    print((p.path / "data/reports/leaderboard/recommendation.txt").read_text())


def multigen(root: Path) -> None:
    p = Project(root / "multigen")
    p.run("dvc", "repro", "validate_recombination")
    for stage in ("search", "multigen"):
        print(f"`dvc repro {stage}` on the default CartPole pipeline: {timed(p, 'dvc', 'repro', stage):.1f} s")
    print((p.path / "data/reports/multigen/summary.md").read_text())


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "stage"
    with tempfile.TemporaryDirectory() as tmp:
        {"stage": stage, "dvc-grid": dvc_grid, "multigen": multigen}[which](Path(tmp))
