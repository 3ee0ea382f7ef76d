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
class DQNSource(Section):
    """`parents.dqn`: two DQN parents (seeds `seed`, `seed + 1`) on `parents.env` and their state buffer."""

    seed: int
    hidden: int
    dropout: float
    workers: int
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
class ParentSet:
    """Two parents, the states to learn from and the states to judge on, and how they were made."""

    parents: list[QNetwork | MLPQNetwork]
    train: np.ndarray
    heldout: np.ndarray
    env: str | None
    histories: list[list[dict]]
    summaries: list[dict]


@dataclass
class ImportedFiles:
    """The files source after checking: two parents of one action count and, if given, their states."""

    parents: list[Checkpoint]
    states: np.ndarray | None


def split_states(states: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle-and-split into (train, heldout), both non-empty."""
    if len(states) < 2:
        raise RecombError(f"need at least 2 states to split into train and heldout, got {len(states)}")
    order = np.random.default_rng(seed).permutation(len(states))
    n_heldout = min(max(1, round(len(states) * heldout_fraction)), len(states) - 1)
    return states[order[n_heldout:]], states[order[:n_heldout]]


def _train_one(args: tuple[DQNConfig, tasks.Task, Architecture, int, int, Progress | None]) -> DQNResult:
    dqn, task, arch, seed, slot, progress = args
    label = f"parent {'AB'[slot]} (seed {seed}), env steps"
    result = train_dqn(dqn, task, arch, seed,
                       (lambda record: progress(slot, label, record["step"], dqn.total_steps)) if progress else None)
    if progress:
        progress(slot, label, dqn.total_steps, dqn.total_steps)  # stopped early at stop_return: done all the same
    return result


def dqn_parents(cfg: ParentsConfig, progress: Progress | None = None) -> ParentSet:
    """Two DQN parents (seeds `seed`, `seed + 1`) trained on `parents.env` in parallel, then their shared buffer."""
    src, spec = cfg.dqn, tasks.task(cfg.env)
    arch = Architecture(spec.obs_dim, spec.n_actions, src.hidden, src.dropout)
    seeds = [src.seed, src.seed + 1]
    jobs = [(cfg.preset, spec, arch, s, slot, progress) for slot, s in enumerate(seeds)]
    results = map_processes(_train_one, jobs, src.workers, start_method="fork")
    parents = [r.network for r in results]
    states = spec.collect_states(parents, src.buffer.n_states, src.buffer.epsilon, src.buffer.seed)
    train, heldout = split_states(states, cfg.heldout_fraction, cfg.split_seed)
    summaries = [
        {"seed": s, "greedy_return": r.best_return, "best_step": r.best_step, "env_steps": r.env_steps}
        for s, r in zip(seeds, results)
    ]
    return ParentSet(parents, train, heldout, cfg.env, [r.history for r in results], summaries)


def synthetic_parents(cfg: ParentsConfig) -> ParentSet:
    """The seeds' harness: randomly initialised parents (seed, seed + 1) and N(0, 1) states."""
    syn = cfg.synthetic
    arch = Architecture(syn.input_dim, syn.output_dim, syn.hidden, syn.dropout)
    parents = [seeded_qnetwork(arch, s).eval() for s in (syn.seed, syn.seed + 1)]
    rng = np.random.default_rng(syn.state_seed)
    states = rng.standard_normal((syn.n_states, syn.input_dim), dtype=np.float32)
    train, heldout = split_states(states, cfg.heldout_fraction, cfg.split_seed)
    summaries = [{"seed": s} for s in (syn.seed, syn.seed + 1)]
    return ParentSet(parents, train, heldout, None, [[], []], summaries)


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
    states = imported.states
    if states is None:
        buffer = cfg.files.buffer
        states = tasks.task(cfg.env).collect_states(parents, buffer.n_states, buffer.epsilon, buffer.seed)
    train, heldout = split_states(states, cfg.heldout_fraction, cfg.split_seed)
    summaries = [{"file": c.meta.get("file", str(c.path))} for c in imported.parents]
    return ParentSet(parents, train, heldout, env, [[], []], summaries)


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
