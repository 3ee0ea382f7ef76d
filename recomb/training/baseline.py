"""The compute-matched DQN baseline: one network trained from scratch on both parents' variants with the
environment steps the two parents and their state buffer cost together.

A recombined child costs those steps before any crossover; the plain alternative is to spend them on one DQN
that plays both variants. The child must beat this baseline to show that recombination, not just compute, made
it. The baseline shares the parents' task, preset and architecture; only its seed and budget are its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal

from . import tasks
from .dqn import DQNResult, train_dqn
from .parents import ParentsConfig
from ..config import Section
from ..errors import RecombError
from ..networks import Architecture


@dataclass(frozen=True)
class BaselineConfig(Section):
    """`baseline`: the compute-matched DQN's seed and environment-step budget."""

    sections = ("baseline",)

    seed: int
    budget: int | Literal["matched"]  # matched: both parents' env steps + the buffer's states | a fixed count

    def check(self) -> None:
        self.require(self.budget == "matched" or self.budget >= 1, "budget",
                     "must be matched or a number of environment steps ≥ 1")


def matched_parts(metrics: dict[str, dict], n_states: int) -> dict[str, int]:
    """What the parents cost in environment steps: each one's training (`metrics.env_steps` of its sidecar,
    by pair) and the state buffer's rollouts (one step a state)."""
    parts = {}
    for pair, recorded in metrics.items():
        steps = recorded.get("env_steps") if isinstance(recorded, dict) else None
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise RecombError(f"parent {pair}: its sidecar records no metrics.env_steps, which baseline.budget "
                              f"matched counts; re-run stage parents")
        parts[f"parent_{pair}"] = steps
    return {**parts, "buffer_states": n_states}


def budget_steps(cfg: BaselineConfig, parts: dict[str, int]) -> int:
    """The environment steps the baseline trains for: the parts' sum when matched, else the fixed budget."""
    return sum(parts.values()) if cfg.budget == "matched" else cfg.budget


def mixture(parents: ParentsConfig) -> tuple[tasks.Setting, ...]:
    """The variants the baseline's copies take turns in: A's, then B's when it differs."""
    a, b, _ = parents.dqn.variants.settings(tasks.task(parents.env))
    return tuple(dict.fromkeys((a, b)))


def train_baseline(cfg: BaselineConfig, parents: ParentsConfig, steps: int,
                   on_eval: Callable[[dict], None] | None = None) -> DQNResult:
    """The baseline: the parents' preset for `steps` environment steps, their architecture, both variants and
    its own seed. Missing `pass_return` is its result, not an error: that is what a child has to beat."""
    spec, src = tasks.task(parents.env), parents.dqn
    arch = Architecture(spec.obs_dim, spec.n_actions, src.hidden, src.dropout)
    preset = dataclasses.replace(parents.preset, total_steps=steps)
    return train_dqn(preset, spec, arch, cfg.seed, on_eval, mixture(parents), require_pass=False)
