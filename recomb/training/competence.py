"""Who can do what: the conditions (task variants) a state buffer was collected in, each parent's return there,
and, per condition, the parent that teaches its states in the `competent` teacher mode.

The `parents` stage writes it beside the states (`Competence.to_json`); `finetune` reads it. A parent is the
competent one in a condition where it passes the task's bar, the other does not, and its return is measurably
higher (the paired interval of the difference excludes 0). Where both pass or neither is measurably better, the
*generalist* teaches: the parent that passes more of the measured conditions (nominal always among them), or,
passing as many, whose mean return over them is measurably higher. Only when that too is a tie (or nothing was
measured) does the confidence rule of `balanced` split the disagreements.

Why not split ties by confidence, as `balanced` does: a memoryless child sees the observation, not the variant,
and two specialists' rollouts overlap in observation space. Two parents that each solve a variant can disagree
on 40 % of those states (CartPole, force ×0.25 against pole length ×3); a child that follows each on half of
them follows neither's policy, and failed nominal and both variants on the pairs we measured (README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecombError
from ..stats import UncertaintyConfig, mean_interval

A_BETTER, TIE, B_BETTER = 1, 0, -1


def describe(setting: tuple[tuple[str, float], ...], multipliers: set[str]) -> str:
    """A variant's name for reports: `nominal`, `gravity ×4`, `wind_power 10`."""
    return ", ".join(f"{key} ×{level:g}" if key in multipliers else f"{key} {level:g}"
                     for key, level in setting) or "nominal"


@dataclass(frozen=True)
class Competence:
    """The buffer's conditions, their names, and both parents' returns in each: (2, conditions, episodes), played
    over the same fixed-seed episodes (None when the parents play no task)."""

    conditions: list[tuple[tuple[str, float], ...]]  # each a task variant (`tasks.Setting`)
    names: list[str]
    returns: np.ndarray | None = None
    episode_seed: int | None = None
    pass_return: float | None = None  # the task's bar: passing it is being competent there

    def to_json(self) -> dict:
        return {"conditions": [{"name": name, "setting": dict(setting)}
                               for name, setting in zip(self.names, self.conditions)],
                "episode_seed": self.episode_seed, "pass_return": self.pass_return,
                "returns": None if self.returns is None else {pair: self.returns[i].tolist()
                                                              for i, pair in enumerate("AB")}}

    @classmethod
    def from_json(cls, data, where: str) -> Competence:
        try:
            conditions = [tuple(sorted((str(k), float(v)) for k, v in row["setting"].items()))
                          for row in data["conditions"]]
            names = [str(row["name"]) for row in data["conditions"]]
            returns = None if data["returns"] is None else np.array([data["returns"][p] for p in "AB"], dtype=float)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RecombError(f"{where}: not a conditions file (conditions, returns per parent)") from None
        if not conditions or (returns is not None and (returns.ndim != 3 or returns.shape[1] != len(conditions))):
            raise RecombError(f"{where}: expected returns of shape (2, {len(conditions)}, episodes)")
        if returns is not None and not isinstance(data.get("pass_return"), (int, float)):
            raise RecombError(f"{where}: returns without the task's bar (pass_return)")
        return cls(conditions, names, returns, data.get("episode_seed"), data.get("pass_return"))

    def generalist(self, cfg: UncertaintyConfig) -> int:
        """A_BETTER or B_BETTER for the parent that passes more measured conditions or, passing as many, has the
        measurably higher mean return over them; TIE otherwise (or when nothing was measured)."""
        if self.returns is None:
            return TIE
        passes = (self.returns.mean(-1) >= self.pass_return).sum(-1)
        if passes[0] != passes[1]:
            return A_BETTER if passes[0] > passes[1] else B_BETTER
        return _measurably((self.returns[0] - self.returns[1]).mean(0), cfg)

    def verdicts(self, cfg: UncertaintyConfig) -> np.ndarray:
        """Per condition the teaching parent, A_BETTER or B_BETTER, or TIE (see the module's docstring)."""
        if self.returns is None:
            return np.full(len(self.conditions), TIE)
        fallback = self.generalist(cfg)
        found = []
        for a, b in zip(*self.returns):
            better = _measurably(a - b, cfg)
            loser_fails = (b if better == A_BETTER else a).mean() < self.pass_return
            found.append(better if better != TIE and loser_fails else fallback)
        return np.array(found)


def _measurably(advantage: np.ndarray, cfg: UncertaintyConfig) -> int:
    """A_BETTER where A's paired advantage is above 0 with the interval, B_BETTER where below, else TIE."""
    found = mean_interval(advantage, cfg)
    return A_BETTER if found["low"] > 0 else B_BETTER if found["high"] < 0 else TIE
