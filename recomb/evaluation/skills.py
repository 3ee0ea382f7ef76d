"""The skills map: in every condition a network is played in (nominal, each parent's own variant, each physics
and observation-noise shift of `generalize`), which networks pass the task's bar, and what the child keeps.

Recombination is meant to give a child what each parent can do. Per condition, the child's *retention* is its
return over the best parent's (defined where that is positive: a ratio of negative returns reads backwards),
and its *union coverage* is the share of the conditions passed by either parent that it passes too. A parent
copied unchanged covers only its own; a child covering 1.0 lost nothing either parent could do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots import new_figure
from ..reports import fmt, table
from .generalization import OBSERVATION_NOISE, unshifted_level

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..training.tasks import Task

PARENTS = ("parent_A", "parent_B")


def _label(kind: str, level: float, task: Task) -> str:
    if kind == OBSERVATION_NOISE:
        return f"observation noise {level:g} σ"
    return f"{kind} ×{level:g}" if task.shifts[kind].multiplier else f"{kind} {level:g}"


def parent_variants(task: Task, variants: list[dict]) -> tuple[dict, dict]:
    """({label: condition}, {label: the (kind, level) among the physics shifts it repeats, or None}) of the
    parents' own variants (their sidecars' {shift: level}); nominal ones are the nominal condition already."""
    owners: dict[tuple, list[str]] = {}
    for pair, variant in zip("AB", variants):
        setting = task.setting(variant, f"parent {pair}'s sidecar: variant")
        if setting:
            owners.setdefault(setting, []).append(pair)
    conditions, spots = {}, {}
    for setting, pairs in owners.items():
        label = f"{' and '.join(pairs)}'s variant: {', '.join(_label(k, v, task) for k, v in setting)}"
        conditions[label] = task.condition(setting)
        spots[label] = setting[0] if len(setting) == 1 else None
    return conditions, spots


def skills_map(returns: dict, task: Task, pass_return: float, variants: dict[str, tuple]) -> dict:
    """Per condition every network's return interval and pass, the best parent's return and each network's
    retention; per network its union coverage and lowest retention where a parent passes.

    `returns` is `generalization.evaluate`'s (with each parent's variant under "variants"); `variants` maps a
    variant's label to the (kind, level) it repeats among the physics shifts, or None when it is its own."""
    networks = list(returns)
    repeated = {spot for spot in variants.values() if spot is not None}
    rows = [("nominal", {n: returns[n]["nominal"] for n in networks})]
    rows += [(label, {n: returns[n]["variants"][label] for n in networks}) for label in variants]
    rows += [(_label(kind, level, task), {n: returns[n]["shifts"][kind][level] for n in networks})
             for kind, levels in returns[networks[0]]["shifts"].items() for level in levels
             if level != unshifted_level(kind, task) and (kind, level) not in repeated]
    conditions = []
    for label, found in rows:
        best = max(found[p]["mean"] for p in PARENTS)
        conditions.append({"condition": label, "returns": found, "best_parent": best,
                           "parent_passed": best >= pass_return,
                           "passed": {n: found[n]["mean"] >= pass_return for n in networks},
                           "retention": {n: found[n]["mean"] / best if best > 0 else None for n in networks}})
    by_parents = [c for c in conditions if c["parent_passed"]]
    summary = {}
    for n in networks:
        kept = [c["retention"][n] for c in by_parents if c["retention"][n] is not None]
        summary[n] = {"conditions_passed": sum(c["passed"][n] for c in conditions),
                      "union_coverage": (sum(c["passed"][n] for c in by_parents) / len(by_parents)
                                         if by_parents else None),
                      "min_retention": min(kept) if kept else None}
    return {"pass_return": pass_return, "conditions": conditions, "parents_passed": len(by_parents),
            "networks": summary}


def skills_metrics(skills: dict) -> dict:
    """The headline numbers (for `dvc exp show`): per network its coverage, lowest retention and passes."""
    return {"pass_return": skills["pass_return"], "conditions": len(skills["conditions"]),
            "parents_passed": skills["parents_passed"],
            "networks": {n: {k: v for k, v in s.items() if v is not None} for n, s in skills["networks"].items()}}


def skills_markdown(skills: dict, shown: list[str]) -> str:
    """The map as a table (returns with intervals, ✓ where the bar is passed) and the coverage line."""
    bar = skills["pass_return"]
    rows = [[c["condition"], *(f"{c['returns'][n]['mean']:.1f} [{c['returns'][n]['low']:.0f}, "
                               f"{c['returns'][n]['high']:.0f}]{' ✓' if c['passed'][n] else ''}" for n in shown),
             "–" if c["retention"]["child"] is None else fmt(c["retention"]["child"])]
            for c in skills["conditions"]]
    totals = [["union coverage", *("–" if skills["networks"][n]["union_coverage"] is None
                                   else fmt(skills["networks"][n]["union_coverage"]) for n in shown), ""],
              ["lowest retention", *("–" if skills["networks"][n]["min_retention"] is None
                                     else fmt(skills["networks"][n]["min_retention"]) for n in shown), ""]]
    return "\n".join([
        "## Skills map", "",
        f"Greedy return per condition (✓: ≥ the task's bar, {bar:g}). Retention: the child's return over the best "
        "parent's (where that is positive). Union coverage: the share of the conditions passed by either parent "
        f"({skills['parents_passed']} here) that the network passes too; lowest retention: over those conditions.",
        "", table(["condition", *shown, "child retention"], rows + totals), ""])


def skills_figure(skills: dict | None, shown: list[str], title: str) -> Figure:
    """Networks × conditions at a glance: green where the bar is passed, red where not, the return written in
    (without an environment: a figure that says so)."""
    from matplotlib.colors import ListedColormap

    if skills is None:
        fig = new_figure((5, 1.5))
        fig.text(0.5, 0.5, f"{title}: no returns measured, no skills map", ha="center", va="center")
        return fig
    conditions = skills["conditions"]
    passed = [[float(c["passed"][n]) for c in conditions] for n in shown]
    fig = new_figure((1.0 + 0.62 * len(conditions), 1.6 + 0.42 * len(shown)))
    ax = fig.subplots()
    ax.imshow(passed, cmap=ListedColormap(["#f4b6b0", "#b7e1b0"]), vmin=0, vmax=1, aspect="auto")
    for i, n in enumerate(shown):
        for j, c in enumerate(conditions):
            ax.text(j, i, f"{c['returns'][n]['mean']:.0f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(conditions)), [c["condition"] for c in conditions], rotation=60, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(shown)), [f"{n} ({skills['networks'][n]['union_coverage']:.2f})"
                                      if skills["networks"][n]["union_coverage"] is not None else n for n in shown],
                  fontsize=8)
    ax.set_title(f"{title}: greedy return per condition (green: ≥ {skills['pass_return']:g}; "
                 "in brackets: union coverage)", fontsize=9)
    fig.tight_layout()
    return fig
