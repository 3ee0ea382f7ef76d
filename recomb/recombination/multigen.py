"""Multi-generation search: the best children of one grid become the next grid's parents.

Parent selection follows the seeds, ranked by the one rule of `selection.rank`
(validation states and choosing episodes, never the held-out ones): the best child
becomes parent A; parent B is the rank-2 child within the top `keep_top_k` (`best`)
or always the original B (`best_vs_original`). Promoted children get Gaussian mutation; the
original B never does. A generation's children are fine-tuned against its parents
(`teachers: promoted`, the seeds') or against the original parents (`original`: the
promoted pair only initialises the crossover, the targets stay what every child is
scored on). With `elitism`, the best child so far competes in each later ranking,
so the best child of a generation is never one the ranking puts below an earlier
one. Unlike the seeds, every child of every generation is scored against the
ORIGINAL parents (the `Scoring` roles never change), so a rising curve
means the children got better, not that the yardstick moved with them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch

from ..config import Section
from ..networks import QNetwork
from .search import GridPoint, Outcome, Pair


@dataclass(frozen=True)
class MutationConfig(Section):
    std: float       # Gaussian noise std added to the chosen entries (0 = no mutation)
    fraction: float  # share of each tensor's entries perturbed
    seed: int

    def check(self) -> None:
        self.require(self.std >= 0, "std", "must be ≥ 0 (0 = off)")
        self.require(0 < self.fraction <= 1, "fraction", "must be in (0, 1]")


@dataclass(frozen=True)
class MultigenConfig(Section):
    sections = ("multigen",)

    @classmethod
    def validate(cls, params: dict) -> MultigenConfig:
        """The section, and teachers whose competence is known when the teacher mode reads it."""
        cfg = cls.from_params(params, "multigen")
        competent = (params.get("finetune") or {}).get("teacher_mode") == "competent"
        cfg.require(not (competent and cfg.teachers == "promoted"), "teachers",
                    "must be original with finetune.teacher_mode competent (a promoted child's competence in each "
                    "condition was never measured)")
        return cfg

    generations: int
    keep_top_k: int
    selection_strategy: Literal["best", "best_vs_original"]
    teachers: Literal["promoted", "original"]  # whom a generation's children are fine-tuned against
    elitism: bool      # the best child so far competes in every later generation's ranking
    seed_offset: int   # generation g adds g·seed_offset to every recipe seed and the fine-tune seed
    mutation: MutationConfig

    def check(self) -> None:
        self.require(self.generations >= 1, "generations", "must be ≥ 1")
        self.require(self.keep_top_k >= 1, "keep_top_k", "must be ≥ 1")
        self.require(self.seed_offset >= 0, "seed_offset", "must be ≥ 0")


def mutate(net: QNetwork, cfg: MutationConfig, seed: int) -> QNetwork:
    """A copy of `net` with N(0, std²) noise on a seeded random `fraction` of every tensor's entries."""
    child = QNetwork(net.arch)
    child.load_state_dict(net.state_dict())
    if cfg.std == 0:
        return child.eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in child.parameters():
            chosen = torch.rand(param.shape, generator=gen) < cfg.fraction
            param.add_(torch.randn(param.shape, generator=gen) * cfg.std * chosen)
    return child.eval()


def generation_points(points: list[GridPoint], generation: int, offset: int) -> list[GridPoint]:
    """The grid of `generation`: the seeds of recipes that read one shifted by generation·offset, ids prefixed."""
    shift = generation * offset
    return [GridPoint(f"g{generation}_{p.child_id}",
                      replace(p.recipe, seed=p.recipe.seed + shift) if "seed" in p.recipe.reads else p.recipe,
                      p.regime) for p in points]


def generation_finetune(cfgs: dict, generation: int, offset: int) -> dict:
    return {regime: replace(cfg, seed=cfg.seed + generation * offset) for regime, cfg in cfgs.items()}


@dataclass
class Promotion:
    pair: Pair
    names: tuple[str, str]


def promote(rows: list[dict], outcomes: dict[str, Outcome], original: Pair, cfg: MultigenConfig,
            generation: int) -> Promotion:
    """The next generation's parents from this generation's ranked rows."""
    def promoted(child_id: str, slot: int) -> QNetwork:
        return mutate(outcomes[child_id].result.child, cfg.mutation, cfg.mutation.seed + 1000 * generation + slot)

    best = rows[0]["experiment"]
    a = promoted(best, 0)
    top = [r["experiment"] for r in rows[:cfg.keep_top_k]]
    if cfg.selection_strategy == "best" and len(top) >= 2:
        b, names = promoted(top[1], 1), (best, top[1])
    else:
        b, names = original.cross_b, (best, "original_B")
    if cfg.teachers == "original":
        return Promotion(Pair(a, b, original.teach_a, original.teach_b, original.train_states, original.sides), names)
    return Promotion(Pair(a, b, a, b if names[1] != "original_B" else original.teach_b, original.train_states), names)


def evolve(points: list[GridPoint], finetune_cfgs: dict, original: Pair, cfg: MultigenConfig,
           run: Callable[[list[GridPoint], Pair, dict], dict[str, Outcome]],
           ranked: Callable[[list[GridPoint], dict[str, Outcome]], list[dict]]) -> tuple[list[dict], list[dict], dict]:
    """Run `cfg.generations` grids; returns (lineage, per-generation summary, best child per generation).

    `run(points, pair, finetune_cfgs)` trains and scores one grid; `ranked` turns its
    outcomes into leaderboard rows (best first), scored against the original parents.
    """
    lineage, summary, best_children = [], [], {}
    pair, names = original, ("original_A", "original_B")
    elite: tuple[GridPoint, Outcome] | None = None
    for generation in range(cfg.generations):
        gen_points = generation_points(points, generation, cfg.seed_offset)
        outcomes = run(gen_points, pair, generation_finetune(finetune_cfgs, generation, cfg.seed_offset))
        candidates = list(gen_points)
        if elite is not None:  # scored against the same original parents, so its figures stand as they are
            candidates.append(elite[0])
            outcomes = {**outcomes, elite[0].child_id: elite[1]}
        rows = ranked(candidates, outcomes)
        promotion = promote(rows, outcomes, original, cfg, generation)
        by_id = {p.child_id: p for p in candidates}
        for row in rows:
            point = by_id[row["experiment"]]
            role = [slot for slot, name in zip("AB", promotion.names) if name == row["experiment"]]
            lineage.append({**row, "generation": generation, "parent_a": names[0], "parent_b": names[1],
                            "recipe": point.recipe.label, "promoted_as": role[0] if role else None,
                            "carried_over": elite is not None and point is elite[0]})
        returns = [r["online_return"] for r in rows if r["online_return"] is not None]
        best = rows[0]
        summary.append({"generation": generation, "parent_a": names[0], "parent_b": names[1],
                        "best_child": best["experiment"], "best_val_primary": best["val_primary"],
                        **{f"best_{key}": best[key] for key in (
                            "primary", "primary_low", "primary_high", "primary_over_bound", "primary_over_bound_low",
                            "primary_over_bound_high", "gain_over_copy", "gain_over_copy_low", "gain_over_copy_high",
                            "online_return", "online_return_low", "online_return_high")},
                        "max_online_return": max(returns) if returns else None,
                        "mean_primary": sum(r["primary"] for r in rows) / len(rows)})
        best_children[generation] = outcomes[best["experiment"]].result.child
        if cfg.elitism:
            elite = by_id[best["experiment"]], outcomes[best["experiment"]]
        pair, names = promotion.pair, promotion.names
    return lineage, summary, best_children
