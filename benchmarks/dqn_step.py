"""Benchmark of the DQN's gradient step: ours against torch's public API, run beside each other; prints, asserts nothing.

    python benchmarks/dqn_step.py                 # LunarLander's shape (8 → 64 → 64 → 4), batch 128
    python benchmarks/dqn_step.py --steps 3000 --profile LunarLander-v3 --profile-steps 20000

The parents stage is DQN, one gradient step per transition: on LunarLander most of its time. `recomb.training.dqn`
takes each step with `autograd.grad`, `recomb.optim.clip_grad_norm_` and the fused Adam kernel called directly;
the reference is what it replaced: `zero_grad` + `backward` + `torch.nn.utils.clip_grad_norm_(foreach=True)` +
`torch.optim.Adam(fused=True)`. Both train the same network on the same batches, in alternating blocks, so a
busy machine slows both alike: the ratio is the figure. It checks that both end with the same bits.
`--profile` trains one parent of that task's preset for `--profile-steps` transitions under cProfile and prints
where the time goes (gradient steps, environment steps, greedy evaluations).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch
import torch.nn.functional as F

from recomb.networks import Architecture, seeded_qnetwork
from recomb.optim import Adam, clip_grad_norm_


def ours(net, opt, states, actions, targets):
    q = net(states).gather(1, actions).squeeze(1)
    grads = list(torch.autograd.grad(F.smooth_l1_loss(q, targets), opt.params))
    clip_grad_norm_(grads, 10.0)
    opt.step(grads)


def reference(net, opt, states, actions, targets):
    q = net(states).gather(1, actions).squeeze(1)
    opt.zero_grad()
    F.smooth_l1_loss(q, targets).backward()
    torch.nn.utils.clip_grad_norm_(list(net.parameters()), 10.0, foreach=True)
    opt.step()


def step_ratio(steps: int, blocks: int) -> None:
    torch.set_num_threads(1)
    arch = Architecture(8, 4, 64, 0.1)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(128, 8, generator=gen), torch.randint(0, 4, (128, 1), generator=gen),
                torch.randn(128, generator=gen)) for _ in range(steps)]
    nets = {"ours": seeded_qnetwork(arch, 0).eval(), "reference": seeded_qnetwork(arch, 0).eval()}
    opts = {"ours": Adam(nets["ours"].parameters(), lr=6.3e-4, fused=True),
            "reference": torch.optim.Adam(nets["reference"].parameters(), lr=6.3e-4, fused=True)}
    run = {"ours": ours, "reference": reference}
    spent = {name: 0.0 for name in run}
    per_block = steps // blocks
    for block in range(blocks):
        for name in (("ours", "reference") if block % 2 == 0 else ("reference", "ours")):
            start = time.perf_counter()
            for b in batches[block * per_block:(block + 1) * per_block]:
                run[name](nets[name], opts[name], *b)
            spent[name] += time.perf_counter() - start
    done = per_block * blocks
    same = all(torch.equal(a, b) for a, b in zip(nets["ours"].parameters(), nets["reference"].parameters()))
    print(f"gradient step, 8 → 64 → 64 → 4, batch 128, {done} steps each in {blocks} alternating blocks:")
    for name, seconds in spent.items():
        print(f"  {name}: {1000 * seconds / done:.3f} ms/step")
    print(f"  ours / reference: {spent['ours'] / spent['reference']:.3f}; same bits after {done} steps: {same}")


def profile(env_id: str, transitions: int) -> None:
    import yaml

    from recomb.training.dqn import DQNConfig, train_dqn
    from recomb.training.tasks import task

    torch.set_num_threads(1)
    params = yaml.safe_load(open("params.yaml"))
    preset = {**params["parents"]["presets"][env_id], "total_steps": transitions, "stop_return": 1e9,
              "pass_return": -1e9}
    spec = task(env_id)
    arch = Architecture(spec.obs_dim, spec.n_actions, params["parents"]["dqn"]["hidden"], 0.1)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    train_dqn(DQNConfig.from_mapping(preset, "preset"), spec, arch, 4)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    print(f"one {env_id} parent, {transitions} transitions, under cProfile: {wall:.1f} s")
    for label, name in (("gradient steps (_train_round)", "_train_round"),
                        ("greedy evaluations (greedy_returns)", "greedy_returns"), ("training env steps", "step")):
        found = max((entry[3] for func, entry in stats.items() if func[2] == name
                     and (name != "step" or func[0].endswith("tasks.py"))), default=0.0)
        print(f"  {label}: {found:.1f} s ({100 * found / wall:.0f} %)")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--steps", type=int, default=4000)
    cli.add_argument("--blocks", type=int, default=8)
    cli.add_argument("--profile", metavar="ENV_ID")
    cli.add_argument("--profile-steps", type=int, default=20000)
    args = cli.parse_args()
    step_ratio(args.steps, args.blocks)
    if args.profile:
        profile(args.profile, args.profile_steps)


if __name__ == "__main__":
    main()
