"""Benchmark of the foundation issue's targets; prints the figures, asserts nothing.

    python benchmarks/foundation.py            # both parts
    python benchmarks/foundation.py synthetic  # seeds' harness: fidelity + distillation time
    python benchmarks/foundation.py cartpole   # default pipeline: cold and no-op `dvc repro`, returns

Each part runs in a scratch copy of the project (its own DVC repo), so it neither
needs nor touches `data/`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import Project  # noqa: E402

SYNTHETIC = {
    "parents.source": "synthetic",
    "parents.synthetic.seed": 42,
    "parents.synthetic.n_states": 5000,
    "distill.epochs": 25,
    "distill.batch_size": 64,
}


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def report(p: Project) -> dict:
    return json.loads((p.path / "data/reports/distillation.json").read_text())


def synthetic(workdir: Path) -> None:
    p = Project(workdir / "synthetic")
    p.set(**SYNTHETIC)
    p.stage("parents")
    seconds, proc = timed(p.stage, "distill")
    p.stage("validate_distillation")
    quality = report(p)
    print("## Synthetic 8/4/64, 5000 states (4000 train / 1000 held-out), 25 epochs, batch 64")
    print(f"distill stage, whole process: {seconds:.2f} s; {proc.stderr.strip().splitlines()[-1]}")
    print("| pair | held-out agreement | prob similarity | centred cosine | advantage relative MSE |")
    print("|---|---|---|---|---|")
    for pair, r in quality["pairs"].items():
        f = r["fidelity"]
        print(f"| {pair} | {f['action_agreement']:.4f} | {f['prob_similarity']:.4f} | {f['centered_cosine']:.4f} | {f['advantage_relative_mse']:.4f} |")


def cartpole(workdir: Path) -> None:
    p = Project(workdir / "cartpole")
    cold, _ = timed(p.run, "dvc", "repro")
    noop, _ = timed(p.run, "dvc", "repro")
    quality = report(p)
    parents = [json.loads((p.path / f"data/parents/parent_{x}.json").read_text()) for x in "AB"]
    p.stage("timing")  # `recomb timing`: this machine's latencies
    timing = json.loads((p.path / "data/reports/latest/timing.json").read_text())
    print("## CartPole-v1, default params")
    print(f"cold `dvc repro`: {cold:.1f} s; no-op `dvc repro`: {noop:.2f} s")
    print("| pair | parent greedy return (training eval) | parent return (validation episodes) "
          "| student return | held-out agreement | latency ratio |")
    print("|---|---|---|---|---|---|")
    for pair, parent in zip("AB", parents):
        r = quality["pairs"][pair]
        ratio = timing["distillation"][pair]["checks"]["latency_ratio"]["value"]
        print(f"| {pair} | {parent['metrics']['greedy_return']:.1f} | {r['greedy_return']['teacher']:.1f} "
              f"| {r['greedy_return']['student']:.1f} | {r['fidelity']['action_agreement']:.4f} | {ratio:.2f} |")
    print(f"validation passed: {quality['passed']} (quality), {timing['passed']} (latency)")


def main() -> None:
    parts = sys.argv[1:] or ["synthetic", "cartpole"]
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts:
            {"synthetic": synthetic, "cartpole": cartpole}[part](Path(tmp))
            print()


if __name__ == "__main__":
    main()
