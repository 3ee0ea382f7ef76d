"""Generalization: every network on in-distribution, held-out and shifted states, and in shifted environments.

Offline, each network's greedy actions are compared with parent A's and parent B's on
sets of states: a seeded sample of the train states (in-distribution), the held-out
states, and shifted copies of those (Gaussian noise in units of each feature's held-out
std, input scaling, a user's own shifted states). The gap is how far a network's
primary falls below its in-distribution primary, in percentage points; the fine-tuned
child's gap is gated. Online, the greedy return of each network under observation noise
(the same std levels) and under changed physics, on the same fixed-seed episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from ..config import Section
from ..parallel import map_processes
from ..plots import new_figure
from ..reports import checks_table, fmt, table, with_interval
from ..stats import UncertaintyConfig, mean_interval
from ..training import envs
from ..errors import RecombError
from ..training.tasks import SHIFT_NOTES, Task, known_shifts
from ..artifacts import USER_FOLDER, in_user_folder
from ..metrics import bound
from .validation import RobustnessConfig, all_passed, child_figures, gate, parent_hits, q_values, robustness_slices

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GATED = "child"            # the network whose gap is gated: the pipeline's fine-tuned child
NOISE, SCALING, USER_SET = "gaussian_noise", "input_scaling", "shifted_file"
GATED_SETS = ("heldout", USER_SET)  # generalization proper; see `with_gaps`
OBSERVATION_NOISE = "observation_noise"


def level_key(level: float) -> str:
    """A level as a metrics key without a dot (DVC flattens nested keys with dots): 0.05 → `0p05`."""
    return f"{level:g}".replace(".", "p")


def _distinct(levels: list[float]) -> bool:
    """No two levels name the same metrics key."""
    return len({level_key(v) for v in levels}) == len(levels)


def _levels_ok(levels: list[float]) -> bool:
    return all(v > 0 for v in levels) and _distinct(levels)


@dataclass(frozen=True)
class GeneralizeConfig(Section):
    """The `generalize` params section."""

    sections = ("generalize",)

    states: int                # states per set: a seeded sample (0 = every held-out state)
    sample_seed: int           # draws the in-distribution sample (and the held-out one when `states` caps it)
    noise_std: list[float]     # Gaussian noise levels in units of each feature's held-out std (states and observations)
    noise_seed: int
    input_scaling: list[float]
    shifted_states: str        # a float32 (N, input_dim) .npy under data/user/, or '' for none
    gap_figure: Literal["primary", "primary_over_bound"]  # the figure whose drop below in-distribution is the gap
    max_drop_pp: float         # gate: the child's gap may be at most this many percentage points
    report_only: bool          # report the gate, but do not let it fail a set
    eval_episodes: int
    eval_seed: int
    physics: dict              # task id → {shift key: levels} (`Task.shifts`); the parents' task's row is played
    workers: int               # processes scoring networks side by side

    def check(self) -> None:
        self.require(self.states >= 0, "states", "must be ≥ 0 (0 = every held-out state)")
        self.require(_levels_ok(self.noise_std), "noise_std", "levels must be > 0 and distinct")
        self.require(_levels_ok(self.input_scaling), "input_scaling", "factors must be > 0 and distinct")
        self.require(not self.shifted_states or in_user_folder(self.shifted_states), "shifted_states", f"must be '' or a file under {USER_FOLDER}/ (the folder dvc.yaml tracks)")
        self.require(self.max_drop_pp >= 0, "max_drop_pp", "must be ≥ 0")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")
        self.require(self.workers >= 1, "workers", "must be ≥ 1")
        for env, row in self.physics.items():
            _check_shifts(row or {}, known_shifts(env), f"{self._where}.physics.{env}", env)


def _check_shifts(row: dict, shifts: dict, where: str, env: str) -> None:
    """A task's row of shift levels: keys it has, distinct numbers each of which it can play."""
    if not isinstance(row, dict):
        raise RecombError(f"{where}: expected a mapping of shift keys to lists of levels (got {row!r})")
    for key, levels in row.items():
        if key not in shifts:
            raise RecombError(f"{where}.{key}: {env} has no such shift (it has: {', '.join(shifts) or 'none'})")
        if not isinstance(levels, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v != v
                                               for v in levels):
            raise RecombError(f"{where}.{key}: expected a list of numbers (got {levels!r})")
        if not _distinct(levels):
            raise RecombError(f"{where}.{key}: levels must be distinct (got {levels!r})")
        for level in levels:
            if why := shifts[key].check(level):
                raise RecombError(f"{where}.{key}: {why} (got {level!r})")


# ----------------------------------------------------------------------------- offline: sets of states


def state_sets(train: np.ndarray, heldout: np.ndarray, cfg: GeneralizeConfig,
               shifted: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The sets, each of `cfg.states` states (all held-out ones with 0): in-distribution first.

    The in-distribution set is a seeded sample of the train states as large as the held-out
    set, so the two differ only in where the states come from. Noisy and scaled sets are
    copies of the held-out set (row for row), the noise drawn once and scaled per level.
    """
    rng = np.random.default_rng(cfg.sample_seed)
    n = min(cfg.states or len(heldout), len(heldout))

    def sample(states: np.ndarray, size: int) -> np.ndarray:
        return states[np.sort(rng.choice(len(states), size, replace=False))] if size < len(states) else states

    held = sample(heldout, n)
    sets = {"in_distribution": sample(train, min(n, len(train))), "heldout": held}
    for level in cfg.noise_std:
        noisy = robustness_slices(held, RobustnessConfig(level, 1.0, cfg.noise_seed))[NOISE]
        sets[f"{NOISE}_{level_key(level)}"] = noisy.numpy()
    for factor in cfg.input_scaling:
        sets[f"{SCALING}_{level_key(factor)}"] = held * np.float32(factor)
    if shifted is not None:
        sets[USER_SET] = sample(shifted, min(n, len(shifted)))
    return sets


# ----------------------------------------------------------------------------- shifted environments


def unshifted_level(kind: str, task: Task) -> float:
    """The level of a shift kind that leaves the environment as it is: no noise, the nominal value."""
    return 0.0 if kind == OBSERVATION_NOISE else task.shifts[kind].unshifted


def environment_shifts(cfg: GeneralizeConfig, feature_std: np.ndarray,
                       task: Task) -> dict[str, dict[float, envs.Condition]]:
    """Per shift kind, its conditions by level, the unshifted level included (noise 0, the nominal value).
    Observation noise applies to every task; physics shifts to the task's row of `generalize.physics`."""
    kinds = {}
    if cfg.noise_std:
        kinds[OBSERVATION_NOISE] = {level: envs.Condition(observation_noise=tuple(level * feature_std.astype(float)))
                                    for level in cfg.noise_std}
    for key, levels in (cfg.physics.get(task.env_id) or {}).items():
        if levels:
            kinds[key] = {float(level): task.shifted(key, level) for level in levels}
    return {kind: dict(sorted({unshifted_level(kind, task): envs.Condition(), **levels}.items()))
            for kind, levels in kinds.items()}


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class NetworkJob:
    """One network's share of the work (a worker process runs it): its figures on every set of
    states (`sets`: name → (states, A's picks, B's picks, parents agree)) and its returns under
    every condition (none without an environment)."""

    model: torch.nn.Module
    sets: dict[str, tuple[np.ndarray, ...]] | None
    task: Task | None
    conditions: list[envs.Condition]
    cfg: GeneralizeConfig
    unc: UncertaintyConfig


def score_network(job: NetworkJob) -> tuple[dict | None, list[dict]]:
    """({set: agreement figures with intervals, oracle}, [return interval per condition])."""
    figures = None
    if job.sets is not None:
        figures = {}
        for name, (states, picks_a, picks_b, parents_agree) in job.sets.items():
            hits = parent_hits(torch.from_numpy(picks_a), torch.from_numpy(picks_b),
                               q_values(job.model, torch.from_numpy(states)))
            figures[name] = child_figures(hits, parents_agree, job.unc)
    returns = []
    if job.conditions:  # every condition over the same episodes (CartPole: in one batch)
        episodes = job.task.condition_returns(job.model, job.conditions, job.cfg.eval_episodes, job.cfg.eval_seed,
                                              job.cfg.noise_seed)
        returns = [mean_interval(r, job.unc) for r in episodes]
    return figures, returns


def evaluate(parent_a, parent_b, networks: dict, sets: dict[str, np.ndarray], task: Task | None,
             shifts: dict[str, dict[float, envs.Condition]] | None, cfg: GeneralizeConfig,
             unc: UncertaintyConfig, variants: dict[str, envs.Condition] | None = None) -> tuple[dict, dict | None]:
    """Every network on every set of states and, with `shifts`, in every shifted environment and in the
    parents' own `variants` (by label).

    Returns ({set: {n_states, parents_agreement (+ interval), networks: {name: figures}}},
    {network: {"nominal": interval, "shifts": {kind: {level: interval}}, "variants": {label: interval}}} or
    None). A parent's
    own row on a set would only restate the parents' agreement a, so parents get returns only.
    One job per network, spread over `cfg.workers` forked processes.
    """
    found = {}
    prepared = {}
    for name, states in sets.items():
        x = torch.from_numpy(states)
        picks_a, picks_b = q_values(parent_a, x).argmax(-1).numpy(), q_values(parent_b, x).argmax(-1).numpy()
        agree = picks_a == picks_b
        prepared[name] = (states, picks_a, picks_b, agree)
        interval = mean_interval(agree, unc)
        found[name] = {"n_states": len(states), "parents_agreement": interval["mean"],
                       "parents_agreement_ci": {"low": interval["low"], "high": interval["high"]}, "networks": {}}
    nominal = envs.Condition()
    variants = variants or {}
    conditions = [] if shifts is None else list(dict.fromkeys(
        [nominal, *(c for levels in shifts.values() for c in levels.values()), *variants.values()]))
    jobs = [NetworkJob(model, None if any(model is parent for parent in (parent_a, parent_b)) else prepared,
                       task, conditions, cfg, unc) for model in networks.values()]
    returns = {} if shifts is not None else None
    for name, (figures, intervals) in zip(networks, map_processes(score_network, jobs, cfg.workers,
                                                                  start_method="fork")):
        for set_name, f in (figures or {}).items():
            found[set_name]["networks"][name] = f
        if shifts is not None:
            by_condition = dict(zip(conditions, intervals))
            returns[name] = {"nominal": by_condition[nominal], "shifts": {
                kind: {level: by_condition[c] for level, c in levels.items()} for kind, levels in shifts.items()},
                "variants": {label: by_condition[c] for label, c in variants.items()}}
    return found, returns


def with_gaps(sets: dict[str, dict], cfg: GeneralizeConfig) -> dict:
    """Each set's drop in `cfg.gap_figure` below in-distribution (pp) per network, and the gate on the
    child's drop where it applies (`GATED_SETS`), with the set's `passed` (None where not gated).

    The noise and scaling sets are stress tests: every network drops there, the parents too,
    so their drops are compared across networks, not gated. With `report_only` the gate is
    still computed and shown, but no set fails."""
    reference = sets["in_distribution"]["networks"]
    for name, found in sets.items():
        for network, figures in found["networks"].items():
            figures["drop_pp"] = 100 * (reference[network][cfg.gap_figure] - figures[cfg.gap_figure])
        gated = name in GATED_SETS
        found["checks"] = gate([(f"{GATED}_{cfg.gap_figure}_drop_pp", found["networks"][GATED]["drop_pp"], "<=",
                                 cfg.max_drop_pp)]) if gated else {}
        found["passed"] = (cfg.report_only or all_passed(found["checks"])) if gated else None
    return {"report_only": cfg.report_only,
            "overall_passed": all(s["passed"] for s in sets.values() if s["passed"] is not None), "sets": sets}


def metrics(summary: dict, returns: dict | None, task: Task | None) -> dict:
    """The metrics file (numbers and booleans only, small enough for `dvc exp show`).

    Per set and network the point figures and the drop; the intervals are in the Markdown
    report. Mean returns per network: the unshifted one and per kind {level key: mean}.
    """
    kept = ("agreement_a", "agreement_b", "oracle_agreement", "primary", "primary_over_bound", "drop_pp")
    gates_key = "report_only_checks" if summary["report_only"] else "checks"  # only real gates gate the pipeline
    sets = {name: {"n_states": s["n_states"], **({"passed": s["passed"]} if s["passed"] is not None else {}),
                   "parents_agreement": s["parents_agreement"], **({gates_key: s["checks"]} if s["checks"] else {}),
                   "networks": {n: {k: f[k] for k in kept} for n, f in s["networks"].items()}}
            for name, s in summary["sets"].items()}
    found = {"report_only": summary["report_only"], "overall_passed": summary["overall_passed"], "sets": sets}
    if returns is not None:
        found["returns"] = {name: {"nominal": r["nominal"]["mean"], **{
            kind: {level_key(level): interval["mean"] for level, interval in levels.items()
                   if level != unshifted_level(kind, task)}
            for kind, levels in r["shifts"].items()}} for name, r in returns.items()}
    return found


def returns_rows(returns: dict) -> list[dict]:
    """One row per (shift kind, level), the unshifted level included, with each network's mean return (DVC plots)."""
    first = next(iter(returns.values()))["shifts"]
    return [{"shift": kind, "level": level, **{name: r["shifts"][kind][level]["mean"] for name, r in returns.items()}}
            for kind, levels in first.items() for level in levels]


# ----------------------------------------------------------------------------- the report and the figure


def _set_label(name: str) -> str:
    kind, _, level = name.rpartition("_")
    if kind == NOISE:
        return f"Gaussian noise {level.replace('p', '.')} σ"
    if kind == SCALING:
        return f"input scaling ×{level.replace('p', '.')}"
    return name.replace("_", " ")


def _figure(f: dict, key: str) -> str:
    return with_interval(f[key], **f[f"{key}_ci"])


FIGURE_NAMES = {"primary": "primary", "primary_over_bound": "primary / U"}


def markdown(summary: dict, cfg: GeneralizeConfig, confidence: float, task: Task | None,
             returns: dict | None) -> str:
    """Sets at a glance, every network per set, and the returns under each environment shift."""
    sets = summary["sets"]
    verdict = "PASSED" if summary["overall_passed"] else "FAILED"
    pct = f"{100 * confidence:g} %"
    gap = FIGURE_NAMES[cfg.gap_figure]
    overview = [[_set_label(name), s["n_states"], _figure(s, "parents_agreement"),
                 _figure(s["networks"][GATED], "primary"), _figure(s["networks"][GATED], "primary_over_bound"),
                 s["networks"][GATED]["drop_pp"], "not gated" if s["passed"] is None else s["passed"]]
                for name, s in sets.items()]
    parts = [
        f"# Generalization — {verdict}{' (report only: the gate does not fail a set)' if cfg.report_only else ''}",
        "",
        "A = parent A, B = parent B. In-distribution: a seeded sample of the train states (the fine-tuning "
        "validation split included: not trained on, but chosen on), as many as the held-out set. Noisy and scaled "
        "sets are the held-out states shifted (noise std in units of each feature's held-out std)"
        + (f"; shifted file: `{cfg.shifted_states}`" if cfg.shifted_states else "") + f". Gap: how far a network's {gap} falls below its in-distribution {gap}, in percentage points "
        f"(positive = worse); the gate: the fine-tuned child's gap ≤ {cfg.max_drop_pp:g} pp on the held-out states "
        "and on a shifted file; the noise and scaling sets are stress tests, where the parents drop too: compare "
        "the networks' drops there, they are not gated. A parent's own row "
        f"would restate the parents' agreement a. Brackets: {pct} bootstrap intervals over states (agreements) or "
        "episodes (returns).",
        "",
        table(["set", "states", "parents agree (a)", "child primary", "child primary / U", "child gap (pp)",
               "passed"], overview),
    ]
    for name, s in sets.items():
        rows = [[network, _figure(f, "agreement_a"), _figure(f, "agreement_b"), f["oracle_agreement"],
                 _figure(f, "primary"), _figure(f, "primary_over_bound"), f["drop_pp"]]
                for network, f in s["networks"].items()]
        parts += ["", f"## {_set_label(name)} ({s['n_states']} states)", "",
                  table(["network", "agreement A", "agreement B", "oracle", "primary", "primary / U", "gap (pp)"],
                        rows)]
        if s["checks"]:
            parts += ["", checks_table(s["checks"])]
    parts += ["", "## Shifted environment", ""]
    if returns is None:
        parts.append("No environment (the parents' sidecar names none, e.g. synthetic parents): no returns measured.")
    else:
        networks = list(returns)
        rows = [["none", "–", *(_return_cell(returns[n]["nominal"]) for n in networks)]]
        rows += [[kind, fmt(level), *(_return_cell(returns[n]["shifts"][kind][level]) for n in networks)]
                 for kind, levels in returns[networks[0]]["shifts"].items()
                 for level in levels if level != unshifted_level(kind, task)]
        parts += [f"{task.env_id}: greedy return, mean [{pct} interval], over {cfg.eval_episodes} episodes (env seeds "
                  f"{cfg.eval_seed}..{cfg.eval_seed + cfg.eval_episodes - 1}) per condition, the same episodes in "
                  "every condition. Observation noise: std in units of each feature's held-out std, seen by the "
                  f"policy only; physics: {SHIFT_NOTES.get(task.env_id, 'none')}.", "",
                  table(["shift", "level", *networks], rows)]
    parts += ["", "- primary: min(agreement with A, agreement with B); oracle: share of states where the network "
                  "picks A's greedy action or B's; U = a + (1 − a)/2 with a the parents' agreement on that set, "
                  "so primary / U discounts states on which the parents themselves disagree."]
    return "\n".join(parts) + "\n"


def _return_cell(r: dict) -> str:
    return f"{r['mean']:.1f} [{r['low']:.0f}, {r['high']:.0f}]"


def _line_style(name: str) -> dict:
    """Parents solid, students dashed, int8 students dotted, children thick: families tell apart at a glance."""
    if name.startswith("parent"):
        return {"linestyle": "-", "linewidth": 1.2}
    if name.startswith("student_int8"):
        return {"linestyle": ":", "linewidth": 1.6}
    if name.startswith("student"):
        return {"linestyle": "--", "linewidth": 1.2}
    return {"linestyle": "-", "linewidth": 2.4}


def _panels(summary: dict, cfg: GeneralizeConfig, returns: dict | None, task: Task | None) -> list[dict]:
    """What each panel draws: title, axis labels, log x (multipliers), the unshifted x, lines
    {network: [(x, y, low, high)]}, and a reference line or None."""
    sets, figure = summary["sets"], cfg.gap_figure
    panels = []
    for kind, levels, xlabel in ((NOISE, cfg.noise_std, "noise std (held-out std units)"),
                                 (SCALING, cfg.input_scaling, "input scale factor")):
        if not levels:
            continue
        unshifted = 0.0 if kind == NOISE else 1.0
        points = sorted([(unshifted, "heldout"), *((v, f"{kind}_{level_key(v)}") for v in levels)])
        lines = {n: [(x, sets[name]["networks"][n][figure], *sets[name]["networks"][n][f"{figure}_ci"].values())
                     for x, name in points] for n in sets["heldout"]["networks"]}
        a = [(x, sets[name]["parents_agreement"]) for x, name in points]
        reference = a if figure == "primary" else [(x, v / bound(v)) for x, v in a]
        panels.append({"title": f"held-out states: {kind.replace('_', ' ')}", "xlabel": xlabel,
                       "log_x": kind == SCALING, "ylabel": FIGURE_NAMES[figure], "unshifted": unshifted, "lines": lines,
                       "reference": (f"parent A or B ({'a' if figure == 'primary' else 'a / U'})", reference)})
    for kind in next(iter(returns.values()))["shifts"] if returns else []:
        lines = {n: [(level, r["mean"], r["low"], r["high"]) for level, r in found["shifts"][kind].items()]
                 for n, found in returns.items()}
        noise = kind == OBSERVATION_NOISE
        multiplier = not noise and task.shifts[kind].multiplier
        panels.append({"title": f"{task.env_id}: {kind.replace('_', ' ')}", "ylabel": "greedy return",
                       "log_x": multiplier, "ylim": (0, 1.04 * task.max_return) if task.max_return else None,
                       "xlabel": ("noise std (held-out std units)" if noise else "multiplier of the nominal value"
                                  if multiplier else f"{kind.replace('_', ' ')} (the environment's value)"),
                       "unshifted": unshifted_level(kind, task), "lines": lines, "reference": None})
    return panels


def _colours(names: list[str]) -> dict[str, str]:
    """A colour per network, the same in every panel; the gated child in black, grey kept for references."""
    palette = [f"C{i}" for i in range(10) if i != 7]
    others = [n for n in names if n != GATED]
    return {GATED: "black", **{name: palette[i % len(palette)] for i, name in enumerate(others)}}


def robustness_figure(summary: dict, cfg: GeneralizeConfig, returns: dict | None, task: Task | None,
                      confidence: float, title: str) -> "Figure":
    """Panels per shift kind, one line per network with its interval band, the unshifted level dotted.

    Offline panels: the gap figure against the noise level / scaling factor of the held-out
    states, with what a parent itself scores there (from the parents' agreement a) in grey.
    Environment panels: the greedy return under each observation noise and physics shift.
    """
    panels = _panels(summary, cfg, returns, task)
    names = list(dict.fromkeys([*(returns or {}), *summary["sets"]["heldout"]["networks"]]))
    colours = _colours(names)
    cols = min(4, max(1, len(panels)))
    rows = max(1, -(-len(panels) // cols))
    height = 3.3 * rows + 1.0
    fig = new_figure((4.3 * cols, height))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    handles = {}
    for ax, panel in zip(axes, panels):
        # the gated child last, so it is drawn on top: the search's best child may be the same network
        for name, points in sorted(panel["lines"].items(), key=lambda item: item[0] == GATED):
            x, y, low, high = (list(v) for v in zip(*points))
            handles[name], = ax.plot(x, y, marker=".", color=colours[name], label=name, **_line_style(name))
            ax.fill_between(x, low, high, color=colours[name], alpha=0.12, linewidth=0)
        if panel["reference"]:
            label, points = panel["reference"]
            handles[label], = ax.plot(*zip(*points), color="grey", linestyle="-.", linewidth=1, label=label)
        if panel["log_x"]:
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
            ax.set_xticks(sorted({x for points in panel["lines"].values() for x, *_ in points}))
            ax.xaxis.set_major_formatter("{x:g}")
        if panel.get("ylim"):
            ax.set_ylim(*panel["ylim"])
        ax.axvline(panel["unshifted"], color="black", linestyle=":", linewidth=1)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"], fontsize=9)
        ax.set_ylabel(panel["ylabel"], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.axis("off")
    if not panels:
        axes[0].text(0.5, 0.5, "no shift configured and no environment", ha="center", va="center")
    order = [n for n in names if n in handles] + [n for n in handles if n not in names]
    fig.legend([handles[n] for n in order], order, loc="lower center", ncol=min(6, max(1, len(order))),
               fontsize=8, frameon=False)
    fig.suptitle(f"{title} (dotted vertical line: unshifted; bands: {100 * confidence:g} % intervals)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.8 / height, 1, 1))
    return fig
