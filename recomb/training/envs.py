"""CartPole-v1, vectorised in numpy, for fast and exactly reproducible rollouts.

The dynamics are gymnasium's `CartPoleEnv` (Euler integrator, 500-step limit)
written over a batch of states, so that many episodes run as one numpy
computation and one Q-network forward per step. Episode `seed + i` starts
exactly where `gym.make("CartPole-v1").reset(seed=seed + i)` starts (the tests
check that whole trajectories agree), so returns are comparable with gymnasium's
while costing a fraction of its per-episode Python overhead.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

OBS_DIM = 4
N_ACTIONS = 2
MAX_EPISODE_STEPS = 500
ENV_ID = "CartPole-v1"

# Physical constants of gymnasium's CartPoleEnv.
_GRAVITY = 9.8
_MASSPOLE = 0.1
_TOTAL_MASS = 1.0 + _MASSPOLE
_LENGTH = 0.5
_POLEMASS_LENGTH = _MASSPOLE * _LENGTH
_FORCE_MAG = 10.0
_TAU = 0.02
_THETA_LIMIT = 12 * 2 * np.pi / 360
_X_LIMIT = 2.4
_RESET_BOUND = 0.05

QFunction = Callable[[torch.Tensor], torch.Tensor]


def initial_state(seed: int) -> np.ndarray:
    """The float64 state that `gym.make("CartPole-v1").reset(seed=seed)` starts from."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    return rng.uniform(-_RESET_BOUND, _RESET_BOUND, size=OBS_DIM)


def physics_step(state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Advance float64 states (n, 4) by one step; returns (new states, terminated)."""
    x, x_dot, theta, theta_dot = state.T
    force = np.where(actions == 1, _FORCE_MAG, -_FORCE_MAG)
    costheta = np.cos(theta)
    sintheta = np.sin(theta)
    temp = (force + _POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / _TOTAL_MASS
    thetaacc = (_GRAVITY * sintheta - costheta * temp) / (
        _LENGTH * (4.0 / 3.0 - _MASSPOLE * np.square(costheta) / _TOTAL_MASS)
    )
    xacc = temp - _POLEMASS_LENGTH * thetaacc * costheta / _TOTAL_MASS
    new = np.stack(
        (x + _TAU * x_dot, x_dot + _TAU * xacc, theta + _TAU * theta_dot, theta_dot + _TAU * thetaacc),
        axis=1,
    )
    terminated = (np.abs(new[:, 0]) > _X_LIMIT) | (np.abs(new[:, 2]) > _THETA_LIMIT)
    return new, terminated


def greedy_actions(q_fn: QFunction, obs: np.ndarray) -> np.ndarray:
    """argmax-Q actions for a float32 batch of observations."""
    with torch.inference_mode():
        return q_fn(torch.from_numpy(obs)).argmax(dim=1).numpy()


def greedy_returns(q_fn: QFunction, episodes: int, seed: int, max_steps: int | None = None) -> np.ndarray:
    """Return of the greedy policy in each of `episodes` episodes, run together.

    Episode i starts from `initial_state(seed + i)`; `max_steps` (at most 500)
    shortens the time limit, e.g. for quick smoke checks.
    """
    limit = MAX_EPISODE_STEPS if max_steps is None else min(max_steps, MAX_EPISODE_STEPS)
    state = np.stack([initial_state(seed + i) for i in range(episodes)])
    returns = np.zeros(episodes, dtype=np.float64)
    alive = np.arange(episodes)
    for _ in range(limit):
        if alive.size == 0:
            break
        actions = greedy_actions(q_fn, state.astype(np.float32))
        state, terminated = physics_step(state, actions)
        returns[alive] += 1.0
        state, alive = state[~terminated], alive[~terminated]
    return returns


class CartPoleBatch:
    """`num_envs` CartPole-v1 copies that reset on the very step an episode ends.

    Unlike gymnasium's next-step autoreset, every `step` yields a real transition
    for every copy, which keeps replay-buffer bookkeeping trivial. Resets draw
    from one Generator seeded by `seed`.
    """

    def __init__(self, num_envs: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.state = self._fresh(num_envs)
        self.steps = np.zeros(num_envs, dtype=np.int64)

    def _fresh(self, n: int) -> np.ndarray:
        return self.rng.uniform(-_RESET_BOUND, _RESET_BOUND, size=(n, OBS_DIM))

    def observe(self) -> np.ndarray:
        return self.state.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (next obs before any reset, terminated, truncated, next obs after resets)."""
        state, terminated = physics_step(self.state, actions)
        self.steps += 1
        truncated = ~terminated & (self.steps >= MAX_EPISODE_STEPS)
        final_obs = state.astype(np.float32)
        done = terminated | truncated
        if done.any():
            state[done] = self._fresh(int(done.sum()))
            self.steps[done] = 0
        self.state = state
        return final_obs, terminated, truncated, state.astype(np.float32)


def collect_states(q_fns: list[QFunction], n_states: int, epsilon: float, seed: int,
                   num_envs: int = 16) -> np.ndarray:
    """States visited by ε-greedy rollouts of each policy, equal shares, shuffled.

    The shared state buffer for distillation: covering every parent's own state
    distribution lets a student imitate each of them where it matters.
    """
    if not q_fns:
        raise ValueError("collect_states needs at least one policy")
    seeds = np.random.SeedSequence(seed).spawn(len(q_fns) + 1)
    shares = [n_states // len(q_fns) + (k < n_states % len(q_fns)) for k in range(len(q_fns))]
    chunks = []
    for q_fn, share, seq in zip(q_fns, shares, seeds):
        rng = np.random.default_rng(seq)
        env = CartPoleBatch(num_envs, int(rng.integers(2**63)))
        obs = env.observe()
        rows, got = [], 0
        while got < share:
            actions = greedy_actions(q_fn, obs)
            explore = rng.random(num_envs) < epsilon
            actions = np.where(explore, rng.integers(0, N_ACTIONS, num_envs), actions)
            rows.append(obs)
            got += num_envs
            *_, obs = env.step(actions)
        chunks.append(np.concatenate(rows)[:share])
    states = np.concatenate(chunks)
    np.random.default_rng(seeds[-1]).shuffle(states)
    return states
