"""The crossover × fine-tune grid in one process: presets, a vectorized run, scoring.

A grid point is a crossover recipe (an operator and the knobs it reads) and a fine-tune regime. Every
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
from ..operator_knobs import recipe_knobs
from ..parallel import Progress, map_processes, map_ray
from ..quantization.int8 import Int8QNetwork
from ..quantization.quantize import PTQConfig
from ..stats import UncertaintyConfig, primary_difference_interval
from ..training.finetune import FinetuneConfig, FinetuneResult, finetune, int8_child
from ..training.tasks import Task
from .crossover import OPERATORS, CrossoverConfig, crossover


MATCHINGS = ("weights", "activations")


@dataclass(frozen=True)
class Recipe:
    """One crossover recipe. A knob the operator does not read (`operator_knobs.READS`) keeps its default,
    so two recipes that build the same child are equal."""

    mode: str
    alpha: float = 0.5
    seed: int = 0
    matching: str = "weights"
    repair: bool = False

    @property
    def reads(self) -> tuple[str, ...]:
        return recipe_knobs(self.mode)

    def knobs(self) -> dict:
        """The crossover keys this recipe sets: those its operator reads."""
        return {key: getattr(self, key) for key in self.reads}

    @property
    def label(self) -> str:
        """`layer`, `weighted_a0p50`, `random_a0p50_s1`, `aligned_a0p50_act_repair` (file- and id-safe)."""
        parts = {"alpha": f"a{self.alpha:.2f}".replace(".", "p"), "seed": f"s{self.seed}",
                 "matching": "act" if self.matching == "activations" else "", "repair": "repair" if self.repair else ""}
        return "_".join([self.mode, *(parts[key] for key in self.reads if parts[key])])


def recipe_of(mode: str, **knobs) -> Recipe:
    """The recipe of `mode` with the `knobs` it reads (the others dropped, so equal children are equal recipes)."""
    return Recipe(mode, **{key: value for key, value in knobs.items() if key in recipe_knobs(mode)})


def parse_recipe(text: str, where: str) -> Recipe:
    """`mode [alpha [seed]] [weights|activations] [repair]` as written in a params preset: `layer`,
    `weighted 0.3`, `random 0.5 1`, `aligned 0.5 activations repair`.

    Each mode takes exactly what it reads: `layer` nothing, `random` alpha and seed, the interpolating modes
    alpha and `repair`, `aligned` also its matching; so a preset never lists a knob that does nothing.
    """
    words = str(text).split()
    if not words or words[0] not in OPERATORS:
        raise RecombError(f"{where}: {text!r}: the mode must be one of {', '.join(OPERATORS)}")
    mode, rest = words[0], words[1:]
    reads = recipe_knobs(mode)
    numbers = [key for key in ("alpha", "seed") if key in reads]
    usage = " ".join([mode, *(f"<{key}>" for key in numbers), *(["[weights|activations]"] * ("matching" in reads)),
                      *(["[repair]"] * ("repair" in reads))])
    knobs: dict = {}
    try:
        for key, word in zip(numbers, rest):
            knobs[key] = float(word) if key == "alpha" else int(word)
    except ValueError:
        raise RecombError(f"{where}: {text!r}: write it as `{usage}`") from None
    flags = rest[len(numbers):]
    if "matching" in reads and flags and flags[0] in MATCHINGS:
        knobs["matching"], flags = flags[0], flags[1:]
    if "repair" in reads and flags == ["repair"]:
        knobs["repair"], flags = True, []
    if len(knobs) < len(numbers) or flags or not 0 <= knobs.get("alpha", 0.5) <= 1:
        raise RecombError(f"{where}: {text!r}: write it as `{usage}` with alpha in [0, 1]")
    return Recipe(mode, **knobs)


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
    modes: list[str]          # custom grid: modes × alphas × seeds × matchings × repairs (deduplicated), × regimes
    alphas: list[float]
    seeds: list[int]
    matchings: list[str]
    repairs: list[bool]
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
        self.require(set(self.matchings) <= set(MATCHINGS), "matchings", f"must be among {', '.join(MATCHINGS)}")
        self.require(all(isinstance(r, bool) for r in self.repairs), "repairs", "must be true or false")
        if self.preset == "custom":
            for key in ("modes", "alphas", "seeds", "matchings", "repairs", "regimes"):
                self.require(bool(getattr(self, key)), key, "the custom grid needs at least one")
        self.require(self.max_runs >= 0, "max_runs", "must be ≥ 0 (0 = all)")
        self.require(0 <= self.degenerate_threshold <= 1, "degenerate_threshold", "must be in [0, 1] (0 = off)")
        self.require(self.workers >= 1, "workers", "must be ≥ 1")


@dataclass(frozen=True)
class GridPoint:
    child_id: str
    recipe: Recipe
    regime: str


def distinct_recipes(modes, alphas, seeds, matchings, repairs) -> list[Recipe]:
    """modes × alphas × seeds × matchings × repairs, without recipes that build the same child twice."""
    recipes: list[Recipe] = []
    for mode, alpha, seed, matching, repair in itertools.product(modes, alphas, seeds, matchings, repairs):
        recipe = recipe_of(mode, alpha=alpha, seed=seed, matching=matching, repair=repair)
        if recipe not in recipes:
            recipes.append(recipe)
    return recipes


def custom_recipes(cfg: SearchConfig) -> list[Recipe]:
    """The custom grid's recipes (`distinct_recipes` of its lists)."""
    return distinct_recipes(cfg.modes, cfg.alphas, cfg.seeds, cfg.matchings, cfg.repairs)


def grid(cfg: SearchConfig, known_regimes: dict) -> list[GridPoint]:
    """The grid points of `cfg.preset` (recipes outer, regimes inner), capped at `max_runs`."""
    if cfg.preset == "custom":
        recipes, regimes = custom_recipes(cfg), cfg.regimes
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
    """Two networks to cross (`cross_*`), the teachers their child is fine-tuned against, and the states the
    crossover measures the parents on (activation matching, REPAIR): all the train states, as the crossover
    stage's, so a grid's child is the child `dvc exp run` builds."""

    cross_a: QNetwork
    cross_b: QNetwork
    teach_a: torch.nn.Module
    teach_b: torch.nn.Module
    train_states: torch.Tensor | None = None
    sides: tuple[torch.Tensor, torch.Tensor] | None = None  # the competent teacher mode's (`finetune`)


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
                       on_epoch if job.progress else None, job.pair.sides)
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
    """The pipeline's crossover section with the recipe's operator and the knobs it reads."""
    return replace(base, mode=recipe.mode, **recipe.knobs())


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
            raw = [crossover(pair.cross_a, pair.cross_b, crossover_config(base, p.recipe), pair.train_states)[0]
                   for p in chosen]
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
