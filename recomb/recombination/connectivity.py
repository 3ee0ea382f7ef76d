"""The interpolation barrier between the crossed pair: why a raw child works or fails.

Along α ∈ `alphas`, the networks α·A + (1 − α)·B (α is A's share, as `crossover.alpha`) for B as it is
(`plain`), B's units put in A's order by their weights (`weights`, today's `aligned`) or by their activations on
the train states (`activations`), each also with REPAIR (`alignment`). Every network of a path is scored on the
held-out states (the mean of KL(A ‖ N) and KL(B ‖ N) at T = 1, the distillation objective's soft term against
the endpoints; agreement with A and B; primary / U) and in the task's fixed-seed episodes (greedy return).

The barrier of a path is its largest departure, in the bad direction, from the straight line between its
endpoints' values: max over α of loss(α) − line(α) for the loss, of line(α) − return(α) for the return. The
reduction of a method is 1 − its barrier / plain averaging's, as REPAIR's paper reports it. Every barrier and
reduction carries a paired bootstrap interval over the held-out states (loss) or the episodes (return): all
networks are scored on the same ones. Nothing here picks anything: the figures report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import metrics
from ..config import Section
from ..evaluation.validation import parent_hits, q_values
from ..networks import QNetwork
from ..reports import table, with_interval
from ..stats import UncertaintyConfig, intervals
from ..training.tasks import Task
from .alignment import activation_matching, network, repair, unit_moments, weight_matching

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MATCHERS = ("plain", "weights", "activations")
METHODS = tuple(f"{m}{suffix}" for m in MATCHERS for suffix in ("", "_repair"))


@dataclass(frozen=True)
class ConnectivityConfig(Section):
    """The `connectivity` params section."""

    sections = ("connectivity",)

    alphas: list[float]   # A's share along the path; must hold both endpoints, 0 and 1
    eval_episodes: int    # greedy episodes per network on the path
    eval_seed: int

    def check(self) -> None:
        self.require(bool(self.alphas), "alphas", "needs at least the endpoints 0 and 1")
        self.require(all(0 <= a <= 1 for a in self.alphas), "alphas", "must be in [0, 1]")
        self.require(0 in self.alphas and 1 in self.alphas, "alphas",
                     "must hold 0 and 1: the barrier is measured against the endpoints")
        self.require(list(self.alphas) == sorted(set(self.alphas)), "alphas", "must rise, each α once")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")


def paths(a: QNetwork, b: QNetwork, alphas: list[float], states: torch.Tensor,
          max_passes: int) -> dict[str, list[QNetwork]]:
    """Per method, the networks at each α: B aligned once per matcher, the path interpolated and repaired per α
    (the child `crossover` builds at that α with the same matching and repair)."""
    arch = a.arch
    a_state, b_state = ({k: v.detach().float() for k, v in n.state_dict().items()} for n in (a, b))
    aligned = {"plain": b_state, "weights": weight_matching(a_state, b_state, max_passes)[0],
               "activations": activation_matching(arch, a_state, b_state, states)[0]}
    moments_a = unit_moments(arch, a_state, states)
    found = {}
    for matcher, b_in_order in aligned.items():
        moments_b = unit_moments(arch, b_in_order, states)
        plain, repaired = [], []
        for alpha in alphas:
            mixed = {key: alpha * a_state[key] + (1 - alpha) * b_in_order[key] for key in a_state}
            plain.append(network(arch, mixed))
            repaired.append(network(arch, repair(arch, mixed, moments_a, moments_b, alpha, states)[0]))
        found[matcher], found[f"{matcher}_repair"] = plain, repaired
    return found


def _barriers(means: np.ndarray, alphas: np.ndarray, worse: float) -> np.ndarray:
    """Per method, its barrier and then (every method but plain averaging) its reduction, from `means` of shape
    (methods, α, ...): barrier = max over α of worse·(value − the line through the endpoints' values), reduction
    = 1 − barrier / plain averaging's (NaN where plain averaging has no barrier to reduce)."""
    share = alphas.reshape(1, -1, *([1] * (means.ndim - 2)))
    line = means[:, -1:] * share + means[:, :1] * (1 - share)
    barriers = (worse * (means - line)).max(axis=1) + 0.0  # + 0.0: a path on its line has barrier 0, not -0
    plain = barriers[METHODS.index("plain")]
    with np.errstate(divide="ignore", invalid="ignore"):
        reductions = np.where(plain > 0, 1 - barriers / plain, np.nan)
    return np.concatenate([barriers, reductions[[i for i, m in enumerate(METHODS) if m != "plain"]]])


BARRIER_NAMES = [(m, "barrier") for m in METHODS] + [(m, "reduction") for m in METHODS if m != "plain"]


def _state_statistic(alphas: np.ndarray):
    """Per network (method-major, α-minor) its mean loss, agreement with A and B and primary / U, then the loss
    barriers (`_barriers`); from the per-state samples: losses, hits on A, hits on B, the parents' agreement."""
    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        n = (len(samples) - 1) // 3
        means = np.stack([np.asarray(s, dtype=np.float64).mean(axis=axis) for s in samples])
        loss, agree_a, agree_b = means[:n], means[n:2 * n], means[2 * n:3 * n]
        over_bound = np.minimum(agree_a, agree_b) / metrics.bound(means[3 * n])
        barriers = _barriers(loss.reshape(len(METHODS), len(alphas), *loss.shape[1:]), alphas, 1.0)
        return np.concatenate([loss, agree_a, agree_b, over_bound, barriers])
    return statistic


def _episode_statistic(alphas: np.ndarray):
    """Per network its mean return, then the return barriers (`_barriers`), from the per-episode returns."""
    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        means = np.stack([np.asarray(s, dtype=np.float64).mean(axis=axis) for s in samples])
        barriers = _barriers(means.reshape(len(METHODS), len(alphas), *means.shape[1:]), alphas, -1.0)
        return np.concatenate([means, barriers])
    return statistic


def _figures(samples: tuple[np.ndarray, ...], statistic, unc: UncertaintyConfig) -> list[dict]:
    """Each figure of `statistic` with its percentile interval, from one joint draw of resamples (paired)."""
    bounds = intervals(samples, statistic, unc, methods=("percentile",), batch=50)
    return [{"value": float(v), "low": low, "high": high} for v, (low, high) in zip(statistic(*samples), bounds)]


def _barrier_entries(found: list[dict]) -> dict[str, dict]:
    entries: dict[str, dict] = {m: {} for m in METHODS}
    for (method, key), figure in zip(BARRIER_NAMES, found):
        entries[method][key] = figure if np.isfinite(figure["value"]) else None
    return entries


def connectivity(a: QNetwork, b: QNetwork, train: torch.Tensor, heldout: np.ndarray, task: Task | None,
                 cfg: ConnectivityConfig, max_passes: int, unc: UncertaintyConfig) -> dict:
    """The metrics JSON: every path's figures per α with intervals, and per method its loss and return barriers.

    Every interval comes from one joint draw of resamples of the held-out states (or of the episodes), so the
    figures of all networks are paired; percentile intervals, since BCa's jackknife over every network and state
    would cost minutes."""
    states = torch.from_numpy(heldout)
    q_a, q_b = q_values(a, states), q_values(b, states)
    picks_a, picks_b = q_a.argmax(-1), q_b.argmax(-1)
    networks = [(method, alpha, net) for method, path in paths(a, b, cfg.alphas, train, max_passes).items()
                for alpha, net in zip(cfg.alphas, path)]
    losses, hits_a, hits_b = [], [], []
    for _, _, net in networks:
        q = q_values(net, states)
        losses.append(0.5 * (metrics.kl_per_state(q_a, q) + metrics.kl_per_state(q_b, q)).double().numpy())
        hits = parent_hits(picks_a, picks_b, q)
        hits_a.append(hits[0])
        hits_b.append(hits[1])
    grid = np.asarray(cfg.alphas, dtype=np.float64)
    n = len(networks)
    found = _figures((*losses, *hits_a, *hits_b, (picks_a == picks_b).numpy()), _state_statistic(grid), unc)
    rows = [{"alpha": alpha, **_with_interval("loss", found[i]), "agreement_a": found[n + i]["value"],
             "agreement_b": found[2 * n + i]["value"], **_with_interval("primary_over_bound", found[3 * n + i])}
            for i, (_, alpha, _) in enumerate(networks)]
    loss_barriers, return_barriers = _barrier_entries(found[4 * n:]), None
    if task is not None:
        returns = tuple(task.population_returns([net for _, _, net in networks], cfg.eval_episodes, cfg.eval_seed))
        found = _figures(returns, _episode_statistic(grid), unc)
        for row, figure in zip(rows, found):
            row.update(_with_interval("return", figure))
        return_barriers = _barrier_entries(found[n:])
    methods = {}
    for m, method in enumerate(METHODS):
        methods[method] = {"path": rows[m * len(grid):(m + 1) * len(grid)], "loss": loss_barriers[method],
                           "return": return_barriers[method] if return_barriers else None}
    return {"alphas": list(cfg.alphas), "n_heldout": len(heldout), "episodes": cfg.eval_episodes if task else None,
            "confidence": unc.confidence, "methods": methods}


def _with_interval(name: str, found: dict) -> dict:
    """`name`, `name_low`, `name_high` of a {value, low, high} figure."""
    return {name: found["value"], f"{name}_low": found["low"], f"{name}_high": found["high"]}


LABELS = {"plain": "plain average", "weights": "weight matching", "activations": "activation matching"}


def _label(method: str) -> str:
    matcher, _, repaired = method.partition("_")
    return LABELS[matcher] + (" + REPAIR" if repaired else "")


def barrier_figure(summary: dict, title: str) -> "Figure":
    """Loss (and return) along α per method, with interval bands; REPAIR dashed, in its matcher's colour."""
    from ..plots import new_figure
    keys = ["loss"] + (["return"] if summary["methods"]["plain"]["return"] is not None else [])
    fig = new_figure((5.2 * len(keys), 4.4))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for method, entry in summary["methods"].items():
            rows = entry["path"]
            alphas = [r["alpha"] for r in rows]
            colour = f"C{MATCHERS.index(method.partition('_')[0])}"
            style = "--" if method.endswith("_repair") else "-"
            ax.plot(alphas, [r[key] for r in rows], style, marker=".", color=colour, label=_label(method))
            ax.fill_between(alphas, [r[f"{key}_low"] for r in rows], [r[f"{key}_high"] for r in rows],
                            color=colour, alpha=0.12, linewidth=0)
        ax.set_xlabel("α (A's share; 0 = B, 1 = A)")
        ax.set_ylabel({"loss": "½ KL(A ‖ N) + ½ KL(B ‖ N), held-out states",
                       "return": f"greedy return ({summary['episodes']} episodes)"}[key])
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def _cell(figure: dict | None, digits: int) -> str:
    if figure is None:
        return "–"
    return with_interval(figure["value"], figure["low"], figure["high"], digits)


def markdown(summary: dict, setup: str) -> str:
    """The barrier table (height and reduction against plain averaging, per method) and the raw child at the
    α nearest 0.5."""
    middle = min(range(len(summary["alphas"])), key=lambda i: abs(summary["alphas"][i] - 0.5))
    rows = []
    for method, entry in summary["methods"].items():
        mid = entry["path"][middle]
        ret = entry["return"] or {}
        rows.append([_label(method), _cell(entry["loss"]["barrier"], 4), _cell(entry["loss"].get("reduction"), 3),
                     _cell(ret.get("barrier"), 1), _cell(ret.get("reduction"), 3),
                     with_interval(mid["primary_over_bound"], mid["primary_over_bound_low"],
                                   mid["primary_over_bound_high"], 4),
                     with_interval(mid.get("return"), mid.get("return_low"), mid.get("return_high"), 1)])
    alpha = summary["alphas"][middle]
    header = ["method", "loss barrier", "loss reduction", "return barrier", "return reduction",
              f"raw child primary / U (α = {alpha:g})", f"raw child return (α = {alpha:g})"]
    return "\n".join([
        "# Connectivity: the interpolation barrier between the crossed pair", "", setup, "",
        "Barrier: the largest departure, in the bad direction, of the path from the straight line between its "
        "endpoints (loss above it, return below it); 0 or less: no barrier. Reduction: 1 − barrier / plain "
        "averaging's barrier (1: removed, 0: unchanged, < 0: higher); – where plain averaging has no barrier. "
        f"Intervals: {summary['confidence']:.0%}, percentile bootstrap over the held-out states (loss, primary / U) "
        "or the episodes (return), one joint draw for all networks (paired).", "",
        table(header, rows), ""])
