"""Where parents and the shared state buffer come from: CartPole DQN, a synthetic harness, or files.

Whatever the source, the result is the same: two float parents and a state
buffer split once into `train` and `heldout`. Held-out states are never used for
training, calibration or fine-tuning anywhere downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from . import envs
from .artifacts import Checkpoint, load_parent, load_states
from .config import Section
from .dqn import DQNConfig, DQNResult, train_dqn
from .errors import RecombError
from .networks import Architecture, QNetwork, seeded_qnetwork
from .parallel import map_processes


@dataclass(frozen=True)
class SyntheticConfig(Section):
    input_dim: int
    output_dim: int
    n_states: int
    state_seed: int

    def check(self) -> None:
        self.require(self.input_dim >= 1, "input_dim", "must be ≥ 1")
        self.require(self.output_dim >= 2, "output_dim", "must be ≥ 2 (at least two actions)")
        self.require(self.n_states >= 10, "n_states", "must be ≥ 10")


@dataclass(frozen=True)
class FilesConfig(Section):
    parent_a: str
    parent_b: str
    states: str
    input_dim: int
    output_dim: int


@dataclass(frozen=True)
class BufferConfig(Section):
    n_states: int
    epsilon: float
    seed: int

    def check(self) -> None:
        self.require(self.n_states >= 10, "n_states", "must be ≥ 10")
        self.require(0 <= self.epsilon <= 1, "epsilon", "must be in [0, 1]")


@dataclass(frozen=True)
class ParentsConfig(Section):
    source: Literal["cartpole", "synthetic", "files"]
    seed: int
    hidden: int
    dropout: float
    heldout_fraction: float
    split_seed: int
    workers: int
    dqn: DQNConfig
    buffer: BufferConfig
    synthetic: SyntheticConfig
    files: FilesConfig

    def check(self) -> None:
        self.require(self.hidden >= 1, "hidden", "must be ≥ 1")
        self.require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        self.require(0 < self.heldout_fraction < 1, "heldout_fraction", "must be in (0, 1)")
        self.require(self.workers >= 1, "workers", "must be ≥ 1")


@dataclass
class ParentSet:
    """Two parents, the states to learn from and the states to judge on, and how they were made."""

    parents: list[QNetwork]
    train: np.ndarray
    heldout: np.ndarray
    env: str | None
    histories: list[list[dict]]
    summaries: list[dict]


def split_states(states: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle-and-split into (train, heldout), both non-empty."""
    if len(states) < 2:
        raise RecombError(f"need at least 2 states to split into train and heldout, got {len(states)}")
    order = np.random.default_rng(seed).permutation(len(states))
    n_heldout = min(max(1, round(len(states) * heldout_fraction)), len(states) - 1)
    return states[order[n_heldout:]], states[order[:n_heldout]]


def _train_one(args: tuple[DQNConfig, Architecture, int]) -> DQNResult:
    return train_dqn(*args)


def cartpole_parents(cfg: ParentsConfig) -> ParentSet:
    """Two DQN parents (seeds `seed`, `seed + 1`) trained in parallel, then their shared buffer."""
    arch = Architecture(envs.OBS_DIM, envs.N_ACTIONS, cfg.hidden, cfg.dropout)
    seeds = [cfg.seed, cfg.seed + 1]
    results = map_processes(_train_one, [(cfg.dqn, arch, s) for s in seeds], cfg.workers)
    parents = [r.network for r in results]
    states = envs.collect_states(parents, cfg.buffer.n_states, cfg.buffer.epsilon, cfg.buffer.seed)
    train, heldout = split_states(states, cfg.heldout_fraction, cfg.split_seed)
    summaries = [
        {"seed": s, "greedy_return": r.best_return, "best_step": r.best_step, "env_steps": r.env_steps}
        for s, r in zip(seeds, results)
    ]
    return ParentSet(parents, train, heldout, envs.ENV_ID, [r.history for r in results], summaries)


def synthetic_parents(cfg: ParentsConfig) -> ParentSet:
    """The seeds' harness: randomly initialised parents (seed, seed + 1) and N(0, 1) states."""
    syn = cfg.synthetic
    arch = Architecture(syn.input_dim, syn.output_dim, cfg.hidden, cfg.dropout)
    parents = [seeded_qnetwork(arch, s).eval() for s in (cfg.seed, cfg.seed + 1)]
    rng = np.random.default_rng(syn.state_seed)
    states = rng.standard_normal((syn.n_states, syn.input_dim), dtype=np.float32)
    train, heldout = split_states(states, cfg.heldout_fraction, cfg.split_seed)
    summaries = [{"seed": s} for s in (cfg.seed, cfg.seed + 1)]
    return ParentSet(parents, train, heldout, None, [[], []], summaries)


MIN_STATES = 4  # one held-out, and train states that still split into training and validation


def file_parents(cfg: ParentsConfig) -> ParentSet:
    """User-given parents (ours or AgentFarm's) and states, checked against the params."""
    files = cfg.files
    loaded: list[Checkpoint] = [load_parent(p, cfg.dropout) for p in (files.parent_a, files.parent_b)]
    for ckpt in loaded:
        ckpt.expect_dims(files.input_dim, files.output_dim, "params.yaml parents.files")
    if loaded[0].arch.hidden != loaded[1].arch.hidden:
        raise RecombError(
            f"{files.parent_b}: hidden width {loaded[1].arch.hidden} differs from parent A's {loaded[0].arch.hidden}"
        )
    if loaded[0].arch.hidden != cfg.hidden:
        raise RecombError(f"{files.parent_a}: hidden width is {loaded[0].arch.hidden} but params.yaml "
                          f"parents.hidden says {cfg.hidden}")
    states = load_states(files.states, files.input_dim)
    if len(states) < MIN_STATES:
        raise RecombError(f"{files.states}: {len(states)} states; the train/held-out split and the validation split "
                          f"of the train states need at least {MIN_STATES}")
    train, heldout = split_states(states, cfg.heldout_fraction, cfg.split_seed)
    summaries = [{"file": p} for p in (files.parent_a, files.parent_b)]
    env = loaded[0].meta.get("env")
    return ParentSet([c.model for c in loaded], train, heldout, env, [[], []], summaries)


SOURCES = {"cartpole": cartpole_parents, "synthetic": synthetic_parents, "files": file_parents}


def make_parents(cfg: ParentsConfig) -> ParentSet:
    torch.manual_seed(cfg.seed)
    return SOURCES[cfg.source](cfg)
