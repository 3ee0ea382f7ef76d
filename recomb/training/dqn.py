"""DQN that trains a parent Q-network until it solves its task (`parents.env`).

Plain PyTorch, tuned for wall-clock speed on one CPU thread: numpy-vectorised
environments (`envs.CartPoleBatch`; other tasks: Gymnasium's vector API), a preallocated replay buffer, training in
rounds of many gradient steps (few Python round-trips per environment step),
fused Adam (torch's functional kernel, without torch.optim's dynamo import),
and cheap vectorised greedy evaluations that let training stop as soon as the
policy is good enough. Every random source derives from `seed`, so
the same seed yields bit-identical weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import envs
from .tasks import Task
from ..config import Section
from ..errors import RecombError
from ..networks import Architecture, QNetwork, seeded_qnetwork
from ..optim import Adam, clip_grad_norm_


@dataclass(frozen=True)
class DQNConfig(Section):
    """`parents.presets.<env id>`: every DQN knob of one task's preset; step counts are environment transitions
    summed over envs; returns are the task's (pass_return: the bar a parent must reach)."""

    total_steps: int
    num_envs: int
    learning_rate: float
    batch_size: int
    buffer_size: int
    learning_starts: int
    gamma: float
    train_freq: int
    gradient_steps: int
    target_update_interval: int
    max_grad_norm: float
    train_dropout: bool
    exploration_fraction: float
    exploration_initial_eps: float
    exploration_final_eps: float
    eval_interval: int
    eval_episodes: int
    eval_seed: int
    pass_return: float
    stop_return: float

    def check(self) -> None:
        for key in ("total_steps", "num_envs", "batch_size", "buffer_size", "train_freq",
                    "gradient_steps", "target_update_interval", "eval_interval", "eval_episodes"):
            self.require(getattr(self, key) >= 1, key, "must be >= 1")
        self.require(self.learning_rate > 0, "learning_rate", "must be > 0")
        self.require(self.learning_starts >= 0, "learning_starts", "must be >= 0")
        self.require(self.batch_size <= self.buffer_size, "batch_size", "must be <= buffer_size")
        self.require(0 < self.gamma <= 1, "gamma", "must be in (0, 1]")
        self.require(self.max_grad_norm > 0, "max_grad_norm", "must be > 0")
        self.require(0 < self.exploration_fraction <= 1, "exploration_fraction", "must be in (0, 1]")
        for key in ("exploration_initial_eps", "exploration_final_eps"):
            self.require(0 <= getattr(self, key) <= 1, key, "must be in [0, 1]")
        self.require(self.eval_seed >= 0, "eval_seed", "must be >= 0")
        self.require(self.pass_return <= self.stop_return, "stop_return", "must be ≥ pass_return")


@dataclass
class DQNResult:
    """The best greedily evaluated network and how training got there."""

    network: QNetwork
    best_return: float
    best_step: int
    env_steps: int
    history: list[dict] = field(default_factory=list)


class _Replay:
    """Fixed-size ring buffer of transitions in preallocated tensors (no per-step allocation)."""

    def __init__(self, size: int, obs_dim: int):
        self.size, self.pos, self.full = size, 0, False
        self.obs = torch.zeros(size, obs_dim)
        self.next_obs = torch.zeros(size, obs_dim)
        self.actions = torch.zeros(size, dtype=torch.int64)
        self.rewards = torch.zeros(size)
        self.not_terminal = torch.zeros(size)

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        n = len(obs)
        idx = (self.pos + np.arange(n)) % self.size
        self.obs[idx] = torch.from_numpy(obs)
        self.next_obs[idx] = torch.from_numpy(next_obs)
        self.actions[idx] = torch.from_numpy(actions)
        self.rewards[idx] = torch.from_numpy(rewards)
        self.not_terminal[idx] = torch.from_numpy(1.0 - terminated.astype(np.float32))
        self.full = self.full or self.pos + n >= self.size
        self.pos = (self.pos + n) % self.size

    def __len__(self) -> int:
        return self.size if self.full else self.pos


def _epsilon(cfg: DQNConfig, step: int) -> float:
    progress = min(1.0, step / (cfg.exploration_fraction * cfg.total_steps))
    return cfg.exploration_initial_eps + progress * (cfg.exploration_final_eps - cfg.exploration_initial_eps)


def _train_round(cfg: DQNConfig, online: QNetwork, target: QNetwork, opt: Adam,
                 replay: _Replay, rng: np.random.Generator, grad_steps_done: int) -> int:
    """`gradient_steps` Huber-loss updates; returns the new gradient-step count.

    Batches are gathered for the whole round up front, and the target network's
    values for every step until its next refresh in one forward pass. A DQN takes one gradient step per
    transition, so Python overhead is much of its cost: gradients come from `autograd.grad` (no zero_grad),
    clipping and the fused Adam step call torch's kernels directly (`recomb.optim`), the same bits as
    `backward`, `clip_grad_norm_` and `torch.optim.Adam(fused=True)`.
    """
    idx = torch.from_numpy(rng.integers(0, len(replay), size=(cfg.gradient_steps, cfg.batch_size)))
    obs, next_obs = replay.obs[idx], replay.next_obs[idx]
    actions, rewards, not_terminal = replay.actions[idx].unsqueeze(2), replay.rewards[idx], replay.not_terminal[idx]
    params = list(online.parameters())
    k = 0
    while k < cfg.gradient_steps:
        # truncated transitions still bootstrap
        chunk = min(cfg.gradient_steps - k, cfg.target_update_interval - grad_steps_done % cfg.target_update_interval)
        with torch.no_grad():
            targets = rewards[k:k + chunk] + cfg.gamma * not_terminal[k:k + chunk] * target(next_obs[k:k + chunk]).amax(dim=2)
        for j in range(k, k + chunk):
            q = online(obs[j]).gather(1, actions[j]).squeeze(1)
            grads = list(torch.autograd.grad(F.smooth_l1_loss(q, targets[j - k]), params))
            clip_grad_norm_(grads, cfg.max_grad_norm)
            opt.step(grads)
        k += chunk
        grad_steps_done += chunk
        if grad_steps_done % cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_copy_(list(target.parameters()), params)
    return grad_steps_done


def train_dqn(cfg: DQNConfig, task: Task, arch: Architecture, seed: int,
              on_eval: Callable[[dict], None] | None = None, settings: tuple[Setting, ...] = ((),),
              require_pass: bool = True) -> DQNResult:
    """Train one parent with `seed` in the task's variants `settings` (the copies take turns; a return is the
    mean over the variants); raise RecombError if it never reaches `pass_return`, unless not `require_pass` (a
    baseline that misses the bar is a result, not a failure).

    The network acts, is evaluated and is returned in eval mode. Its dropout is
    active in gradient steps only with `train_dropout`: on CartPole, dropout noise
    in the online Q-estimates made DQN slower and less reliable (3 of 6 seeds
    missed 475 within 50k steps, against 0 of 6 without).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        return _train(cfg, task, arch, seed, on_eval, settings, require_pass)


def _train(cfg: DQNConfig, task: Task, arch: Architecture, seed: int,
           on_eval: Callable[[dict], None] | None, settings: tuple[Setting, ...], require_pass: bool) -> DQNResult:
    env_seq, sample_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(sample_seq)
    env = task.batch(cfg.num_envs, int(np.random.default_rng(env_seq).integers(2**63)), settings)
    online = seeded_qnetwork(arch, seed)
    target = seeded_qnetwork(arch, seed).eval()
    target.requires_grad_(False)
    opt = Adam(online.parameters(), lr=cfg.learning_rate, fused=True)
    replay = _Replay(cfg.buffer_size, arch.input_dim)

    best_state, best_return, best_step = None, -np.inf, 0
    history: list[dict] = []
    grad_steps = step = 0
    next_train, next_eval = max(cfg.learning_starts, cfg.train_freq), max(cfg.learning_starts, cfg.eval_interval)
    obs = env.observe()
    online.eval()
    while step < cfg.total_steps:
        eps = _epsilon(cfg, step)
        explore = rng.random(cfg.num_envs) < eps
        random_actions = rng.integers(0, arch.output_dim, cfg.num_envs)
        actions = random_actions if explore.all() else np.where(explore, random_actions, envs.greedy_actions(online, obs))
        final_obs, rewards, terminated, _, next_obs = env.step(actions)
        replay.add(obs, actions, rewards, final_obs, terminated)
        obs = next_obs
        step += cfg.num_envs

        if step >= next_train:
            next_train += cfg.train_freq
            online.train(cfg.train_dropout)
            grad_steps = _train_round(cfg, online, target, opt, replay, rng, grad_steps)
            online.eval()
        if step >= next_eval or step >= cfg.total_steps:
            next_eval += cfg.eval_interval
            returns = task.returns_in(online, settings, cfg.eval_episodes, cfg.eval_seed)
            row = {"step": step, "mean_return": float(returns.mean()), "min_return": float(returns.min()),
                   "epsilon": eps, "gradient_steps": grad_steps}
            history.append(row)
            if on_eval is not None:
                on_eval(row)
            if row["mean_return"] > best_return:
                best_return, best_step = row["mean_return"], step
                best_state = {k: v.detach().clone() for k, v in online.state_dict().items()}
            if best_return >= cfg.stop_return:
                break

    if require_pass and best_return < cfg.pass_return:
        raise RecombError(
            f"parent seed {seed}: best greedy return {best_return:.1f} < pass_return {cfg.pass_return} within {cfg.total_steps} steps; "
            f"raise parents.presets.{task.env_id}.total_steps or try another seed"
        )
    network = QNetwork(arch)
    network.load_state_dict(best_state)
    return DQNResult(network=network.eval(), best_return=best_return, best_step=best_step,
                     env_steps=step, history=history)
