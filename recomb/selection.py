"""The one rule by which anything is chosen: on validation states drawn from `train`.

Every chooser — the fine-tuned child's best epoch, the search ranking and its
recommendation, multigen's promotion, the `recomb leaderboard` — reads the figures
made here: agreement on a seeded validation split of the TRAIN states (never
trained on) and the greedy return over evaluation episodes disjoint from the
reported ones. Held-out states only report the chosen networks' figures, so a
best-of-N figure on them is not inflated by having picked the N on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .config import Section


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded train/validation split of range(n); at least one state on each side."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return perm[n_val:], perm[:n_val]


@dataclass(frozen=True)
class SelectionConfig(Section):
    """The `selection` params section."""

    sections = ("selection",)

    @classmethod
    def validate(cls, params: dict) -> SelectionConfig:
        """The section, and its episodes disjoint from the reported ones (validate_recombination's, whose own
        section checks their types)."""
        cfg = cls.from_params(params, "selection")
        reported = params.get("validate_recombination") or {}
        seed, episodes = reported.get("eval_seed"), reported.get("eval_episodes")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (seed, episodes)):
            cfg.check_disjoint(seed, episodes, "validate_recombination")
        return cfg

    val_fraction: float   # share of the train states held back to choose with
    seed: int             # draws that split
    eval_episodes: int    # episodes of the return a chooser reads
    eval_seed: int        # their env seeds: eval_seed .. eval_seed + eval_episodes − 1

    def check(self) -> None:
        self.require(0 < self.val_fraction < 1, "val_fraction", "must be in (0, 1)")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")

    def check_disjoint(self, reported_seed: int, reported_episodes: int, reported_key: str) -> None:
        """Choosing and reporting must not play the same episodes (else the reported return is picked on)."""
        overlap = (self.eval_seed < reported_seed + reported_episodes
                   and reported_seed < self.eval_seed + self.eval_episodes)
        self.require(not overlap, "eval_seed",
                     f"episodes {self.eval_seed}..{self.eval_seed + self.eval_episodes - 1} overlap the reported "
                     f"ones of {reported_key} ({reported_seed}..{reported_seed + reported_episodes - 1})")


def split(states: torch.Tensor, cfg: SelectionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(states to train on, validation states to choose with): a seeded split of the train states."""
    train_idx, val_idx = split_indices(len(states), cfg.val_fraction, cfg.seed)
    return states[train_idx], states[val_idx]


def epoch_key(row: dict, teacher_mode: str) -> tuple:
    """How a fine-tuning epoch ranks (higher is better).

    With both parents as teachers the goal is the primary, min(agreement A, B): the
    epoch with the best validation primary wins, ties broken by validation loss (a
    loss against targets that move every epoch in balanced mode says little on its
    own). With parent A alone, agreement with A, then loss.
    """
    goal = row["val_agreement_a"] if teacher_mode == "a" else row["val_primary"]
    return goal, -row["val_loss"]


def reaches_bar(value: float | None, bar: float | None) -> bool:
    return value is not None and bar is not None and value >= bar


def rank_key(row: dict, min_return: float | None) -> tuple:
    """How a child ranks (lower sorts first): it acts, then validation primary, then validation return.

    A child that reaches the return bar on the choosing episodes ranks above one
    that does not, whatever its agreement: one that agrees with both parents on
    most states can still drop the pole. Without an environment only the
    validation primary counts. The name breaks exact ties, so order never flips.
    """
    ret = row["val_return"]
    return (not reaches_bar(ret, min_return), -row["val_primary"], -(ret if ret is not None else -np.inf),
            row["experiment"])


def rank(rows: list[dict], min_return: float | None) -> list[dict]:
    """Rows best first by `rank_key`, each with its `rank`."""
    return [dict(row, rank=i) for i, row in enumerate(sorted(rows, key=lambda r: rank_key(r, min_return)), start=1)]


def mark_ties(rows: list[dict], min_return: float | None,
              difference: Callable[[dict, dict], tuple[float, float]] | None = None) -> list[dict]:
    """Flag `tied` the ranked rows the data cannot tell from the leader.

    A row is tied when it is on the leader's side of the return bar and the
    interval of (leader's validation primary − its own) contains 0. `difference`
    gives that paired interval (both scored on the same states); without it (rows
    read back from reports) the unpaired rule is used: the row's own interval
    reaches the leader's value.
    """
    leader = rows[0]
    marked = []
    for row in rows:
        same_side = reaches_bar(row["val_return"], min_return) == reaches_bar(leader["val_return"], min_return)
        if row is leader or not same_side:
            tied = False
        elif difference is not None:
            low, high = difference(leader, row)
            tied = low <= 0 <= high
        else:
            tied = row["val_primary_high"] >= leader["val_primary"]
        marked.append(dict(row, tied=tied))
    return marked
