"""The crossover × fine-tune grid in one process: presets, a vectorized run, scoring.

A grid point is a crossover recipe (mode, alpha, seed) and a fine-tune regime. Every
other knob comes from the pipeline's own `crossover`, `finetune` and
`validate_recombination` sections, so a child of the grid is the very child a DVC
experiment with those `-S` overrides builds, with the same metrics.

Speed: children of one regime train side by side in one `QNetworkStack` (a step
costs about the same for 7 members as for 1), and these stacks are spread over
worker processes (forked: a spawned worker would spend ~2 s importing torch) or
Ray tasks. Stacking does not change any child's bits (see `finetune.finetune`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from ..config import Section
from ..errors import RecombError
from ..evaluation.leaderboard import ranked, row_from_report
from ..selection import SelectionConfig
from ..evaluation.validation import ValidateRecombConfig, mean_returns, online_returns, recombination_offline, selection_figures
from ..networks import QNetwork
from ..parallel import Progress, map_processes, map_ray
from ..quantization.int8 import Int8QNetwork
from ..quantization.quantize import PTQConfig
from ..stats import UncertaintyConfig, primary_difference_interval
from ..training.finetune import FinetuneConfig, FinetuneResult, finetune, int8_child
from ..training.tasks import Task
from .crossover import OPERATORS, CrossoverConfig, crossover


@dataclass(frozen=True)
class Recipe:
    """One crossover recipe; `layer` ignores alpha and seed, only `random` uses the seed."""

    mode: str
    alpha: float
    seed: int

    @property
    def label(self) -> str:
        if self.mode == "layer":
            return "layer"
        alpha = f"a{self.alpha:.2f}".replace(".", "p")
        return f"{self.mode}_{alpha}_s{self.seed}" if self.mode == "random" else f"{self.mode}_{alpha}"


def parse_recipe(text: str, where: str) -> Recipe:
    """`mode [alpha [seed]]` as written in a params preset: `layer`, `weighted 0.3`, `random 0.5 1`.

    Each mode takes exactly what it uses: `layer` nothing, `random` alpha and seed,
    every other mode alpha; so a preset never lists a knob that does nothing.
    """
    words = str(text).split()
    if not words or words[0] not in OPERATORS:
        raise RecombError(f"{where}: {text!r}: the mode must be one of {', '.join(OPERATORS)}")
    mode, numbers = words[0], words[1:]
    wanted = 0 if mode == "layer" else 2 if mode == "random" else 1
    usage = {0: "layer", 1: f"{mode} <alpha>", 2: "random <alpha> <seed>"}[wanted]
    try:
        alpha = float(numbers[0]) if wanted else 0.5
        seed = int(numbers[1]) if wanted == 2 else 0
    except (IndexError, ValueError):
        raise RecombError(f"{where}: {text!r}: write it as `{usage}`") from None
    if len(numbers) != wanted or not 0 <= alpha <= 1:
        raise RecombError(f"{where}: {text!r}: write it as `{usage}` with alpha in [0, 1]")
    return Recipe(mode, alpha, seed)


@dataclass(frozen=True)
class Preset(Section):
    """A named grid of params `search.presets`: crossover recipes × fine-tune regimes."""

    recipes: list[str]
    regimes: list[str]

    def check(self) -> None:
        self.require(bool(self.recipes), "recipes", "needs at least one recipe")
        self.require(bool(self.regimes), "regimes", "needs at least one regime")
        for i, text in enumerate(self.recipes):
            parse_recipe(text, f"{self._where}.recipes[{i}]")

    def grid(self) -> tuple[list[Recipe], list[str]]:
        return [parse_recipe(t, f"{self._where}.recipes[{i}]") for i, t in enumerate(self.recipes)], self.regimes


@dataclass(frozen=True)
class SearchConfig(Section):
    sections = ("search",)

    @classmethod
    def validate(cls, params: dict) -> list[GridPoint]:
        """The section, and its grid against the regimes it names."""
        return grid(cls.from_params(params, "search"), {name: None for name in params["regimes"]})

    preset: str               # a name of `presets`, or custom
    presets: dict
    modes: list[str]          # custom grid: modes × alphas × seeds (deduplicated), × regimes
    alphas: list[float]
    seeds: list[int]
    regimes: list[str]
    max_runs: int             # first N grid points only; 0 = all
    degenerate_threshold: float
    workers: int
    backend: Literal["local", "ray"]
    ray_address: str          # '' = start a local Ray

    def check(self) -> None:
        names = [*self.presets, "custom"]
        self.require(self.preset in names, "preset", f"must be one of {', '.join(names)}")
        for name, body in self.presets.items():
            Preset.from_mapping(body, f"{self._where}.presets.{name}")
        unknown = sorted(set(self.modes) - set(OPERATORS))
        self.require(not unknown, "modes", f"must be among {', '.join(OPERATORS)}")
        self.require(all(0 <= a <= 1 for a in self.alphas), "alphas", "must be in [0, 1]")
        if self.preset == "custom":
            for key in ("modes", "alphas", "seeds", "regimes"):
                self.require(bool(getattr(self, key)), key, "the custom grid needs at least one")
        self.require(self.max_runs >= 0, "max_runs", "must be ≥ 0 (0 = all)")
        self.require(0 <= self.degenerate_threshold <= 1, "degenerate_threshold", "must be in [0, 1] (0 = off)")
        self.require(self.workers >= 1, "workers", "must be ≥ 1")


@dataclass(frozen=True)
class GridPoint:
    child_id: str
    recipe: Recipe
    regime: str


def custom_recipes(modes: list[str], alphas: list[float], seeds: list[int]) -> list[Recipe]:
    """modes × alphas × seeds, without recipes that build the same child twice."""
    recipes: list[Recipe] = []
    for mode, alpha, seed in itertools.product(modes, alphas, seeds):
        recipe = Recipe(mode, alphas[0] if mode == "layer" else alpha, seed if mode == "random" else seeds[0])
        if recipe not in recipes:
            recipes.append(recipe)
    return recipes


def grid(cfg: SearchConfig, known_regimes: dict) -> list[GridPoint]:
    """The grid points of `cfg.preset` (recipes outer, regimes inner), capped at `max_runs`."""
    if cfg.preset == "custom":
        recipes, regimes = custom_recipes(cfg.modes, cfg.alphas, cfg.seeds), cfg.regimes
    else:
        recipes, regimes = Preset.from_mapping(cfg.presets[cfg.preset], f"{cfg._where}.presets.{cfg.preset}").grid()
    missing = [r for r in regimes if r not in known_regimes]
    if missing:
        raise RecombError(f"params.yaml: search: regime {missing[0]!r} (preset {cfg.preset}) is not one of the "
                          f"regimes ({', '.join(known_regimes)})")
    points = [(recipe, regime) for recipe in recipes for regime in regimes]
    if cfg.max_runs:
        points = points[:cfg.max_runs]
    return [GridPoint(f"{i:03d}_{recipe.label}_{regime}", recipe, regime) for i, (recipe, regime) in enumerate(points)]


@dataclass
class Pair:
    """Two networks to cross (`cross_*`) and the teachers their child is fine-tuned against."""

    cross_a: QNetwork
    cross_b: QNetwork
    teach_a: torch.nn.Module
    teach_b: torch.nn.Module


@dataclass
class Scoring:
    """How every child is scored against fixed networks (roles A and B).

    Choosers read the figures on `validation` (a split of the train states) and the
    `selection` episodes; the held-out states and the reported episodes only report.
    """

    role_a: torch.nn.Module
    role_b: torch.nn.Module
    heldout: np.ndarray
    validation: torch.Tensor
    task: Task | None
    cfg: ValidateRecombConfig
    selection: SelectionConfig
    uncertainty: UncertaintyConfig


@dataclass
class Job:
    """One stack of children of one regime: what a worker process or Ray task needs."""

    child_ids: list[str]
    raw: list[QNetwork]
    pair: Pair
    states: torch.Tensor
    cfg: FinetuneConfig
    quant: PTQConfig
    scoring: Scoring
    slot: int = 0
    progress: Progress | None = None  # epochs of this stack, then done once it is scored


@dataclass
class Outcome:
    child_id: str
    result: FinetuneResult
    int8: Int8QNetwork | None
    report: dict
    hits: tuple[np.ndarray, np.ndarray]  # per validation state: picks A's action, picks B's (paired ties)


def score(children: dict, scoring: Scoring) -> dict:
    """What validate_recombination reports for these children: held-out figures and returns, with intervals."""
    report = recombination_offline(scoring.role_a, scoring.role_b, children, scoring.heldout, scoring.cfg,
                                   scoring.uncertainty)
    returns = online_returns(children, scoring.task, scoring.cfg.eval_episodes, scoring.cfg.eval_seed,
                             scoring.uncertainty)
    return {**report, "greedy_return": mean_returns(returns), "greedy_return_interval": returns}


def score_child(children: dict, scoring: Scoring) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """`score`, plus what choosers read of `children["child"]` (under `selection`) and its validation hits."""
    report = score(children, scoring)
    figures, hits = selection_figures(scoring.role_a, scoring.role_b, children["child"], scoring.validation,
                                      scoring.task, scoring.selection, scoring.uncertainty)
    return {**report, "selection": {"child": figures}}, hits


def run_job(job: Job) -> list[Outcome]:
    """Fine-tune one stack of children and score each of them."""
    label = f"stack {job.slot + 1}: {len(job.child_ids)} children × {job.cfg.epochs} epochs"

    def on_epoch(epoch: int) -> None:
        job.progress(job.slot, label, epoch, job.cfg.epochs + 1)  # the last unit: scoring

    results = finetune(job.raw, job.pair.teach_a, job.pair.teach_b, job.states, job.scoring.validation, job.cfg,
                       on_epoch if job.progress else None)
    outcomes = []
    for child_id, result in zip(job.child_ids, results):
        children = {"child": result.child}
        int8 = None
        if job.cfg.quantization_applied != "none":
            int8 = children["child_int8"] = int8_child(result.child, job.states, job.cfg, job.quant)
        outcomes.append(Outcome(child_id, result, int8, *score_child(children, job.scoring)))
    if job.progress:
        job.progress(job.slot, label, job.cfg.epochs + 1, job.cfg.epochs + 1)
    return outcomes


def crossover_config(base: CrossoverConfig, recipe: Recipe) -> CrossoverConfig:
    return replace(base, mode=recipe.mode, alpha=recipe.alpha, seed=recipe.seed)


def jobs_for(points: list[GridPoint], pair: Pair, states: torch.Tensor, base: CrossoverConfig,
             finetune_cfgs: dict[str, FinetuneConfig], quant: PTQConfig, scoring: Scoring, workers: int) -> list[Job]:
    """One job per regime and worker share, longest first, so workers finish together.

    A plateau schedule adapts one learning rate, so with one each child is its own job.
    """
    jobs = []
    for regime, cfg in finetune_cfgs.items():
        members = [p for p in points if p.regime == regime]
        if not members:
            continue
        chunks = len(members) if cfg.lr_schedule_patience else min(workers, len(members))
        for part in np.array_split(np.arange(len(members)), chunks):
            chosen = [members[i] for i in part]
            raw = [crossover(pair.cross_a, pair.cross_b, crossover_config(base, p.recipe))[0] for p in chosen]
            jobs.append(Job([p.child_id for p in chosen], raw, pair, states, cfg, quant, scoring))
    return sorted(jobs, key=lambda j: -j.cfg.epochs * (1 + 0.1 * len(j.raw)) / j.cfg.batch_size)


def run_grid(points: list[GridPoint], pair: Pair, states: torch.Tensor, base: CrossoverConfig,
             finetune_cfgs: dict[str, FinetuneConfig], quant: PTQConfig, scoring: Scoring, cfg: SearchConfig,
             threads: int = 1, progress: Progress | None = None) -> dict[str, Outcome]:
    """Every grid point's fine-tuned, scored child, by child id (in grid order)."""
    jobs = [replace(job, slot=slot, progress=progress)
            for slot, job in enumerate(jobs_for(points, pair, states, base, finetune_cfgs, quant, scoring, cfg.workers))]
    if cfg.backend == "ray":
        done = map_ray(run_job, jobs, cfg.ray_address, "search", threads)
    else:
        done = map_processes(run_job, jobs, cfg.workers, threads, start_method="fork",
                             preload=("scipy.stats",))  # every job bootstraps its intervals
    outcomes = {o.child_id: o for outcome in done for o in outcome}
    return {p.child_id: outcomes[p.child_id] for p in points}


def return_bar(scoring: Scoring) -> float | None:
    """The return a child must reach to rank above those that don't; None without an environment."""
    return scoring.cfg.thresholds.min_child_return if scoring.task else None


def rank_outcomes(points: list[GridPoint], outcomes: dict[str, Outcome], base: CrossoverConfig, scoring: Scoring,
                  degenerate_threshold: float) -> list[dict]:
    """Leaderboard rows of these children, best first (`selection.rank`), ties judged on paired validation hits."""
    def difference(leader: dict, row: dict) -> tuple[float, float]:
        hits = outcomes[leader["experiment"]].hits, outcomes[row["experiment"]].hits
        return primary_difference_interval(*hits, scoring.uncertainty)

    rows = [row_from_report(p.child_id, crossover_config(base, p.recipe).to_dict(), p.regime,
                            outcomes[p.child_id].report) for p in points]
    return ranked(rows, degenerate_threshold, return_bar(scoring), difference)
