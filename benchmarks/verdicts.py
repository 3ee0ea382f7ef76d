"""Figures behind the pipeline's verdicts: the search winner, generations, imported parents, static int8 children.

    python benchmarks/verdicts.py search   # default CartPole pipeline: the search's recommendation, multigen, recomb check
    python benchmarks/verdicts.py files    # AgentFarm-layout 8/4/64 parents + N(0,1) states through parents.source: files
    python benchmarks/verdicts.py static   # what a ptq_static fine-tune loses at conversion (CartPole)

Each runs in a throw-away copy of the project (tests/scratch.py), so data/ is untouched; prints, asserts nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import BIN, Project  # noqa: E402

from recomb.artifacts import load_checkpoint, load_states  # noqa: E402
from recomb.networks import Architecture, seeded_qnetwork  # noqa: E402
from recomb.reports import figure, return_figure  # noqa: E402


def read(p: Project, path: str) -> dict:
    return json.loads((p.path / path).read_text())


def search(root: Path) -> None:
    p = Project(root / "cartpole")
    p.run("dvc", "repro")
    print("## Default CartPole pipeline (parents 4/5)\n")
    print((p.path / "data/reports/search/recommendation.txt").read_text())
    print((p.path / "data/reports/search/leaderboard.md").read_text())
    print((p.path / "data/reports/multigen/summary.md").read_text())
    child = read(p, "data/reports/recombination.json")
    print("pipeline child: primary/U", figure(child["children"]["child"], "primary_over_bound"), "return",
          return_figure(child["greedy_return_interval"]["child"]))
    check = p.run(str(BIN / "recomb"), "check", check=False)
    print(f"\n`recomb check` exit {check.returncode}:\n{check.stdout}{check.stderr}")
    for preset in ("minimal", "default"):  # the reference's presets, ranked by the same rule
        p.set(**{"search.preset": preset})
        p.run("dvc", "repro", "search")
        print(f"\n## search.preset {preset}\n")
        print((p.path / "data/reports/search/recommendation.txt").read_text())
        print((p.path / "data/reports/search/leaderboard.md").read_text())


def files(root: Path) -> None:
    """The reference's default shape as AgentFarm files: BaseQNetwork state dicts (.pt) and N(0,1) states."""
    p = Project(root / "files")
    arch = Architecture(8, 4, 64, 0.1)
    for pair, seed in (("A", 42), ("B", 43)):
        torch.save(seeded_qnetwork(arch, seed).state_dict(), p.path / f"data/user/parent_{pair}.pt")
    np.save(p.path / "data/user/states.npy", np.random.default_rng(0).standard_normal((5000, 8)).astype(np.float32))
    p.set(**{"parents.source": "files"})
    p.run("dvc", "repro", "validate_recombination")
    report = read(p, "data/reports/recombination.json")
    print("## AgentFarm-layout 8/4/64 parents (seeded 42/43), 5000 N(0,1) states (1000 held out)\n")
    print(f"parents agree on {report['parents_agreement']:.4f}; U = {report['bound']:.4f}")
    for name in ("child_raw", "child"):
        held = report["children"][name]
        chosen = report["selection"][name]
        print(f"{name}: held-out primary/U {figure(held, 'primary_over_bound')}, primary {figure(held, 'primary')}; "
              f"validation primary {chosen['primary']:.4f}")
    sidecar = read(p, "data/children/finetuned/child.json")
    print(f"best epoch {sidecar['best_epoch']} of {len(sidecar['history']) - 1}")


def static(root: Path) -> None:
    """Fine-tune through fake-quantized weights, convert with static activations: the rounding training never saw."""
    p = Project(root / "static")
    params = p.params()
    p.set(**{"regimes.tuned.quantization_applied": "ptq_static"})
    p.run("dvc", "repro", "validate_recombination")
    trained = load_checkpoint(p.path / "data/children/finetuned/child.safetensors").model
    int8 = load_checkpoint(p.path / "data/children/finetuned/child_int8.safetensors").model
    heldout = torch.from_numpy(load_states(p.path / "data/states/heldout.npy", 4))
    with torch.inference_mode():
        q_float, q_int8 = trained(heldout), int8(heldout)
    agreement = (q_float.argmax(-1) == q_int8.argmax(-1)).double().mean().item()
    advantages = q_float - q_float.mean(-1, keepdim=True)
    error = ((q_int8 - q_int8.mean(-1, keepdim=True)) - advantages).abs().mean().item() / advantages.std().item()
    report = read(p, "data/reports/recombination.json")
    print(f"## ptq_static fine-tune (regime tuned, {params['regimes']['tuned']['epochs']} epochs), CartPole 4/5\n")
    print(f"trained (fake-quantized weights) vs converted static int8 child on {len(heldout)} held-out states: "
          f"greedy agreement {agreement:.4f}, mean |advantage error| / advantage std {error:.4f}")
    for name in ("child", "child_int8"):
        print(f"{name}: primary/U {figure(report['children'][name], 'primary_over_bound')}, return "
              f"{return_figure(report['greedy_return_interval'][name])}")


def main(parts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts or ["search", "files", "static"]:
            {"search": search, "files": files, "static": static}[part](Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
