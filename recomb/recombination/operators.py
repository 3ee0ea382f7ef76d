"""Every crossover operator of the registry on one pair: the raw child, and what fine-tuning makes of it.

Operators differ in how far their raw child lands from the parents (|ΔQ|, agreement,
primary / U, greedy return) and in what the pipeline's fine-tune regime recovers from
it. Each operator crosses the pipeline's pair at `crossover.alpha` (`random` once per
seed of `compare_operators.seeds`, since its child depends on the draw); the raw
children are scored as `validate_recombination` scores a child, and all children are
fine-tuned, scored and ranked as the `search` stage does (one stacked population), so
the comparison is the one a search grid over the operators would make. The time per
crossover varies from run to run: `time_operators` serves `recomb timing` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Section
from ..operator_knobs import recipe_text
from ..metrics import bound
from ..evaluation.validation import online_returns, parent_hits, q_values
from ..networks import QNetwork
from ..plots import new_figure
from ..reports import table, with_interval
from ..stats import primary_over_bound_interval
from .crossover import OPERATORS, CrossoverConfig, crossover
from .search import MATCHINGS, GridPoint, Pair, Recipe, Scoring, crossover_config, distinct_recipes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# What the metrics JSON keeps of a child's rows (those it has), and what is summarised over `random`'s seeds.
REPORTED = ("agreement_a", "agreement_b", "primary", "primary_over_bound", "primary_over_bound_low",
            "primary_over_bound_high", "online_return", "online_return_low", "online_return_high")
RAW_KEYS = ("mean_abs_dq_a", "max_abs_dq_a", "mean_abs_dq_b", "max_abs_dq_b", *REPORTED, "leads", "tied")
TUNED_KEYS = (*REPORTED, "val_primary", "val_return", "rank", "tied")
SPREAD_KEYS = ("mean_abs_dq_a", "max_abs_dq_a", "mean_abs_dq_b", "max_abs_dq_b", "agreement_a", "agreement_b",
               "primary_over_bound", "online_return")


@dataclass(frozen=True)
class OperatorsConfig(Section):
    """The `compare_operators` params section."""

    sections = ("compare_operators",)

    seeds: list[int]   # random's draws: one child per seed
    repeats: int       # crossovers timed per operator by `recomb timing` (median)

    def check(self) -> None:
        self.require(bool(self.seeds), "seeds", "needs at least one seed")
        self.require(len(set(self.seeds)) == len(self.seeds), "seeds", "must not list a seed twice")
        self.require(self.repeats >= 1, "repeats", "must be ≥ 1")


def recipes(seeds: list[int], alpha: float) -> list[Recipe]:
    """Every operator of the registry at `alpha` in every form its knobs give: once per seed of `seeds` if it
    reads a seed, per matching if it reads one, without and with REPAIR if it reads `repair`."""
    return distinct_recipes(OPERATORS, [alpha], seeds, MATCHINGS, (False, True))


def raw_scores(children: dict[str, QNetwork], scoring: Scoring) -> tuple[dict[str, dict], dict[str, float]]:
    """Each raw child's held-out figures against roles A and B; and the parents' agreement and U.

    Agreement with A and B, primary and primary / U with its interval are computed as
    `validate_recombination` computes them (`parent_hits`, `stats.primary_over_bound_interval`),
    the return over its reported episodes (`online_returns`); |ΔQ| is over states and actions.
    Only primary / U gets an interval: the bootstraps are most of the cost.
    """
    states = torch.from_numpy(scoring.heldout)
    q_a, q_b = q_values(scoring.role_a, states), q_values(scoring.role_b, states)
    picks_a, picks_b = q_a.argmax(-1), q_b.argmax(-1)
    parents_agree = (picks_a == picks_b).numpy()
    returns = online_returns(children, scoring.task, scoring.cfg.eval_episodes, scoring.cfg.eval_seed,
                             scoring.uncertainty)
    rows = {}
    for name, child in children.items():
        q = q_values(child, states)
        hits = parent_hits(picks_a, picks_b, q)
        over_bound = primary_over_bound_interval(*hits, parents_agree, scoring.uncertainty)
        gap_a, gap_b = (q - q_a).abs(), (q - q_b).abs()
        episodes = returns[name] or {}  # no environment, no return
        rows[name] = {"agreement_a": float(hits[0].mean()), "agreement_b": float(hits[1].mean()),
                      "primary": float(min(hits[0].mean(), hits[1].mean())),
                      "primary_over_bound": over_bound["value"], "primary_over_bound_low": over_bound["low"],
                      "primary_over_bound_high": over_bound["high"],
                      "mean_abs_dq_a": gap_a.mean().item(), "max_abs_dq_a": gap_a.max().item(),
                      "mean_abs_dq_b": gap_b.mean().item(), "max_abs_dq_b": gap_b.max().item(),
                      "online_return": episodes.get("mean"), "online_return_std": episodes.get("std"),
                      "online_return_low": episodes.get("low"), "online_return_high": episodes.get("high")}
    agreement = float(parents_agree.mean())
    return rows, {"parents_agreement": agreement, "bound": bound(agreement)}


def most_balanced(rows: dict[str, dict]) -> dict[str, dict]:
    """Per raw child: `leads` (the highest held-out primary / U, the first of equals in registry order) and
    `tied` (its own interval reaches the leader's value: the leaderboards' unpaired rule)."""
    leader = max(rows, key=lambda name: rows[name]["primary_over_bound"])
    best = rows[leader]["primary_over_bound"]
    return {name: {"leads": name == leader, "tied": name != leader and row["primary_over_bound_high"] >= best}
            for name, row in rows.items()}


def seed_spread(rows: list[dict]) -> dict[str, dict]:
    """Mean, min and max of each figure over `random`'s children: a range, since a handful of seeds is too
    few for an interval; a figure some row lacks (the return, without an environment) is left out."""
    present = [k for k in SPREAD_KEYS if all(r.get(k) is not None for r in rows)]
    return {k: {"mean": float(np.mean([r[k] for r in rows])), "min": min(r[k] for r in rows),
                "max": max(r[k] for r in rows)} for k in present}


def _name(recipe: Recipe) -> str:
    """`layer`, `weighted α=0.5`, `random α=0.5 seed=1` (as the leaderboards write a recipe)."""
    return recipe_text({"mode": recipe.mode, **recipe.knobs()})


def _numbers(row: dict, keys: tuple[str, ...]) -> dict:
    """The figures `keys` of a row (metrics JSON), those it lacks (no return without an environment) left out."""
    return {k: row[k] for k in keys if row.get(k) is not None}


def _interval(row: dict, key: str, digits: int = 4) -> str:
    """`0.9888 [0.9833, 0.9970]`; – when the row lacks the figure (no return without an environment)."""
    return with_interval(row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high"), digits)


def _gaps(row: dict, side: str) -> str:
    return f"{row[f'mean_abs_dq_{side}']:.4g} / {row[f'max_abs_dq_{side}']:.4g}"


def _spread(spread: dict, key: str, digits: int = 4) -> str:
    """`mean (min–max)` of one figure over the seeds; – when absent."""
    if key not in spread:
        return "–"
    s = spread[key]
    return f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


@dataclass
class Comparison:
    """Every operator's child on one pair: raw figures and balance marks, fine-tuned leaderboard rows."""

    recipes: dict[str, Recipe]   # by child id, in registry order
    raw: dict[str, dict]         # each raw child's held-out figures (`raw_scores`)
    balance: dict[str, dict]     # each raw child's `leads` / `tied` (`most_balanced`)
    tuned: list[dict]            # the fine-tuned children's leaderboard rows, best first (`rank_outcomes`)
    parents_agreement: float
    bound: float
    n_heldout: int
    confidence: float

    @property
    def tuned_by_id(self) -> dict[str, dict]:
        return {row["experiment"]: row for row in self.tuned}

    def random_spread(self) -> dict:
        seeds = [cid for cid, r in self.recipes.items() if r.mode == "random"]
        return {"seeds": len(seeds), "raw": seed_spread([self.raw[c] for c in seeds]),
                "finetuned": seed_spread([self.tuned_by_id[c] for c in seeds])}

    def summary(self) -> dict:
        """The metrics JSON: per child its raw and fine-tuned figures; `random`'s spread over seeds."""
        tuned = self.tuned_by_id
        return {"n_heldout": self.n_heldout, "parents_agreement": self.parents_agreement, "bound": self.bound,
                "confidence": self.confidence, "random_over_seeds": self.random_spread(),
                "children": {cid: {"raw": _numbers({**self.raw[cid], **self.balance[cid]}, RAW_KEYS),
                                   "finetuned": _numbers(tuned[cid], TUNED_KEYS)} for cid in self.recipes}}

    def leaders(self) -> list[str]:
        """What leads, raw and fine-tuned, and what the data cannot tell from it (Markdown lines)."""
        raw_leader = next(cid for cid, m in self.balance.items() if m["leads"])
        raw_ties = [_name(self.recipes[cid]) for cid, m in self.balance.items() if m["tied"]]
        tuned_ties = [_name(self.recipes[row["experiment"]]) for row in self.tuned if row["tied"]]
        return [f"- Raw: the most balanced child (highest held-out primary / U) is "
                f"**{_name(self.recipes[raw_leader])}**; "
                + (f"tied with it: {', '.join(raw_ties)}." if raw_ties else "no other raw child is tied with it."),
                f"- Fine-tuned: rank 1 by the search's rule is **{_name(self.recipes[self.tuned[0]['experiment']])}**; "
                + (f"tied with it: {', '.join(tuned_ties)}." if tuned_ties else "no other child is tied with it.")]

    def markdown(self, setup: str) -> str:
        """One row per child (registry order) and `random`'s mean (min–max) over seeds, then what leads."""
        tuned = self.tuned_by_id
        header = ["operator", "mean / max |ΔQ| vs A", "mean / max |ΔQ| vs B", "agreement A", "agreement B",
                  "raw primary / U", "raw return", "fine-tuned primary / U", "fine-tuned return", "rank"]
        rows = [[_name(recipe), _gaps(self.raw[cid], "a"), _gaps(self.raw[cid], "b"),
                 f"{self.raw[cid]['agreement_a']:.4f}", f"{self.raw[cid]['agreement_b']:.4f}",
                 _interval(self.raw[cid], "primary_over_bound"), _interval(self.raw[cid], "online_return", 1),
                 _interval(tuned[cid], "primary_over_bound"), _interval(tuned[cid], "online_return", 1),
                 f"{tuned[cid]['rank']}{' (tied)' * tuned[cid]['tied']}"] for cid, recipe in self.recipes.items()]
        spread = self.random_spread()
        raw, fine = spread["raw"], spread["finetuned"]
        rows.append([f"random: mean (min–max) of {spread['seeds']} seeds",
                     f"{_spread(raw, 'mean_abs_dq_a', 2)} / {_spread(raw, 'max_abs_dq_a', 2)}",
                     f"{_spread(raw, 'mean_abs_dq_b', 2)} / {_spread(raw, 'max_abs_dq_b', 2)}",
                     _spread(raw, "agreement_a"), _spread(raw, "agreement_b"), _spread(raw, "primary_over_bound"),
                     _spread(raw, "online_return", 1), _spread(fine, "primary_over_bound"),
                     _spread(fine, "online_return", 1), "–"])
        pct = f"{100 * self.confidence:g} %"
        return "\n".join([
            "# Crossover operators compared", "", setup, "",
            f"Held-out states: {self.n_heldout}; the parents agree on {self.parents_agreement:.4f} of them, so "
            f"U = {self.bound:.4f}. Brackets: {pct} bootstrap intervals over states (primary / U) or episodes "
            "(returns).", "", table(header, rows), "", *self.leaders(), "",
            "- |ΔQ|: |Q_child − Q_parent| over the held-out states and actions, mean and max (raw children).",
            "- rank: the fine-tuned children ranked by the search stage's rule (a child whose return over the "
            "choosing episodes reaches the bar first, then validation primary, then validation return); "
            f"**tied**: the paired {pct} interval of (leader's validation primary − its own) contains 0. The "
            "held-out figures only report.",
            "- Raw children are not chosen from, only described: the most balanced has the highest held-out "
            "primary / U; tied with it: a raw child whose own interval reaches that value.",
            "- Time per crossover: `recomb timing` (data/reports/latest/timing.md; wall-clock, not hashed)."]) + "\n"

    def figure(self, title: str) -> "Figure":
        """Per child, primary / U (left) and the return (right, when there is an environment), raw and
        fine-tuned side by side with interval bars; the fine-tuned rank 1 shaded."""
        tuned = self.tuned_by_id
        ids = list(self.recipes)
        labels = [_name(r).replace(" seed=", "\nseed=") for r in self.recipes.values()]
        panels = ["primary_over_bound"] + (["online_return"] if self.raw[ids[0]]["online_return"] is not None else [])
        fig = new_figure((5.4 * len(panels) + 0.6, 4.6))
        x = np.arange(len(ids))
        leader = ids.index(self.tuned[0]["experiment"])
        ties = sum(row["tied"] for row in self.tuned)
        for ax, key in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            ax.axvspan(leader - 0.4, leader + 0.4, color="grey", alpha=0.15,
                       label=f"fine-tuned rank 1 ({ties} tied with it)")
            for offset, label, rows, colour in ((-0.12, "raw child", self.raw, "C1"),
                                                (0.12, "fine-tuned child", tuned, "C0")):
                values = np.array([rows[c][key] for c in ids])
                low, high = (np.array([rows[c][f"{key}_{end}"] for c in ids]) for end in ("low", "high"))
                ax.errorbar(x + offset, values, yerr=[values - low, high - values], fmt="o", color=colour,
                            capsize=3, label=label)
            ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=8)
            ax.set_xlabel("crossover operator")
            ax.set_ylabel({"primary_over_bound": "held-out primary / U",
                           "online_return": "greedy return (reported episodes)"}[key])
            ax.grid(alpha=0.3)
        handles, names = ax.get_legend_handles_labels()  # one legend below the panels: inside, it hid points
        fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, frameon=False)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        return fig


def compare(points: list[GridPoint], pair: Pair, base: CrossoverConfig, tuned: list[dict],
            scoring: Scoring) -> Comparison:
    """Each grid point's raw child, scored on the held-out states, beside the fine-tuned children's rows."""
    raw_children = {p.child_id: crossover(pair.cross_a, pair.cross_b, crossover_config(base, p.recipe),
                                          pair.train_states)[0] for p in points}
    rows, parents = raw_scores(raw_children, scoring)
    return Comparison({p.child_id: p.recipe for p in points}, rows, most_balanced(rows), tuned,
                      parents["parents_agreement"], parents["bound"], len(scoring.heldout),
                      scoring.uncertainty.confidence)


def time_operators(a: QNetwork, b: QNetwork, base: CrossoverConfig, seed: int, repeats: int,
                   states: torch.Tensor) -> dict[str, dict]:
    """Median / mean / min wall time (ms) of one `crossover` call per operator form at `base.alpha` (`random`
    with `seed`; activation matching and REPAIR on `states`), by recipe. Forms take turns in every repeat, so
    drifts in machine load hit them alike; each runs once untimed first (`aligned` imports scipy on its first
    call)."""
    configs = {_name(r): crossover_config(base, r) for r in recipes([seed], base.alpha)}
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for repeat in range(repeats + 1):
        for name, cfg in configs.items():
            start = time.perf_counter()
            crossover(a, b, cfg, states)
            if repeat:
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": statistics.median(t), "mean_ms": statistics.fmean(t), "min_ms": min(t)}
            for name, t in samples.items()}
