"""Who can do what: the conditions (task variants) a state buffer was collected in, each parent's return there,
and, per condition, the parent that is measurably the more competent one.

The `parents` stage writes it beside the states (`Competence.to_json`); `finetune`'s `competent` teacher mode
reads it, so that where the parents disagree on a state, the parent that plays the state's condition better
teaches it. A condition where neither parent is measurably better (the paired interval of the difference of
their returns holds 0), or whose returns were never measured, is left to the confidence rule.
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

    def to_json(self) -> dict:
        return {"conditions": [{"name": name, "setting": dict(setting)}
                               for name, setting in zip(self.names, self.conditions)],
                "episode_seed": self.episode_seed,
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
        return cls(conditions, names, returns, data.get("episode_seed"))

    def verdicts(self, cfg: UncertaintyConfig) -> np.ndarray:
        """Per condition A_BETTER, B_BETTER or TIE: a parent is the more competent one where the interval of its
        paired return advantage over the other excludes 0."""
        if self.returns is None:
            return np.full(len(self.conditions), TIE)
        advantage = [mean_interval(a - b, cfg) for a, b in zip(*self.returns)]
        return np.array([A_BETTER if d["low"] > 0 else B_BETTER if d["high"] < 0 else TIE for d in advantage])
