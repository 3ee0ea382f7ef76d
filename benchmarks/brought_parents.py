"""Parents brought from Stable-Baselines3 and CleanRL through the pipeline (issue 24): prints figures, asserts nothing.

    python benchmarks/brought_parents.py [--steps 50000] [--work DIR]

1. Trains SB3 DQN parents with rl-baselines3-zoo's CartPole-v1 settings (hyperparams/dqn.yml: net_arch
   [256, 256], 5·10⁴ steps, lr 2.3e-3, batch 64, buffer 10⁵, learning_starts 1000, gamma 0.99, target
   update every 10, train_freq 256, gradient_steps 128, exploration 0.16 → 0.04), one thread each, and a
   CleanRL-architecture parent (dqn.py's 4 → 120 → 84 → 2, trained with the same settings by SB3 and saved
   as CleanRL saves it, `torch.save(q_network.state_dict())` with keys `network.{0,2,4}`). A seed whose
   parent misses 475 over 100 fixed-seed episodes is replaced by the next seed (said in the output); parents
   saved in `--work` by an earlier run are reused.
2. For each run (SB3 × SB3 as `.zip` with plain students, the same with recomb's LayerNorm students, SB3 ×
   CleanRL with plain students), a scratch copy of the pipeline with `parents.source: files`, `task: true`, no
   states file (the buffer is both parents' rollouts), every other param as committed;
   `dvc repro validate_distillation validate_recombination`, then `recomb export`.
3. Prints each parent's return, the students' held-out agreement with their parents, the child's held-out
   primary/U and return with their intervals, the return of the exported ONNX child run by onnxruntime on the
   episodes recomb scored it on, and (plain family) the exported SB3 child's return by SB3's own
   `evaluate_policy` on those episodes (a DummyVecEnv whose env i is seeded eval_seed + i).
Needs the interop extra (`pip install -e '.[interop]'`). About 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import recomb  # noqa: E402,F401  (its dispatch pins first)
from recomb.training.tasks import task  # noqa: E402
from scratch import BIN, Project  # noqa: E402

ENV = "CartPole-v1"
ZOO = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
           target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
           exploration_final_eps=0.04)
EPISODES, EPISODE_SEED, BAR = 100, 10_000, 475.0


def train(seed: int, net_arch: list[int], steps: int):
    from stable_baselines3 import DQN
    model = DQN("MlpPolicy", ENV, policy_kwargs={"net_arch": net_arch}, seed=seed, device="cpu", **ZOO)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model, time.perf_counter() - start


def mean_return(q_fn, episodes: int = EPISODES, seed: int = EPISODE_SEED) -> float:
    return float(task(ENV).greedy_returns(q_fn, episodes, seed).mean())


def saved(kind: str, seed: int, folder: Path) -> Path:
    return folder / (f"sb3_seed{seed}.zip" if kind == "sb3" else f"cleanrl_seed{seed}.cleanrl_model")


def parent(kind: str, first_seed: int, steps: int, folder: Path) -> tuple[Path, str]:
    """A trained parent of `kind` (sb3 or cleanrl) that reaches the bar, saved in its library's own form; one
    saved in `folder` by an earlier run is read back (through recomb's reader) instead of trained again."""
    from recomb.artifacts import load_parent
    net_arch = [256, 256] if kind == "sb3" else [120, 84]
    for seed in range(first_seed, first_seed + 5):
        if saved(kind, seed, folder).is_file():
            model = load_parent(saved(kind, seed, folder), 0.0, "relu").model
            return saved(kind, seed, folder), (f"{kind} parent, seed {seed} (saved earlier): return "
                                               f"{mean_return(model):.1f} over {EPISODES} episodes")
        model, seconds = train(seed, net_arch, steps)
        achieved = mean_return(model.q_net)
        line = f"{kind} parent, seed {seed}: {seconds:.0f} s of training, return {achieved:.1f} over {EPISODES} episodes"
        if achieved >= BAR:
            path = saved(kind, seed, folder)
            if kind == "sb3":
                model.save(path)
            else:
                layers = model.q_net.q_net
                torch.save({f"network.{i}.{name}": value for i in (0, 2, 4)
                            for name, value in layers[i].state_dict().items()}, path)
            return path, line
        print(line + f" < {BAR:g}: next seed", flush=True)
    raise SystemExit(f"no {kind} parent reached {BAR:g} in 5 seeds")


def sb3_return(zip_path: Path, episodes: int, seed: int) -> float:
    """The exported child's mean return by SB3's own `evaluate_policy`, episode i seeded `seed + i`."""
    import gymnasium
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv
    envs = DummyVecEnv([lambda: gymnasium.make(ENV) for _ in range(episodes)])
    envs.seed(seed)
    mean, _ = evaluate_policy(DQN.load(zip_path, device="cpu"), envs, n_eval_episodes=episodes, deterministic=True)
    return float(mean)


def child_figures(p: Project) -> dict:
    import onnxruntime
    report = json.loads((p.path / "data/reports/recombination.json").read_text())
    distilled = json.loads((p.path / "data/reports/distillation.json").read_text())["pairs"]
    child = report["children"]["child"]
    params = p.params()["validate_recombination"]
    episodes, seed = params["eval_episodes"], params["eval_seed"]
    session = onnxruntime.InferenceSession(str(p.path / "data/export/child.onnx"))
    onnx_q = lambda x: torch.from_numpy(session.run(None, {"states": x.float().numpy()})[0])  # noqa: E731
    interval = report["greedy_return_interval"]["child"]
    figures = {"students' agreement with their parents (A, B)": [distilled[pair]["fidelity"]["action_agreement"]
                                                                 for pair in "AB"],
               "primary/U": child["primary_over_bound"], "primary/U interval": child["primary_over_bound_ci"],
               "return": interval["mean"], "return interval": [interval["low"], interval["high"]],
               "ONNX child's return (onnxruntime, same episodes)": mean_return(onnx_q, episodes, seed)}
    sb3_zip = p.path / "data/export/child_sb3.zip"
    if sb3_zip.is_file():
        figures["SB3 child's return (evaluate_policy, same episodes)"] = sb3_return(sb3_zip, episodes, seed)
    return figures


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--steps", type=int, default=50_000, help="environment steps per parent (zoo: 5e4)")
    cli.add_argument("--work", type=Path, default=None, help="keep the scratch projects here (default: a temp dir)")
    args = cli.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="recomb_brought_"))
    work.mkdir(parents=True, exist_ok=True)
    runs = (("SB3 × SB3, plain students", "sb3_a", "sb3_b", "plain"),
            ("SB3 × SB3, LayerNorm students", "sb3_a", "sb3_b", "layernorm"),
            ("SB3 × CleanRL, plain students", "sb3_a", "cleanrl", "plain"))
    for _, a, b, family in runs:
        shutil.rmtree(work / f"{a}_x_{b}_{family}", ignore_errors=True)  # a scratch project of an earlier run
    projects = {label: Project(work / f"{a}_x_{b}_{family}") for label, a, b, family in runs}  # today's code, first
    made = {}
    for name, kind, seed in (("sb3_a", "sb3", 0), ("sb3_b", "sb3", 10), ("cleanrl", "cleanrl", 20)):
        made[name], line = parent(kind, seed, args.steps, work)
        print(line, flush=True)
    for label, a, b, family in runs:
        p = projects[label]
        for name in (a, b):
            (p.path / "data/user" / made[name].name).write_bytes(made[name].read_bytes())
        p.set(**{"parents.source": "files", "parents.env": ENV, "parents.files.task": True,
                 "distill.student_family": family,
                 "parents.files.states": "", "parents.files.input_dim": 4, "parents.files.output_dim": 2,
                 "parents.files.parent_a": f"data/user/{made[a].name}",
                 "parents.files.parent_b": f"data/user/{made[b].name}"})
        start = time.perf_counter()
        p.run("dvc", "repro", "validate_distillation", "validate_recombination")
        seconds = time.perf_counter() - start
        p.run(str(BIN / "recomb"), "export")
        figures = child_figures(p)
        print(f"{label} ({made[a].name} × {made[b].name}): pipeline to validate_recombination in {seconds:.0f} s",
              flush=True)
        for key, value in figures.items():
            print(f"  {key}: {value}", flush=True)
    print(f"scratch projects: {work}")


if __name__ == "__main__":
    main()
