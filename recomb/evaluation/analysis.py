"""Qualitative error analysis of a child: which held-out states it gets wrong, and why.

Agreement says how often a child departs from its parents; this module says where. Per state: the
greedy actions of parent A, parent B and the child, how far the child's action distribution is from
each parent's (KL(parent ‖ child) on softmax(Q / T), the parent as the reference distribution), the
Q-value MSE and cosine, top-k mismatches; the states with the largest errors; the child's hidden
activations; and how disagreement depends on the reference network's Q margin. A near-tie (top-1 and
top-2 Q almost equal) is where any small change of the network flips its greedy action, so a child
or an int8 student that departs there departs where its reference hardly has a preference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Section
from ..errors import RecombError
from ..networks import NORM_INDICES, QNetwork
from ..plots import new_figure
from ..reports import table, with_interval
from ..stats import UncertaintyConfig, mean_interval
from ..training.tasks import Task
from ..training.finetune import normalised_margin
from .. import metrics
from .validation import q_values

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WorstCriterion = Literal["max_kl", "kl_parent_a", "kl_parent_b", "max_mse", "mse_parent_a", "mse_parent_b"]
HiddenLayer = Literal["hidden1", "hidden2"]

# Each hidden block is Linear → LayerNorm → ReLU → Dropout: its role's output is the ReLU after the LayerNorm.
HIDDEN_LAYERS = {f"hidden{block + 1}": f"network.{norm + 1}" for block, norm in enumerate(NORM_INDICES)}

# Where the child's greedy action stands against the parents' on one state.
OUTCOMES = {
    "all_agree": "child = A = B",
    "with_a": "child = A ≠ B (sides with A)",
    "with_b": "child = B ≠ A (sides with B)",
    "against_both": "child ≠ A = B (the parents agree, the child does not)",
    "neither": "A ≠ B and the child picks a third action",
}

KL_DIRECTION = "KL(parent ‖ child) on softmax(Q / kl_temperature): the parent is the reference distribution"
MARGIN_DEFINITION = ("normalised margin of a network on a state: its top-1 minus top-2 Q-value, divided by the median "
                     "of that margin over the analysed states (1 = a typical preference, 0 = a tie; the same "
                     "normalisation as the balanced fine-tune's)")


@dataclass(frozen=True)
class AnalyzeConfig(Section):
    """The `analyze` params section."""

    sections = ("analyze",)

    max_states: int            # held-out states analysed at most (a seeded sample beyond)
    sample_seed: int
    top_k: list[int]           # k of the top-k mismatch flags
    kl_temperature: float
    include_logits: bool       # raw Q-values of A, B and the child in the per-state files
    worst_k: int
    worst_criterion: WorstCriterion
    activation_layer: HiddenLayer
    activation_states: int     # the child's activations for the first N analysed states; 0 = none
    near_tie_cut: float        # normalised margin below this = near-tie
    margin_edges: list[float]  # bin edges of the margin figure (0 and ∞ implied)

    def check(self) -> None:
        self.require(self.max_states >= 1, "max_states", "must be ≥ 1")
        self.require(bool(self.top_k) and min(self.top_k) >= 1 and len(set(self.top_k)) == len(self.top_k),
                     "top_k", "must be a non-empty list of distinct integers ≥ 1")
        self.require(self.kl_temperature > 0, "kl_temperature", "must be > 0")
        self.require(self.worst_k >= 1, "worst_k", "must be ≥ 1")
        self.require(self.activation_states >= 0, "activation_states", "must be ≥ 0")
        self.require(self.near_tie_cut > 0, "near_tie_cut", "must be > 0")
        edges = self.margin_edges
        self.require(bool(edges) and edges[0] > 0 and all(a < b for a, b in zip(edges, edges[1:])),
                     "margin_edges", "must be a non-empty increasing list of numbers > 0")
        self.require(self.near_tie_cut in edges, "near_tie_cut", "must be one of margin_edges (the figure marks it)")

    def check_actions(self, n_actions: int, source: str) -> None:
        """A top-k flag needs k ≤ the networks' action count (else it can never be raised)."""
        too_big = [k for k in self.top_k if k > n_actions]
        if too_big:
            raise RecombError(f"{self._where}.top_k: k = {too_big[0]} is more than the {n_actions} actions of "
                              f"{source}")


def sample_states(n_states: int, max_states: int, seed: int) -> np.ndarray:
    """Indices of the analysed states: all of them, or a seeded sample of `max_states`, in file order."""
    if n_states <= max_states:
        return np.arange(n_states)
    return np.sort(np.random.default_rng(seed).choice(n_states, max_states, replace=False))


# ----------------------------------------------------------------------------- per-state measures


def mse_per_state(ref_q: torch.Tensor, other_q: torch.Tensor) -> np.ndarray:
    """Mean squared Q difference over the actions of each state."""
    return (ref_q.double() - other_q.double()).pow(2).mean(-1).numpy()


def cosine_per_state(ref_q: torch.Tensor, other_q: torch.Tensor) -> np.ndarray:
    """Cosine of the two Q vectors of each state (raw Q, as the seeds' metric)."""
    return F.cosine_similarity(ref_q.double(), other_q.double(), dim=-1).numpy()


def outcomes(action_a: np.ndarray, action_b: np.ndarray, action_child: np.ndarray) -> np.ndarray:
    """The `OUTCOMES` key of each state."""
    with_a, with_b = action_child == action_a, action_child == action_b
    return np.select([with_a & with_b, with_a, with_b, action_a == action_b],
                     ["all_agree", "with_a", "with_b", "against_both"], "neither")


def disagreement_table(index: np.ndarray, q_a: torch.Tensor, q_b: torch.Tensor, q_child: torch.Tensor,
                       cfg: AnalyzeConfig) -> dict[str, np.ndarray]:
    """One column per measure, one entry per analysed state (`index`: rows of the held-out file)."""
    actions = {who: q.argmax(-1).numpy() for who, q in (("a", q_a), ("b", q_b), ("child", q_child))}
    columns = {"state_index": index, **{f"action_{who}": a for who, a in actions.items()},
               "outcome": outcomes(actions["a"], actions["b"], actions["child"]),
               "child_agrees_a": actions["child"] == actions["a"], "child_agrees_b": actions["child"] == actions["b"],
               "parents_agree": actions["a"] == actions["b"]}
    parents = {"a": q_a, "b": q_b}
    per_parent = {"kl_parent": lambda q: metrics.kl_per_state(q, q_child, cfg.kl_temperature).numpy(),
                  "mse_parent": lambda q: mse_per_state(q, q_child),
                  "cosine_parent": lambda q: cosine_per_state(q, q_child),
                  "margin": lambda q: normalised_margin(q, q).double().numpy(),
                  **{f"top{k}_miss": lambda q, k=k: (~metrics.topk_hits(q, q_child, k)).numpy() for k in cfg.top_k}}
    for measure, compute in per_parent.items():
        for who, q in parents.items():
            columns[f"{measure}_{who}"] = compute(q)
    if cfg.include_logits:
        for who, q in (*parents.items(), ("child", q_child)):
            for action in range(q.shape[1]):
                columns[f"q_{who}_{action}"] = q[:, action].double().numpy()
    return columns


def rows(columns: dict[str, np.ndarray]) -> list[dict]:
    """The table as one dict of plain Python values per state (CSV and JSON rows)."""
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*(columns[n].tolist() for n in names))]


def outcome_counts(columns: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: int((columns["outcome"] == name).sum()) for name in OUTCOMES}


def disagreements_json(columns: dict[str, np.ndarray], cfg: AnalyzeConfig) -> dict:
    """The per-state records with their summary counts and what the columns mean."""
    return {"kl_direction": KL_DIRECTION, "kl_temperature": cfg.kl_temperature, "margin": MARGIN_DEFINITION,
            "outcomes": OUTCOMES, "counts": {"states": len(columns["state_index"]), **outcome_counts(columns)},
            "states": rows(columns)}


WORST_SCORES = {
    "max_kl": lambda c: np.maximum(c["kl_parent_a"], c["kl_parent_b"]),
    "kl_parent_a": lambda c: c["kl_parent_a"],
    "kl_parent_b": lambda c: c["kl_parent_b"],
    "max_mse": lambda c: np.maximum(c["mse_parent_a"], c["mse_parent_b"]),
    "mse_parent_a": lambda c: c["mse_parent_a"],
    "mse_parent_b": lambda c: c["mse_parent_b"],
}


def worst_states(columns: dict[str, np.ndarray], states: np.ndarray, criterion: str, k: int) -> dict:
    """The (at most) k analysed states with the largest `criterion`, largest first (ties: lower state index)."""
    score = WORST_SCORES[criterion](columns)
    order = np.argsort(-score, kind="stable")[:k]
    picked = rows({name: values[order] for name, values in columns.items()})
    for row, position in zip(picked, order):
        row.update(criterion_value=float(score[position]), state=states[position].tolist())
    return {"criterion": criterion, "k": k, "kl_direction": KL_DIRECTION, "states": picked}


def hidden_activations(model: QNetwork, states: torch.Tensor, layer: str) -> np.ndarray:
    """The output of hidden block `layer` (post-ReLU) for each state, captured by a forward hook."""
    captured = []
    handle = model.get_submodule(HIDDEN_LAYERS[layer]).register_forward_hook(
        lambda _module, _inputs, output: captured.append(output.detach().clone()))
    try:
        q_values(model, states)
    finally:
        handle.remove()
    return captured[0].numpy()


# ----------------------------------------------------------------------------- margins and near-ties


def near_tie_share(margin: np.ndarray, disagree: np.ndarray, cut: float, unc: UncertaintyConfig) -> dict:
    """How many disagreements, what share of them falls on near-ties (with interval), against the base rate.

    `enrichment` = share / base rate: 1 when disagreements ignore the margin. Without disagreements
    the share has no value and is left out (reports carry no nulls).
    """
    near = margin < cut
    found = {"disagreements": int(disagree.sum()), "near_tie_base_rate": float(near.mean())}
    if disagree.any():
        share = mean_interval(near[disagree], unc)
        found.update(near_tie_share=share["mean"], near_tie_share_low=share["low"], near_tie_share_high=share["high"])
        if near.any():
            found["enrichment"] = share["mean"] / found["near_tie_base_rate"]
    return found


def margin_bins(margin: np.ndarray, disagree: np.ndarray, edges: list[float], unc: UncertaintyConfig) -> list[dict]:
    """Disagreement rate (with interval) per normalised-margin bin [0, e1), [e1, e2), …, [e_last, ∞)."""
    bins = np.digitize(margin, edges)
    found = []
    for b in range(len(edges) + 1):
        inside = disagree[bins == b]
        row = {"states": len(inside)}
        if len(inside):
            rate = mean_interval(inside, unc)
            row.update(rate=rate["mean"], low=rate["low"], high=rate["high"])
        found.append(row)
    return found


def margin_analysis(comparisons: dict[str, tuple[torch.Tensor, torch.Tensor]], pooled: dict[str, tuple[str, ...]],
                    cfg: AnalyzeConfig, unc: UncertaintyConfig) -> dict[str, dict]:
    """Per (reference Q, other Q) pair: near-tie share of the other's disagreements and the rate per margin bin.

    `pooled` names groups of comparisons whose disagreements are also counted together (e.g. the
    child's with A and with B, each on the margin of the parent it departs from): near-tie share only.
    """
    found, flags = {}, {}
    for name, (ref_q, other_q) in comparisons.items():
        margin = normalised_margin(ref_q, ref_q).double().numpy()
        flags[name] = margin, (ref_q.argmax(-1) != other_q.argmax(-1)).numpy()
        found[name] = {"near_tie": near_tie_share(*flags[name], cfg.near_tie_cut, unc),
                       "bins": margin_bins(*flags[name], cfg.margin_edges, unc)}
    for group, members in pooled.items():
        margin, disagree = (np.concatenate([flags[m][i] for m in members]) for i in (0, 1))
        found[group] = {"near_tie": near_tie_share(margin, disagree, cfg.near_tie_cut, unc)}
    return found


def follows_more_confident(columns: dict[str, np.ndarray], unc: UncertaintyConfig) -> dict:
    """Where the parents disagree and the child takes a side: how often it is the parent with the larger
    normalised margin (what the balanced fine-tune teaches), with its interval."""
    sided = np.isin(columns["outcome"], ["with_a", "with_b"])
    found = {"states": int(sided.sum())}
    if sided.any():
        follows = (columns["outcome"][sided] == "with_a") == (columns["margin_a"][sided] > columns["margin_b"][sided])
        share = mean_interval(follows, unc)
        found.update(share=share["mean"], low=share["low"], high=share["high"])
    return found


def summary(columns: dict[str, np.ndarray], margins: dict[str, dict], n_heldout: int, cfg: AnalyzeConfig,
            unc: UncertaintyConfig) -> dict:
    """The metrics file: numbers only (definitions are in the Markdown report)."""
    means = {name: float(columns[name].mean()) for name in columns
             if name.startswith(("kl_parent_", "mse_parent_", "cosine_parent_"))}
    return {"n_heldout": n_heldout, "n_states": len(columns["state_index"]), "outcomes": outcome_counts(columns),
            "mean": means, "follows_more_confident_parent": follows_more_confident(columns, unc),
            "near_tie_cut": cfg.near_tie_cut, "near_tie": {name: found["near_tie"] for name, found in margins.items()}}


# ----------------------------------------------------------------------------- figures


def bin_labels(edges: list[float]) -> list[str]:
    bounds = [0.0, *edges]
    return [f"[{lo:g}, {hi:g})" for lo, hi in zip(bounds, edges)] + [f"≥ {edges[-1]:g}"]


def projection(states: np.ndarray, task: Task | None) -> tuple[np.ndarray, tuple[str, str]]:
    """Two coordinates per state and their axis labels: the task's two telling features where it names them
    (`Task.plane`: CartPole's pole angle and angular velocity), else the first two principal components (numpy
    SVD; each component's sign is fixed so that its largest-magnitude loading is positive, so the picture does not
    flip between runs)."""
    if task is not None and task.plane is not None:
        (x, x_label), (y, y_label) = task.plane
        return states[:, [x, y]], (x_label, y_label)
    centred = states.astype(np.float64) - states.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    coords = centred @ (components * signs[:, None]).T
    explained = singular[:2] ** 2 / max(float((singular ** 2).sum()), 1e-300)
    labels = [f"PC{i + 1} ({100 * share:.0f} % of variance)" for i, share in enumerate(explained)]
    if len(labels) == 1:  # a single feature: nothing to put on the second axis
        coords, labels = np.column_stack([coords, np.zeros(len(coords))]), [*labels, "(one feature only)"]
    return coords, (labels[0], labels[1])


SHORT_OUTCOMES = {"all_agree": "agrees with both", "with_a": "sides with A", "with_b": "sides with B",
                  "against_both": "against both (parents agree)", "neither": "neither (third action)"}
OUTCOME_STYLE = {"all_agree": ("lightgrey", "."), "with_a": ("C0", "o"), "with_b": ("C1", "s"),
                 "against_both": ("C3", "x"), "neither": ("C4", "^")}


def state_space_figure(states: np.ndarray, task: Task | None, columns: dict[str, np.ndarray]) -> "Figure":
    """Left: the states in a plane, coloured by where the child stands against the parents.
    Right: the states where the parents disagree, at (A's margin, B's margin): which parent the child follows."""
    coords, (x_label, y_label) = projection(states, task)
    fig = new_figure((11, 4.6))
    plane, margins = fig.subplots(1, 2)
    outcome = columns["outcome"]
    for name, (colour, marker) in OUTCOME_STYLE.items():
        chosen = outcome == name
        if chosen.any():
            plane.scatter(coords[chosen, 0], coords[chosen, 1], s=6 if name == "all_agree" else 12, c=colour,
                          marker=marker, linewidths=0.8, label=f"{OUTCOMES[name]} ({int(chosen.sum())})")
            if name != "all_agree":
                margins.scatter(columns["margin_a"][chosen], columns["margin_b"][chosen], s=12, c=colour,
                                marker=marker, linewidths=0.8, label=f"{SHORT_OUTCOMES[name]} ({int(chosen.sum())})")
    plane.set_xlabel(x_label)
    plane.set_ylabel(y_label)
    plane.set_title("Held-out states by the child's greedy action", fontsize=10)
    plane.legend(fontsize=7, loc="best", markerscale=1.5)
    departs = outcome != "all_agree"
    top = float(max(columns["margin_a"][departs].max(initial=1.0), columns["margin_b"][departs].max(initial=1.0)))
    margins.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="equal margins")
    margins.set_xlabel("parent A's normalised Q margin")
    margins.set_ylabel("parent B's normalised Q margin")
    margins.set_title("States where the child departs from a parent,\nby the parents' margins", fontsize=10)
    margins.legend(fontsize=7, loc="best")
    for ax in (plane, margins):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


COMPARISON_LABELS = {"child_vs_A": "child vs parent A", "child_vs_B": "child vs parent B",
                     "child_vs_parents": "child vs A and vs B, pooled",
                     "ptq_A": "int8 (PTQ) vs float student A", "ptq_B": "int8 (PTQ) vs float student B"}


def margin_figure(margins: dict[str, dict], cfg: AnalyzeConfig, confidence: float) -> "Figure":
    """Disagreement rate per bin of the reference's normalised margin (with intervals), and the states per bin."""
    binned = {name: found["bins"] for name, found in margins.items() if "bins" in found}
    fig = new_figure((8.5, 6.2))
    rates, counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    n_bins = len(cfg.margin_edges) + 1
    width = 0.8 / len(binned)
    for i, (name, bins) in enumerate(binned.items()):
        x = np.arange(n_bins) + (i - (len(binned) - 1) / 2) * width
        has = [j for j, b in enumerate(bins) if "rate" in b]
        y = np.array([bins[j]["rate"] for j in has])
        err = np.array([[bins[j]["rate"] - bins[j]["low"] for j in has],
                        [bins[j]["high"] - bins[j]["rate"] for j in has]])
        rates.errorbar(x[has], y, yerr=err, marker="o", markersize=4, capsize=2, color=f"C{i}",
                       label=COMPARISON_LABELS.get(name, name))
        counts.bar(x, [b["states"] for b in bins], width=width, color=f"C{i}", label=COMPARISON_LABELS.get(name, name))
    cut = cfg.margin_edges.index(cfg.near_tie_cut) + 0.5
    for ax in (rates, counts):
        ax.axvline(cut, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3, axis="y")
    rates.annotate(f"near-tie cut {cfg.near_tie_cut:g}", (cut, 1.0), xycoords=("data", "axes fraction"),
                   xytext=(4, -12), textcoords="offset points", fontsize=8, color="grey")
    rates.set_ylabel(f"disagreement rate ({100 * confidence:.0f} % interval)")
    rates.set_title("Disagreement against the reference network's normalised Q margin", fontsize=10)
    rates.legend(fontsize=7, loc="best")
    counts.set_ylabel("states in bin")
    counts.set_xticks(np.arange(n_bins), bin_labels(cfg.margin_edges))
    counts.set_xlabel("reference's normalised Q margin "
                      "(top-1 − top-2 Q over its median; the parent, or the float student)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- report


def siding_sentence(follows: dict) -> str:
    if "share" not in follows:
        return "The child never takes one parent's side against the other's."
    return (f"Where the parents disagree and the child takes a side ({follows['states']} states), it sides with the "
            f"parent of larger normalised margin on {with_interval(follows['share'], follows['low'], follows['high'])} "
            "of them (right panel of the state-space figure).")


def analysis_markdown(found: dict, margins: dict[str, dict], worst: dict, cfg: AnalyzeConfig, confidence: float,
                      files: list[str]) -> str:
    """What a person reads: definitions, the outcome counts, the near-tie shares, the margin bins, the worst states."""
    n = found["n_states"]
    outcome_rows = [[OUTCOMES[name], count, count / n] for name, count in found["outcomes"].items()]
    tie_rows = []
    for name, share in found["near_tie"].items():
        interval = with_interval(share.get("near_tie_share"), share.get("near_tie_share_low"),
                                 share.get("near_tie_share_high"))
        tie_rows.append([COMPARISON_LABELS.get(name, name), share["disagreements"], interval,
                         share["near_tie_base_rate"], share.get("enrichment")])
    binned = {name: m["bins"] for name, m in margins.items() if "bins" in m}
    bin_rows = [[label, *(f"{with_interval(b.get('rate'), b.get('low'), b.get('high'))} ({b['states']})"
                          for b in (bins[j] for bins in binned.values()))]
                for j, label in enumerate(bin_labels(cfg.margin_edges))]
    worst_rows = [[r["state_index"], r["outcome"], r["action_a"], r["action_b"], r["action_child"], r["kl_parent_a"],
                   r["kl_parent_b"], r["mse_parent_a"], r["mse_parent_b"], r["margin_a"], r["margin_b"]]
                  for r in worst["states"]]
    parts = [
        "# Error analysis of the fine-tuned child", "",
        f"{n} of {found['n_heldout']} held-out states analysed (at most `analyze.max_states`, seeded sample beyond).",
        f"KL: {KL_DIRECTION}. {MARGIN_DEFINITION[0].upper()}{MARGIN_DEFINITION[1:]}. A near-tie is a state whose "
        f"reference network's normalised margin is below {cfg.near_tie_cut:g}; the reference is the parent for the "
        "child and the float student for its int8 (PTQ) student.", "",
        "## Where the child stands", "", table(["outcome", "states", "share"], outcome_rows), "",
        siding_sentence(found["follows_more_confident_parent"]), "",
        "## Disagreements on near-ties", "",
        "Share of a network's disagreements (greedy action ≠ the reference's) that fall on the reference's "
        f"near-ties, with its {100 * confidence:.0f} % bootstrap interval; base rate = share of all analysed states "
        "that are near-ties; enrichment = share / base rate (1: disagreements ignore the margin). The pooled row "
        "counts each departure (a state where the child departs from both parents counts twice).", "",
        table(["network vs reference", "disagreements", "share on near-ties", "base rate", "enrichment"], tie_rows), "",
        "## Disagreement rate by the reference's normalised margin", "",
        "rate [interval] (states in bin)", "",
        table(["margin bin", *(COMPARISON_LABELS.get(name, name) for name in binned)], bin_rows), "",
        f"## The {len(worst_rows)} worst states by `{worst['criterion']}`", "",
        table(["state", "outcome", "A", "B", "child", "KL A", "KL B", "MSE A", "MSE B", "margin A", "margin B"],
              worst_rows), "",
        "## Files", "", *(f"- `{path}`" for path in files),
    ]
    return "\n".join(parts) + "\n"
