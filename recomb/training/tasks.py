"""The task parents are trained on and every network is played in: any Gymnasium environment with a flat Box
observation and a Discrete action space (`parents.env`).

`task(env_id)` builds the `Task` once (stages: `of_parents`, from the parents' sidecar) and everything that plays
episodes takes it. CartPole-v1 runs through `envs`' vectorised copy of its dynamics (exact, and far cheaper per
episode); any other id runs through Gymnasium itself, its vector API. Either way every episode of a batch runs in
lockstep with one Q-network forward per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

from . import envs
from ..networks import QNetwork, QNetworkStack
from ..config import Section
from ..errors import RecombError


@dataclass(frozen=True)
class TaskNeeds(Section):
    """`tasks.<env id>`: what a task's students need beyond its DQN preset; a key set to `task` takes it."""

    buffer_states: int   # parents.dqn.buffer.n_states
    distill_epochs: int  # distill.epochs
    augment_copies: int  # distill.augment_copies
    int8_return_gated: Literal["ptq", "qat", "both"]  # validate_quantized.return_gated
    finetune_epochs: int  # regimes.tuned.epochs

    def check(self) -> None:
        self.require(self.buffer_states >= 10, "buffer_states", "must be ≥ 10")
        self.require(self.distill_epochs >= 1, "distill_epochs", "must be ≥ 1")
        self.require(self.augment_copies >= 0, "augment_copies", "must be ≥ 0")
        self.require(self.finetune_epochs >= 1, "finetune_epochs", "must be ≥ 1")


class TasksConfig(Section):
    """The `tasks` section: one `TaskNeeds` row per task id."""

    sections = ("tasks",)

    @staticmethod
    def validate(params: dict) -> dict[str, TaskNeeds]:
        rows = params.get("tasks")
        if not isinstance(rows, dict):
            raise RecombError("params.yaml: tasks: expected a mapping of task ids to their needs")
        return {env: TaskNeeds.from_mapping(row, f"params.yaml: tasks.{env}") for env, row in rows.items()}


@dataclass(frozen=True)
class Shift:
    """A physical parameter a task's episodes can be played under another value of (`generalize.physics`).

    A level is a multiplier of the nominal constant (`multiplier`) or the parameter's own value. Gymnasium
    takes it as a `gymnasium.make` argument (`make_arg`, with `also` beside it) or, where the environment has
    no argument for it, as an attribute of the environment (`attribute`)."""

    nominal: float  # the unshifted level
    low: float      # levels lie between low and high: in [low, high] if `closed`, else in (low, high)
    high: float
    multiplier: bool
    closed: bool = True
    make_arg: str = ""
    also: tuple[tuple[str, object], ...] = ()
    attribute: str = ""

    @property
    def unshifted(self) -> float:
        """The level that leaves the environment as it is."""
        return 1.0 if self.multiplier else self.nominal

    def check(self, level: float) -> str | None:
        """Why `level` cannot be played, or None."""
        inside = self.low <= level <= self.high if self.closed else self.low < level < self.high
        if inside:
            return None
        if self.multiplier:
            return "a multiplier must be > 0"
        return f"must be in {'[' if self.closed else '('}{self.low:g}, {self.high:g}{']' if self.closed else ')'}"


_INF = float("inf")
# The shifts each Gymnasium task exposes (CartPole's are `envs.Physics`, all multipliers).
GYM_SHIFTS: dict[str, dict[str, Shift]] = {
    "LunarLander-v3": {  # gymnasium.make arguments; wind and turbulence exist only with enable_wind (off: nominal)
        "gravity": Shift(-10.0, -12.0, 0.0, False, closed=False, make_arg="gravity"),
        "wind_power": Shift(0.0, 0.0, 20.0, False, make_arg="wind_power",
                            also=(("enable_wind", True), ("turbulence_power", 0.0))),
        "turbulence_power": Shift(0.0, 0.0, 2.0, False, make_arg="turbulence_power",
                                  also=(("enable_wind", True), ("wind_power", 0.0))),
    },
    "Acrobot-v1": {  # class constants (no make argument): multipliers of 1 m, 1 kg, 1 kg·m²; torque noise in N·m
        "link_length_1": Shift(1.0, 0.0, _INF, True, closed=False, attribute="LINK_LENGTH_1"),
        "link_mass_1": Shift(1.0, 0.0, _INF, True, closed=False, attribute="LINK_MASS_1"),
        "link_mass_2": Shift(1.0, 0.0, _INF, True, closed=False, attribute="LINK_MASS_2"),
        "link_moi": Shift(1.0, 0.0, _INF, True, closed=False, attribute="LINK_MOI"),
        "torque_noise": Shift(0.0, 0.0, 1.0, False, attribute="torque_noise_max"),
    },
}
CARTPOLE_SHIFTS = {key: Shift(1.0, 0.0, _INF, True, closed=False) for key in envs.PHYSICS_KEYS}

SHIFT_NOTES = {  # what a level of each task's shifts means, for reports
    "CartPole-v1": "multipliers of gymnasium's constants (pole_length: its half-length)",
    "LunarLander-v3": "the values of gymnasium.make's arguments (gravity in m/s², nominal −10; wind_power and "
                      "turbulence_power with enable_wind, the other one 0; nominal: no wind)",
    "Acrobot-v1": "multipliers of the environment's link constants (set on each copy: gymnasium.make has no "
                  "argument for them); torque_noise: the uniform torque noise's bound in N·m (nominal 0)",
}


Setting = tuple[tuple[str, float], ...]  # a task variant: (shift key, level) pairs, sorted by key; () is nominal


def known_shifts(env_id: str) -> dict[str, Shift]:
    """The shifts a task id can be played under (none for a task not listed here)."""
    return CARTPOLE_SHIFTS if env_id == envs.ENV_ID else GYM_SHIFTS.get(env_id, {})


@dataclass(frozen=True)
class Task:
    """A task to train in and play episodes of, built by `task(env_id)` — the one place that tells tasks apart.

    Episode i of an evaluation is seeded `seed + i`, so a return is reproducible to the bit.
    """

    env_id: str
    obs_dim: int
    n_actions: int
    max_steps: int  # the time limit of the registered environment (its episodes' truncation)
    shifts: dict[str, Shift] = field(default_factory=dict)  # what its episodes can be shifted in, by key
    max_return: float | None = None     # no policy can return more (CartPole: +1 a step); None when unbounded
    plane: tuple[tuple[int, str], tuple[int, str]] | None = None  # two telling features and their names, if known

    def check_network(self, q_fn, name: str) -> None:
        """Refuse a network whose input or output width is not the task's (one line naming it)."""
        try:
            with torch.inference_mode():
                width = q_fn(torch.zeros(1, self.obs_dim)).shape[-1]
        except RuntimeError:
            width = None
        if width != self.n_actions:
            raise RecombError(f"{name}: does not fit {self.env_id} ({self.obs_dim} observations → "
                              f"{self.n_actions} actions): its dims differ")

    def setting(self, levels: dict, where: str) -> Setting:
        """A variant given as {shift key: level}, checked against the task's shifts (one line naming `where`)."""
        if not isinstance(levels, dict):
            raise RecombError(f"{where}: expected a mapping of shift keys to levels, e.g. {{}} (nominal)")
        for key, level in levels.items():
            if key not in self.shifts:
                raise RecombError(f"{where}.{key}: {self.env_id} has no such shift"
                                  + (f" (it has: {', '.join(self.shifts)})" if self.shifts else " (it has none)"))
            if isinstance(level, bool) or not isinstance(level, (int, float)):
                raise RecombError(f"{where}.{key}: expected a number (got {level!r})")
            problem = self.shifts[key].check(float(level))
            if problem:
                raise RecombError(f"{where}.{key}: {problem} (got {level!r})")
        return tuple(sorted((key, float(level)) for key, level in levels.items()
                            if float(level) != self.shifts[key].unshifted))

    def batch(self, num_envs: int, seed: int, settings: tuple[Setting, ...] = ((),)):
        """`num_envs` training copies that reset on the step an episode ends (`envs.CartPoleBatch`'s interface);
        copy i plays variant `settings[i % len(settings)]`."""
        return GymBatch(self, num_envs, seed, settings)

    def condition(self, setting: Setting) -> envs.Condition:
        """The condition of a variant (`setting`)."""
        return envs.Condition(setting=setting)

    def shifted(self, key: str, level: float) -> envs.Condition:
        """The condition with shift `key` at `level` (`shifts`)."""
        return self.condition(((key, float(level)),))

    def _make_args(self, setting: Setting) -> tuple[dict, dict]:
        """(gymnasium.make arguments, environment attributes) of a variant; a shift's companions (`also`) never
        undo a shift the variant sets itself."""
        make_args, attributes, own = {}, {}, {self.shifts[key].make_arg for key, _ in setting}
        for key, level in setting:
            shift = self.shifts[key]
            value = shift.nominal * level if shift.multiplier else level
            if shift.make_arg:
                make_args.update({k: v for k, v in shift.also if k not in own},
                                 **{shift.make_arg: value})
            else:
                attributes[shift.attribute] = value
        return make_args, attributes

    def make_vec(self, num_envs: int, setting: Setting = (), settings: tuple[Setting, ...] | None = None,
                 vector_kwargs: dict | None = None):
        """Gymnasium's synchronous vector env of this task with a variant (`setting`) applied to every copy, or
        with copy i in `settings[i % len(settings)]`."""
        import gymnasium

        per_copy = [setting] * num_envs if settings is None else [settings[i % len(settings)] for i in range(num_envs)]
        args = [self._make_args(s) for s in per_copy]
        if len(set(per_copy)) == 1:
            env = gymnasium.make_vec(self.env_id, num_envs=num_envs, vectorization_mode="sync",
                                     vector_kwargs=vector_kwargs, **args[0][0])
        else:
            env = gymnasium.vector.SyncVectorEnv(
                [lambda make_args=make_args: gymnasium.make(self.env_id, **make_args) for make_args, _ in args],
                **(vector_kwargs or {}))
        for copy, (_, attributes) in zip(env.envs, args):
            for name, value in attributes.items():
                setattr(copy.unwrapped, name, value)  # an instance attribute shadows the class constant
        return env

    def greedy_returns(self, q_fn, episodes: int, seed: int, observation_noise: np.ndarray | None = None,
                       noise_seed: int = 0, setting: tuple[tuple[str, float], ...] = ()) -> np.ndarray:
        """The greedy policy's return in each of `episodes` episodes (episode i seeded `seed + i`), run together.

        `observation_noise`: per-feature std of Gaussian noise added to what the policy sees (the dynamics keep
        the true state), one standard normal row per episode and step from `noise_seed`. `setting`: the
        task's shifts, (key, level) pairs.
        """
        env = self.make_vec(episodes, setting)
        try:
            obs, _ = env.reset(seed=seed)
            rng = np.random.default_rng(noise_seed)
            returns = np.zeros(episodes, dtype=np.float64)
            running = np.ones(episodes, dtype=bool)
            for _ in range(self.max_steps):
                seen = obs if observation_noise is None else obs + rng.standard_normal(obs.shape) * observation_noise
                actions = envs.greedy_actions(q_fn, seen.astype(np.float32))
                obs, rewards, terminated, truncated, _ = env.step(actions)
                returns[running] += rewards[running]
                running &= ~(terminated | truncated)
                if not running.any():
                    break
            return returns
        finally:
            env.close()

    def population_returns(self, networks: list[torch.nn.Module], episodes: int, seed: int) -> np.ndarray:
        """(len(networks), episodes): each network's `greedy_returns` over the same fixed-seed episodes."""
        return np.stack([self.greedy_returns(net, episodes, seed) for net in networks])

    def returns_in(self, q_fn, settings: tuple[Setting, ...], episodes: int, seed: int) -> np.ndarray:
        """(len(settings), episodes) greedy returns in each variant, over the same fixed-seed episodes."""
        return self.condition_returns(q_fn, [self.condition(s) for s in settings], episodes, seed, 0)

    def condition_returns(self, q_fn, conditions: list[envs.Condition], episodes: int, seed: int,
                          noise_seed: int) -> np.ndarray:
        """(len(conditions), episodes) greedy returns, every condition over the same fixed-seed episodes."""
        if any(c.physics != envs.NOMINAL for c in conditions):
            raise ValueError(f"{self.env_id} is not CartPole: its shifts are settings, not envs.Physics")
        return np.stack([self.greedy_returns(q_fn, episodes, seed, None if c.observation_noise is None
                                             else np.asarray(c.observation_noise), noise_seed, c.setting)
                         for c in conditions])

    def collect_states(self, rollouts: list[tuple], n_states: int, epsilon: float, seed: int,
                       num_envs: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """States visited by ε-greedy rollouts, equal shares, shuffled, and the rollout each came from.

        `rollouts` are (policy, variant `Setting`) pairs. The shared state buffer for distillation: covering
        every parent's own state distribution (in its own variant, and in others when asked) lets a student
        imitate each of them where it matters.
        """
        if not rollouts:
            raise ValueError("collect_states needs at least one rollout")
        seeds = np.random.SeedSequence(seed).spawn(len(rollouts) + 1)
        shares = [n_states // len(rollouts) + (k < n_states % len(rollouts)) for k in range(len(rollouts))]
        chunks = []
        for (q_fn, setting), share, seq in zip(rollouts, shares, seeds):
            rng = np.random.default_rng(seq)
            env = self.batch(num_envs, int(rng.integers(2**63)), (setting,))
            obs = env.observe()
            rows, got = [], 0
            while got < share:
                actions = envs.greedy_actions(q_fn, obs)
                explore = rng.random(num_envs) < epsilon
                actions = np.where(explore, rng.integers(0, self.n_actions, num_envs), actions)
                rows.append(obs)
                got += num_envs
                *_, obs = env.step(actions)
            chunks.append(np.concatenate(rows)[:share])
        order = np.random.default_rng(seeds[-1]).permutation(n_states)
        origin = np.repeat(np.arange(len(rollouts)), shares)
        return np.concatenate(chunks)[order], origin[order]


@dataclass(frozen=True)
class CartPoleTask(Task):
    """CartPole-v1 through `envs`' vectorised copy of its dynamics: exact, far cheaper per episode, and with
    physics that can be shifted (every condition of an evaluation runs as one batch)."""

    def batch(self, num_envs: int, seed: int, settings: tuple[Setting, ...] = ((),)):
        per_copy = [self.condition(settings[i % len(settings)]).physics for i in range(num_envs)]
        physics = per_copy[0] if len(set(settings)) == 1 else envs.Physics(
            **{key: np.array([getattr(p, key) for p in per_copy]) for key in envs.PHYSICS_KEYS})
        return envs.CartPoleBatch(num_envs, seed, physics)

    def condition(self, setting: Setting) -> envs.Condition:
        return envs.Condition(envs.NOMINAL.scaled(**dict(setting)))

    def greedy_returns(self, q_fn, episodes: int, seed: int, observation_noise: np.ndarray | None = None,
                       noise_seed: int = 0) -> np.ndarray:
        noise = None if observation_noise is None else tuple(float(s) for s in observation_noise)
        return self.condition_returns(q_fn, [envs.Condition(observation_noise=noise)], episodes, seed, noise_seed)[0]

    def condition_returns(self, q_fn, conditions: list[envs.Condition], episodes: int, seed: int,
                          noise_seed: int) -> np.ndarray:
        return envs.condition_returns(q_fn, conditions, episodes, seed, noise_seed)

    def population_returns(self, networks: list[torch.nn.Module], episodes: int, seed: int) -> np.ndarray:
        """Networks of one `QNetwork` architecture play as one `QNetworkStack` (the same Q-values, one forward
        per step for all of them); any others one by one."""
        archs = {getattr(net, "arch", None) for net in networks}
        if len(archs) != 1 or not all(isinstance(net, QNetwork) for net in networks):
            return super().population_returns(networks, episodes, seed)
        stack = QNetworkStack(networks[0].arch, [net.state_dict() for net in networks]).eval()
        return envs.population_returns(stack, len(networks), episodes, seed)


@lru_cache(maxsize=None)
def task(env_id: str, where: str = "parents.env") -> Task:
    """The task `env_id` names, its spaces checked; a one-line error naming `where` otherwise."""
    if env_id == envs.ENV_ID:
        return CartPoleTask(env_id, envs.OBS_DIM, envs.N_ACTIONS, envs.MAX_EPISODE_STEPS, known_shifts(env_id),
                            float(envs.MAX_EPISODE_STEPS),
                            ((2, "pole angle (rad)"), (3, "pole angular velocity (rad/s)")))
    import gymnasium
    from gymnasium import spaces

    try:
        env = gymnasium.make(env_id)
    except gymnasium.error.DependencyNotInstalled as exc:
        raise RecombError(f"{where}: {env_id} needs a package that is not installed "
                          f"({str(exc).splitlines()[0]})") from None
    except gymnasium.error.Error as exc:
        raise RecombError(f"{where}: no Gymnasium environment {env_id!r} ({str(exc).splitlines()[0]})") from None
    try:
        obs, act = env.observation_space, env.action_space
        if not (isinstance(obs, spaces.Box) and len(obs.shape) == 1):
            raise RecombError(f"{where}: {env_id} observes {obs}; a Q-network here takes a flat vector "
                              "(a 1-D Box space), not images or nested spaces")
        if not isinstance(act, spaces.Discrete):
            raise RecombError(f"{where}: {env_id} has a continuous or non-discrete action space ({act}); "
                              "DQN parents need a Discrete one")
        limit = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else None
        if limit is None:
            raise RecombError(f"{where}: {env_id} registers no time limit (max_episode_steps): episodes "
                              "could run forever")
        return Task(env_id, int(obs.shape[0]), int(act.n), int(limit), known_shifts(env_id))
    finally:
        env.close()


def of_parents(meta: dict) -> Task | None:
    """The task the parents' sidecar names (`env`), or None for parents without one (synthetic, bare files)."""
    return task(meta["env"]) if meta.get("env") else None


class GymBatch:
    """`num_envs` copies of a Gymnasium environment that reset on the very step an episode ends (Gymnasium's
    same-step autoreset), with the interface of `envs.CartPoleBatch`. Copy i is seeded `seed + i` once."""

    def __init__(self, task: Task, num_envs: int, seed: int, settings: tuple[Setting, ...] = ((),)):
        from gymnasium.vector import AutoresetMode

        self.env = task.make_vec(num_envs, settings=settings,
                                 vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
        self.obs, _ = self.env.reset(seed=seed)

    def observe(self) -> np.ndarray:
        return self.obs.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(next obs before any reset, rewards, terminated, truncated, next obs after resets)."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        final = obs.astype(np.float32)  # a copy: the final observations go in where episodes ended
        if "_final_obs" in info:
            ended = info["_final_obs"]
            final[ended] = np.stack(info["final_obs"][ended]).astype(np.float32)
        self.obs = obs
        return final, rewards.astype(np.float32), terminated, truncated, obs.astype(np.float32)
