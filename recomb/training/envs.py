"""CartPole-v1, vectorised in numpy, for fast and exactly reproducible rollouts.

The dynamics are gymnasium's `CartPoleEnv` (Euler integrator, 500-step limit)
written over a batch of states, so that many episodes run as one numpy
computation and one Q-network forward per step. Episode `seed + i` starts
exactly where `gym.make("CartPole-v1").reset(seed=seed + i)` starts (the tests
check that whole trajectories agree), so returns are comparable with gymnasium's
while costing a fraction of its per-episode Python overhead. Shifted variants
(other physical constants, noisy observations) run through the same code, so a
policy's robustness is measured on exactly the episodes of its nominal return.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np
import torch

OBS_DIM = 4
N_ACTIONS = 2
MAX_EPISODE_STEPS = 500
ENV_ID = "CartPole-v1"

# gymnasium's CartPoleEnv constants that no shift changes (the shiftable ones are `Physics`).
_TAU = 0.02
_THETA_LIMIT = 12 * 2 * np.pi / 360
_X_LIMIT = 2.4
_RESET_BOUND = 0.05

QFunction = Callable[[torch.Tensor], torch.Tensor]


def initial_state(seed: int) -> np.ndarray:
    """The float64 state that `gym.make("CartPole-v1").reset(seed=seed)` starts from."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    return rng.uniform(-_RESET_BOUND, _RESET_BOUND, size=OBS_DIM)


@dataclass(frozen=True)
class Physics:
    """CartPole's physical constants, gymnasium's by default.

    A field may also be an array with one value per episode, so that episodes under
    different physics run as one batch (`condition_returns`).
    """

    gravity: float | np.ndarray = 9.8
    cart_mass: float | np.ndarray = 1.0
    pole_mass: float | np.ndarray = 0.1
    pole_length: float | np.ndarray = 0.5  # half the pole's length, as gymnasium's `length`
    force_magnitude: float | np.ndarray = 10.0

    def scaled(self, **factors: float) -> Physics:
        """These constants with some multiplied, e.g. `scaled(pole_length=1.5)`."""
        return replace(self, **{key: getattr(self, key) * factor for key, factor in factors.items()})


PHYSICS_KEYS = tuple(f.name for f in fields(Physics))
NOMINAL = Physics()


def physics_step(state: np.ndarray, actions: np.ndarray, physics: Physics = NOMINAL) -> tuple[np.ndarray, np.ndarray]:
    """Advance float64 states (n, 4) by one step; returns (new states, terminated)."""
    x, x_dot, theta, theta_dot = state.T
    total_mass = physics.cart_mass + physics.pole_mass
    polemass_length = physics.pole_mass * physics.pole_length
    force = np.where(actions == 1, physics.force_magnitude, -physics.force_magnitude)
    costheta = np.cos(theta)
    sintheta = np.sin(theta)
    temp = (force + polemass_length * np.square(theta_dot) * sintheta) / total_mass
    thetaacc = (physics.gravity * sintheta - costheta * temp) / (
        physics.pole_length * (4.0 / 3.0 - physics.pole_mass * np.square(costheta) / total_mass)
    )
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
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


@dataclass(frozen=True)
class Condition:
    """One variant of the environment: its physics, and the observation noise the policy sees.

    `observation_noise` is the per-feature standard deviation of Gaussian noise added to
    each observation before the policy acts on it; the dynamics keep the true state.
    """

    physics: Physics = NOMINAL
    observation_noise: tuple[float, ...] | None = None
    setting: tuple[tuple[str, float], ...] = ()  # another task's shifts: (key, level) of its `tasks.Shift`s


def condition_returns(q_fn: QFunction, conditions: list[Condition], episodes: int, seed: int,
                      noise_seed: int = 0, max_steps: int | None = None) -> np.ndarray:
    """(len(conditions), episodes) greedy returns: each condition runs the same fixed-seed episodes.

    All conditions run as one batch (one Q-network forward per step), which is what makes
    many shifted conditions affordable. Episode i starts from `initial_state(seed + i)`.
    Observation noise: at each step one standard normal row per episode index, drawn from
    `noise_seed` whether or not the episode still runs and shared by every noisy condition
    (scaled by its std), so a condition's returns do not depend on the others run with it.
    `max_steps` (at most 500) shortens the time limit.
    """
    limit = MAX_EPISODE_STEPS if max_steps is None else min(max_steps, MAX_EPISODE_STEPS)
    total = len(conditions) * episodes
    state = np.tile(np.stack([initial_state(seed + i) for i in range(episodes)]), (len(conditions), 1))
    per_episode = {key: np.repeat([getattr(c.physics, key) for c in conditions], episodes) for key in PHYSICS_KEYS}
    noisy = any(c.observation_noise is not None for c in conditions)
    noise_std = np.repeat([c.observation_noise or (0.0,) * OBS_DIM for c in conditions], episodes, axis=0)
    rng = np.random.default_rng(noise_seed)
    returns = np.zeros(total, dtype=np.float64)
    alive = np.arange(total)
    for _ in range(limit):
        if alive.size == 0:
            break
        if noisy:
            observed = state + rng.standard_normal((episodes, OBS_DIM))[alive % episodes] * noise_std[alive]
        else:
            observed = state
        actions = greedy_actions(q_fn, observed.astype(np.float32))
        state, terminated = physics_step(state, actions, Physics(**{k: v[alive] for k, v in per_episode.items()}))
        returns[alive] += 1.0
        state, alive = state[~terminated], alive[~terminated]
    return returns.reshape(len(conditions), episodes)


def greedy_returns(q_fn: QFunction, episodes: int, seed: int, max_steps: int | None = None) -> np.ndarray:
    """Return of the greedy policy in each of `episodes` episodes of CartPole-v1 itself, run together.

    Episode i starts from `initial_state(seed + i)`; `max_steps` (at most 500)
    shortens the time limit, e.g. for quick smoke checks.
    """
    return condition_returns(q_fn, [Condition()], episodes, seed, max_steps=max_steps)[0]


def population_returns(q_fn: Callable[[torch.Tensor], torch.Tensor], members: int, episodes: int,
                       seed: int) -> np.ndarray:
    """(members, episodes) greedy returns of a population: `q_fn` maps states (members, n, 4) to Q-values
    (members, n, 2), member m's rows through network m. Every member plays the same fixed-seed episodes
    (episode i from `initial_state(seed + i)`), all in one batch: one forward per step for the whole
    population. A finished episode's row keeps its last state, so the batch keeps its shape."""
    state = np.tile(np.stack([initial_state(seed + i) for i in range(episodes)]), (members, 1))
    returns = np.zeros(members * episodes, dtype=np.float64)
    running = np.ones(members * episodes, dtype=bool)
    for _ in range(MAX_EPISODE_STEPS):
        if not running.any():
            break
        with torch.inference_mode():
            q = q_fn(torch.from_numpy(state.astype(np.float32)).view(members, episodes, OBS_DIM))
        stepped, terminated = physics_step(state, q.argmax(-1).reshape(-1).numpy())
        state = np.where(running[:, None], stepped, state)
        returns[running] += 1.0
        running &= ~terminated
    return returns.reshape(members, episodes)


class CartPoleBatch:
    """`num_envs` CartPole-v1 copies, under `physics`, that reset on the very step an episode ends.

    Unlike gymnasium's next-step autoreset, every `step` yields a real transition
    for every copy, which keeps replay-buffer bookkeeping trivial. Resets draw
    from one Generator seeded by `seed`.
    """

    def __init__(self, num_envs: int, seed: int, physics: Physics = NOMINAL):
        self.rng = np.random.default_rng(seed)
        self.physics = physics  # a field may hold one value per copy (a mixture of variants)
        self.state = self._fresh(num_envs)
        self.steps = np.zeros(num_envs, dtype=np.int64)

    def _fresh(self, n: int) -> np.ndarray:
        return self.rng.uniform(-_RESET_BOUND, _RESET_BOUND, size=(n, OBS_DIM))

    def observe(self) -> np.ndarray:
        return self.state.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (next obs before any reset, rewards (+1 a step), terminated, truncated, next obs after resets)."""
        state, terminated = physics_step(self.state, actions, self.physics)
        self.steps += 1
        truncated = ~terminated & (self.steps >= MAX_EPISODE_STEPS)
        final_obs = state.astype(np.float32)
        done = terminated | truncated
        if done.any():
            state[done] = self._fresh(int(done.sum()))
            self.steps[done] = 0
        self.state = state
        return final_obs, np.ones(len(state), dtype=np.float32), terminated, truncated, state.astype(np.float32)
