"""Where parents and the shared state buffer come from: DQN on a task, a synthetic harness, or files.

Whatever the source, the result is the same: two float parents and a state
buffer split once into `train` and `heldout`. Held-out states are never used for
training, calibration or fine-tuning anywhere downstream.

Each source has its own params section (`parents.dqn`, `parents.synthetic`,
`parents.files`) and only the chosen one is a dependency of the `parents` stage,
so editing a source that is not in use re-runs nothing. The `dqn` source trains on
`parents.env`, any Gymnasium task with a flat observation and discrete actions, with
that task's DQN preset `parents.presets.<env>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from . import tasks
from .competence import Competence, describe
from ..artifacts import USER_FOLDER, Checkpoint, in_user_folder, load_parent, load_states
from ..config import Section
from ..errors import RecombError
from ..networks import ACTIVATIONS, Architecture, MLPQNetwork, QNetwork, seeded_qnetwork
from ..parallel import Progress, map_processes
from .dqn import DQNConfig, DQNResult, train_dqn


def _check_network(section: Section, hidden: int, dropout: float) -> None:
    section.require(hidden >= 1, "hidden", "must be ≥ 1")
    section.require(0 <= dropout < 1, "dropout", "must be in [0, 1)")


def _check_dims(section: Section, input_dim: int, output_dim: int) -> None:
    section.require(input_dim >= 1, "input_dim", "must be ≥ 1")
    section.require(output_dim >= 2, "output_dim", "must be ≥ 2 (at least two actions)")


@dataclass(frozen=True)
class BufferConfig(Section):
    n_states: int
    epsilon: float
    seed: int

    def check(self) -> None:
        self.require(self.n_states >= 10, "n_states", "must be ≥ 10")
        self.require(0 <= self.epsilon <= 1, "epsilon", "must be in [0, 1]")


@dataclass(frozen=True)
class Variants(Section):
    """`parents.dqn.variants`: the task variant each parent trains in, {shift key: level} ({} = nominal), and
    where the state buffer's rollouts play (`rollouts`, `also`). Keys and levels are `generalize.physics`'s."""

    a: dict
    b: dict
    rollouts: Literal["own", "crossed"]  # own: each parent in its variant | crossed: also in the other's
    also: list[dict]  # further variants every parent also rolls out in, e.g. [{gravity: 4.0}]

    def settings(self, spec: tasks.Task) -> tuple[tasks.Setting, tasks.Setting, list[tasks.Setting]]:
        """(A's variant, B's variant, the further ones), each checked against the task's shifts."""
        where = self._where
        return (spec.setting(self.a, f"{where}.a"), spec.setting(self.b, f"{where}.b"),
                [spec.setting(v, f"{where}.also[{i}]") for i, v in enumerate(self.also)])


@dataclass(frozen=True)
class DQNSource(Section):
    """`parents.dqn`: two DQN parents (seeds `seed`, `seed + 1`) on `parents.env` and their state buffer."""

    seed: int
    hidden: int
    dropout: float
    workers: int
    variants: Variants
    buffer: BufferConfig

    def check(self) -> None:
        _check_network(self, self.hidden, self.dropout)
        self.require(self.workers >= 1, "workers", "must be ≥ 1")


@dataclass(frozen=True)
class SyntheticSource(Section):
    """`parents.synthetic`: the seeds' harness, randomly initialised parents and N(0, 1) states."""

    seed: int
    hidden: int
    dropout: float
    input_dim: int
    output_dim: int
    n_states: int
    state_seed: int

    def check(self) -> None:
        _check_network(self, self.hidden, self.dropout)
        _check_dims(self, self.input_dim, self.output_dim)
        self.require(self.n_states >= 10, "n_states", "must be ≥ 10")


@dataclass(frozen=True)
class FilesSource(Section):
    """`parents.files`: the user's parents (any plain MLP Q-network: SB3, CleanRL, AgentFarm, a state dict,
    ours) and states, under `data/user/`."""

    parent_a: str
    parent_b: str
    states: str  # "" with task: true → ε-greedy rollouts of both parents in parents.env (`buffer`)
    task: bool  # the parents play parents.env: every return gate runs; false: none can, and the verdict says so
    input_dim: int
    output_dim: int
    activation: str  # of a plain MLP whose file does not say it (a state dict); an SB3 zip names its own
    dropout: float  # an AgentFarm .pt holds weights only: the dropout its BaseQNetwork was built with
    buffer: BufferConfig

    def check(self) -> None:
        for key in ("parent_a", "parent_b") + (("states",) if self.states else ()):
            self.require(in_user_folder(getattr(self, key)), key,
                         f"must be a file under {USER_FOLDER}/ (the folder dvc.yaml tracks)")
        self.require(bool(self.states) or self.task, "states", "is empty: give a states file, or set task: true "
                                                               "to collect states by rollouts in parents.env")
        _check_dims(self, self.input_dim, self.output_dim)
        self.require(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}")
        self.require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


RENAMED = ("the source `cartpole` is now `dqn` (DQN parents on parents.env, any task): rename parents.source "
           "cartpole → dqn, the section parents.cartpole → parents.dqn and parents.dqn.<env> → "
           "parents.presets.<env>")


@dataclass(frozen=True)
class ParentsConfig(Section):
    sections = ("parents",)

    source: Literal["dqn", "synthetic", "files"]
    env: str
    heldout_fraction: float
    split_seed: int
    dqn: DQNSource
    synthetic: SyntheticSource
    files: FilesSource
    presets: dict  # env id → its DQN preset (a DQNConfig mapping); the source dqn uses parents.presets.<env>

    @classmethod
    def from_mapping(cls, data, where: str):
        """A params file written for the old source name gets the rename in one line, not an unknown key."""
        if isinstance(data, dict) and (data.get("source") == "cartpole" or "cartpole" in data):
            raise RecombError(f"{where}.{'source' if data.get('source') == 'cartpole' else 'cartpole'}: {RENAMED}")
        return super().from_mapping(data, where)

    def check(self) -> None:
        self.require(0 < self.heldout_fraction < 1, "heldout_fraction", "must be in (0, 1)")
        presets = {env: DQNConfig.from_mapping(preset, f"{self._where}.presets.{env}")
                   for env, preset in self.presets.items()}
        plays = self.source == "dqn" or (self.source == "files" and self.files.task)
        spec = tasks.task(self.env, f"{self._where}.env") if plays else None  # a task it can play
        if self.source == "dqn":
            self.dqn.variants.settings(spec)
        # whatever the source: dvc.yaml reads parents.presets.<env>.pass_return, the task's return bar
        self.require(self.env in presets, "env", f"no DQN preset parents.presets.{self.env}; add one "
                                                 f"(presets: {', '.join(map(str, presets))})")
        if spec is not None:
            preset = presets[self.env]
            for key in ("pass_return", "stop_return") if spec.max_return is not None else ():
                if not 0 < getattr(preset, key) <= spec.max_return:  # e.g. CartPole: +1 a step, up to its limit
                    raise RecombError(f"{self._where}.presets.{self.env}.{key}: must be in (0, {spec.max_return:g}] "
                                      f"(got {getattr(preset, key)!r})")

    @property
    def preset(self) -> DQNConfig:
        """The DQN preset of `env`."""
        return DQNConfig.from_mapping(self.presets[self.env], f"{self._where}.presets.{self.env}")

    @property
    def chosen(self) -> DQNSource | SyntheticSource | FilesSource:
        return getattr(self, self.source)

    @property
    def input_dim(self) -> int:
        """The state width the chosen source's parents take."""
        return tasks.task(self.env).obs_dim if self.source == "dqn" else self.chosen.input_dim

    def provenance(self) -> dict:
        """The params the parents were made with: the chosen source's section only (what dvc.yaml hashes)."""
        made = {"source": self.source, "heldout_fraction": self.heldout_fraction, "split_seed": self.split_seed,
                self.source: self.chosen.to_dict()}
        if self.source == "dqn":
            made.update(env=self.env, preset=self.preset.to_dict())
        return made


@dataclass
class Buffer:
    """The shared states split into train and held-out, and each state's condition: an index into
    `competence.conditions`, the variant its rollout played (one condition, nominal, for states not from
    rollouts), where each parent's return was measured when they play a task."""

    train: np.ndarray
    heldout: np.ndarray
    train_condition: np.ndarray
    heldout_condition: np.ndarray
    competence: Competence


@dataclass
class ParentSet:
    """Two parents, their state buffer, and how they were made."""

    parents: list[QNetwork | MLPQNetwork]
    buffer: Buffer
    env: str | None
    histories: list[list[dict]]
    summaries: list[dict]
    variants: tuple[tasks.Setting, tasks.Setting] = ((), ())


@dataclass
class ImportedFiles:
    """The files source after checking: two parents of one action count and, if given, their states."""

    parents: list[Checkpoint]
    states: np.ndarray | None


def _split_order(n: int, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle-and-split of range(n) into (train, heldout), both non-empty."""
    if n < 2:
        raise RecombError(f"need at least 2 states to split into train and heldout, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_heldout = min(max(1, round(n * heldout_fraction)), n - 1)
    return order[n_heldout:], order[:n_heldout]


def make_buffer(cfg: ParentsConfig, states: np.ndarray, condition: np.ndarray | None = None,
                competence: Competence | None = None) -> Buffer:
    """The states split once into train and held-out, each with its condition (all nominal when not given)."""
    condition = np.zeros(len(states), dtype=np.int64) if condition is None else condition
    train, heldout = _split_order(len(states), cfg.heldout_fraction, cfg.split_seed)
    return Buffer(states[train], states[heldout], condition[train], condition[heldout],
                  competence or Competence([()], ["nominal"]))


def rollout_plan(variants: Variants, spec: tasks.Task) -> tuple[list[tasks.Setting], list[tuple[int, int]]]:
    """(the buffer's conditions, its rollouts as (parent index, condition index)): each parent in its own
    variant, with `crossed` in the other's too, and both in every further variant (`also`)."""
    own_a, own_b, also = variants.settings(spec)
    conditions = list(dict.fromkeys([own_a, own_b, *also]))
    plan = [(0, own_a), (1, own_b)]
    if variants.rollouts == "crossed":
        plan += [(0, own_b), (1, own_a)]
    plan += [(parent, v) for v in also for parent in (0, 1)]
    return conditions, [(parent, conditions.index(v)) for parent, v in dict.fromkeys(plan)]


def rollout_buffer(cfg: ParentsConfig, spec: tasks.Task, parents: list, buffer: BufferConfig,
                   conditions: list[tasks.Setting], plan: list[tuple[int, int]]) -> Buffer:
    """The planned ε-greedy rollouts' states, and both parents' returns in every condition (their competence
    there, over the preset's evaluation episodes)."""
    states, origin = spec.collect_states([(parents[p], conditions[c]) for p, c in plan], buffer.n_states,
                                         buffer.epsilon, buffer.seed)
    preset = cfg.presets[cfg.env]
    measured = list(dict.fromkeys([*conditions, ()]))  # nominal too, where none was rolled out: the generalist's
    returns = np.stack([spec.returns_in(parent, tuple(measured), preset["eval_episodes"], preset["eval_seed"])
                        for parent in parents])
    multipliers = {key for key, shift in spec.shifts.items() if shift.multiplier}
    competence = Competence(measured, [describe(c, multipliers) for c in measured], returns, preset["eval_seed"],
                            preset["pass_return"])
    return make_buffer(cfg, states, np.array([c for _, c in plan])[origin], competence)


def _train_one(args: tuple[DQNConfig, tasks.Task, Architecture, int, tasks.Setting, int, Progress | None]) -> DQNResult:
    dqn, task, arch, seed, variant, slot, progress = args
    label = f"parent {'AB'[slot]} (seed {seed}), env steps"
    result = train_dqn(dqn, task, arch, seed,
                       (lambda record: progress(slot, label, record["step"], dqn.total_steps)) if progress else None,
                       (variant,))
    if progress:
        progress(slot, label, dqn.total_steps, dqn.total_steps)  # stopped early at stop_return: done all the same
    return result


def dqn_parents(cfg: ParentsConfig, progress: Progress | None = None) -> ParentSet:
    """Two DQN parents (seeds `seed`, `seed + 1`), each in its variant, trained on `parents.env` in parallel, then
    their shared buffer."""
    src, spec = cfg.dqn, tasks.task(cfg.env)
    arch = Architecture(spec.obs_dim, spec.n_actions, src.hidden, src.dropout)
    seeds = [src.seed, src.seed + 1]
    variants = src.variants.settings(spec)[:2]
    jobs = [(cfg.preset, spec, arch, s, v, slot, progress) for slot, (s, v) in enumerate(zip(seeds, variants))]
    results = map_processes(_train_one, jobs, src.workers, start_method="fork")
    parents = [r.network for r in results]
    buffer = rollout_buffer(cfg, spec, parents, src.buffer, *rollout_plan(src.variants, spec))
    summaries = [
        {"seed": s, "greedy_return": r.best_return, "best_step": r.best_step, "env_steps": r.env_steps}
        for s, r in zip(seeds, results)
    ]
    return ParentSet(parents, buffer, cfg.env, [r.history for r in results], summaries, variants)


def synthetic_parents(cfg: ParentsConfig) -> ParentSet:
    """The seeds' harness: randomly initialised parents (seed, seed + 1) and N(0, 1) states."""
    syn = cfg.synthetic
    arch = Architecture(syn.input_dim, syn.output_dim, syn.hidden, syn.dropout)
    parents = [seeded_qnetwork(arch, s).eval() for s in (syn.seed, syn.seed + 1)]
    rng = np.random.default_rng(syn.state_seed)
    states = rng.standard_normal((syn.n_states, syn.input_dim), dtype=np.float32)
    summaries = [{"seed": s} for s in (syn.seed, syn.seed + 1)]
    return ParentSet(parents, make_buffer(cfg, states), None, [[], []], summaries)


MIN_STATES = 4  # one held-out, and train states that still split into training and validation


def import_files(cfg: ParentsConfig) -> ImportedFiles:
    """Read and check the user's parents and states against `parents.files` (and the task's spaces when they
    play `parents.env`); every refusal names the file. The two parents may differ in architecture."""
    files = cfg.files
    loaded = [load_parent(p, files.dropout, files.activation) for p in (files.parent_a, files.parent_b)]
    spec = tasks.task(cfg.env, f"{cfg._where}.env") if files.task else None
    for ckpt in loaded:
        ckpt.expect_dims(files.input_dim, files.output_dim, "params.yaml parents.files")
        if spec is not None:
            ckpt.expect_dims(spec.obs_dim, spec.n_actions, f"parents.env {cfg.env}")
    if not files.states:
        return ImportedFiles(loaded, None)
    states = load_states(files.states, files.input_dim)
    if len(states) < MIN_STATES:
        raise RecombError(f"{files.states}: {len(states)} states; the train/held-out split and the validation split "
                          f"of the train states need at least {MIN_STATES}")
    return ImportedFiles(loaded, states)


def file_parents(cfg: ParentsConfig, imported: ImportedFiles) -> ParentSet:
    """The imported files and their states, or (no states file) rollouts of both parents in the task."""
    parents = [c.model for c in imported.parents]
    env = cfg.env if cfg.files.task else None
    if imported.states is None:
        buffer = rollout_buffer(cfg, tasks.task(cfg.env), parents, cfg.files.buffer, [()], [(0, 0), (1, 0)])
    else:
        buffer = make_buffer(cfg, imported.states)
    summaries = [{"file": c.meta.get("file", str(c.path))} for c in imported.parents]
    return ParentSet(parents, buffer, env, [[], []], summaries)


def make_parents(cfg: ParentsConfig, imported: ImportedFiles | None = None,
                 progress: Progress | None = None) -> ParentSet:
    """The chosen source's parents; the files source needs its `import_files` result (the `inputs` stage's).
    `progress` follows the DQN training of the dqn source."""
    if cfg.source == "files":
        if imported is None:
            raise RecombError("params.yaml: parents.source is files but no imported files were given")
        return file_parents(cfg, imported)
    torch.manual_seed(cfg.chosen.seed)
    return dqn_parents(cfg, progress) if cfg.source == "dqn" else synthetic_parents(cfg)
