"""The ablation's results: one row per (condition, seed), then statistics across seeds.

A row reads the reports a run's stages wrote (distillation, quantized, recombination);
a figure a condition's stages do not make is None (`n/a` in the tables). Across seeds,
each condition and figure gets mean, sample standard deviation, interquartile mean and
a seeded bootstrap interval of the mean (`recomb.stats.interval`), and one chosen pair of
conditions the probability that the first beats the second on a seed (paired over the
seeds both ran; a tie counts one half), with its interval: when that interval holds 0.5
the seeds cannot tell the two apart, and the report says "tie".
"""

from __future__ import annotations

import json

import numpy as np

from ..artifacts import Outputs
from ..errors import RecombError
from ..reports import fmt, table
from ..stats import UncertaintyConfig, interval
from .ablation import SEED_KEYS, STAGES
from .leaderboard import file_tree, finished_revisions

# (column, meaning): every figure of a row, higher is better for each.
FIGURES = (
    ("agreement_a", "child's held-out action agreement with reference A (the pair `validate_recombination."
                    "parents_role` names: float parents, float students or int8 students)"),
    ("agreement_b", "the same with reference B"),
    ("oracle_agreement", "share of held-out states where the child takes the action of A or of B"),
    ("primary", "min(agreement A, agreement B)"),
    ("primary_over_bound", "primary / U, U = (1 + agreement(A, B)) / 2, the most any network can reach"),
    ("student_agreement_a", "student A's held-out action agreement with its teacher (parent A)"),
    ("student_agreement_b", "student B's, with parent B"),
    ("student_return_a", "student A's greedy mean return (validate_distillation's episodes)"),
    ("student_return_b", "student B's"),
    ("int8_return_a", "int8 student A's greedy mean return (the int8 pair the condition crosses: QAT when "
                      "crossover.parents is qat, else PTQ)"),
    ("int8_return_b", "int8 student B's"),
    ("child_return", "fine-tuned child's greedy mean return (validate_recombination's episodes)"),
)
COLUMNS = ("condition", "seed", "stages", "reference", "int8") + tuple(name for name, _ in FIGURES)
FIGURE_PANELS = ("primary_over_bound", "child_return", "oracle_agreement", "student_agreement_a")


def run_row(condition: str, seed: int, stages: tuple[str, ...], int8_method: str, reference: str,
            distillation: dict, quantized: dict | None, recombination: dict | None) -> dict:
    """One (condition, seed) row from the reports its stages wrote (None: that stage did not run); `reference`
    is the pair the child is scored against, `int8_method` the int8 students the condition crosses."""
    row = dict.fromkeys(COLUMNS)
    row.update(condition=condition, seed=seed, stages=" → ".join(stages))
    for pair in ("a", "b"):
        report = ("pairs", pair.upper())
        row[f"student_agreement_{pair}"] = _at(distillation, *report, "fidelity", "action_agreement")
        row[f"student_return_{pair}"] = _at(distillation, *report, "greedy_return", "student")
        if quantized is not None:
            row["int8"] = int8_method
            row[f"int8_return_{pair}"] = _at(quantized, "students", f"{int8_method}_{pair.upper()}", "greedy_return",
                                             "int8")
    if recombination is not None:
        row["reference"] = reference
        row.update({key: _at(recombination, "children", "child", key)
                    for key in ("agreement_a", "agreement_b", "oracle_agreement", "primary", "primary_over_bound")})
        row["child_return"] = _at(recombination, "greedy_return", "child")
    return row


def _at(report: dict, *keys: str):
    """report[k1][k2]…, None where a leaf is missing or null (no environment; `dvc exp show` drops null leaves)."""
    for key in keys:
        report = report.get(key) if isinstance(report, dict) else None
    return report


def csv_rows(rows: list[dict]) -> list[dict]:
    """Rows for the CSV: a figure the condition does not make reads `n/a`, not an empty cell."""
    return [{k: "n/a" if v is None else v for k, v in r.items()} for r in rows]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def rows_from_experiments(revisions: list[dict], params: dict, params_file: str, reports: dict[str, str]) -> list[dict]:
    """Summary rows from `dvc exp show` rows: one per finished experiment with a recombination report, its seed
    the value of the seed key (`SEED_KEYS`, by the experiment's parents.source).

    Experiments that differ in other params than the seed form separate conditions, each named by its values
    of the params that vary between conditions (`experiments` when all agree); `params` (the workspace's)
    names the keys compared. A second experiment of the same condition and seed is left out. `reports` maps distillation,
    quantized and recombination to the metrics files they are.
    """
    keys = [k for k in _flat(params) if not k.startswith("ablation.")]
    found: dict[str, dict] = {}
    for kind, name, row in finished_revisions(revisions):
        values = {k: row.get(f"{params_file}:{k}", row.get(k)) for k in keys}
        trees = {what: file_tree(row, path, parts) for (what, path), parts in
                 zip(reports.items(), (("pairs",), ("students",), ("children.child", "greedy_return")))}
        source = values.get("parents.source")
        if (kind != "experiment" or not trees["recombination"].get("children") or not trees["distillation"]
                or source not in SEED_KEYS):
            continue
        seed_keys = SEED_KEYS[source]
        condition = json.dumps({k: v for k, v in values.items() if k not in seed_keys}, sort_keys=True, default=str)
        seed = int(float(values[seed_keys[0]]))
        found.setdefault(condition, {}).setdefault(seed, (values, trees))
    if not found:
        raise RecombError("no finished DVC experiment with a recombination report (queue the seeds: "
                          "dvc exp run --queue -S parents.dqn.seed=0,2,4,6,8, then dvc exp run --run-all)")
    conditions = [json.loads(c) for c in found]
    varying = [k for k in conditions[0] if len({json.dumps(c.get(k), default=str) for c in conditions}) > 1]
    rows = []
    for values_of, seeds in zip(conditions, found.values()):
        label = ",".join(f"{k}={values_of.get(k)}" for k in varying) or "experiments"
        for seed, (values, trees) in sorted(seeds.items()):
            int8 = "qat" if values.get("crossover.parents") == "qat" else "ptq"
            rows.append(run_row(label, seed, STAGES, int8, values.get("validate_recombination.parents_role"),
                                trees["distillation"], trees["quantized"] or None, trees["recombination"]))
    return rows


def _interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle half (scipy's trim_mean, 25 % cut at each end): robust to one odd seed."""
    from scipy import stats
    return float(stats.trim_mean(values, 0.25))


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis)


def aggregates(rows: list[dict], unc: UncertaintyConfig) -> list[dict]:
    """One row per condition and figure that every seed of the condition has: n, mean, std, IQM, interval."""
    out = []
    for condition in dict.fromkeys(r["condition"] for r in rows):
        mine = [r for r in rows if r["condition"] == condition]
        for figure, _ in FIGURES:
            values = [r[figure] for r in mine]
            if any(v is None for v in values):
                continue
            x = np.asarray(values, dtype=np.float64)
            low, high = interval((x,), _mean, unc)
            out.append({"condition": condition, "figure": figure, "n_seeds": len(x), "mean": float(x.mean()),
                        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                        "iqm": _interquartile_mean(x), "low": low, "high": high})
    return out


def _wins(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return ((a > b) + 0.5 * (a == b)).mean(axis=axis)


def improvement(rows: list[dict], condition: str, over: str, unc: UncertaintyConfig) -> list[dict]:
    """`condition` against `over` per figure both have, paired over their common seeds: the mean difference with
    its bootstrap interval (which decides: `tie` when it holds 0), P(beats on a seed) with its interval, and
    the exact two-sided sign test over the seeds that differ (a bootstrap over a handful of seeds that all
    agree has no spread; the sign test says how little 5 seeds can prove)."""
    from scipy import stats

    first = {r["seed"]: r for r in rows if r["condition"] == condition}
    second = {r["seed"]: r for r in rows if r["condition"] == over}
    seeds = [s for s in first if s in second]
    out = []
    for figure, _ in FIGURES:
        pairs = [(first[s][figure], second[s][figure]) for s in seeds]
        if not pairs or any(a is None or b is None for a, b in pairs):
            continue
        a, b = (np.asarray(side, dtype=np.float64) for side in zip(*pairs))
        low, high = interval((a - b,), _mean, unc)
        p_low, p_high = interval((a, b), _wins, unc)
        wins, losses = int((a > b).sum()), int((a < b).sum())
        sign_p = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
        out.append({"figure": figure, "n_seeds": len(seeds), "difference": float((a - b).mean()),
                    "difference_low": low, "difference_high": high, "probability": float(_wins(a, b)),
                    "low": p_low, "high": p_high, "wins": wins, "losses": losses, "sign_test_p": sign_p,
                    "tie": bool(low <= 0 <= high)})
    return out


def metrics(stats: list[dict], wins: list[dict]) -> dict:
    """The numbers `dvc exp show` reads: per condition, the headline figures' mean and interval; P(improvement)."""
    headline = ("primary_over_bound", "child_return", "student_agreement_a", "student_agreement_b")
    out: dict = {}
    for row in stats:
        if row["figure"] in headline:
            out.setdefault(row["condition"], {})[row["figure"]] = {k: row[k] for k in ("mean", "low", "high")}
    out["improvement"] = {w["figure"]: {k: w[k] for k in ("difference", "difference_low", "difference_high",
                                                          "probability", "sign_test_p", "tie")}
                          for w in wins if w["figure"] in headline}
    return out


def _cell(value) -> str:
    return "n/a" if value is None else fmt(value)


def markdown(rows: list[dict], stats: list[dict], wins: list[dict], pair: tuple[str, str] | None,
             confidence: float, seed_text: str, where: str) -> str:
    """The summary: per-seed rows, per-condition statistics, P(improvement) of `pair`, what each column means."""
    level = f"{100 * confidence:g} %"
    per_seed = table(list(COLUMNS), [[_cell(r[c]) for c in COLUMNS] for r in rows])
    across = table(["condition", "figure", "seeds", "mean", "std", "IQM", f"{level} interval of the mean"],
                   [[s["condition"], s["figure"], s["n_seeds"], fmt(s["mean"]), fmt(s["std"]), fmt(s["iqm"]),
                     f"[{fmt(s['low'])}, {fmt(s['high'])}]"] for s in stats])
    lines = ["# Ablation: conditions × seeds", "",
             f"{seed_text} Where each run is: {where}. `n/a`: the condition's stages do not make that figure "
             "(or there is no environment to play).", "",
             "## Per seed", "", per_seed, "",
             "## Across seeds", "",
             f"Sample standard deviation (n − 1); IQM: the mean of the middle half of the seeds; interval: seeded "
             f"bootstrap of the mean over seeds ({level}). Few seeds make wide intervals: read them, not the means.",
             "", across, ""]
    if pair:
        better, over = pair
        beats = table(["figure", "seeds", f"mean difference ({better} − {over})", f"{level} interval",
                       f"P({better} beats {over})", f"{level} interval", "wins / losses", "sign test p", "verdict"],
                      [[w["figure"], w["n_seeds"], fmt(w["difference"]),
                        f"[{fmt(w['difference_low'])}, {fmt(w['difference_high'])}]", fmt(w["probability"]),
                        f"[{fmt(w['low'])}, {fmt(w['high'])}]", f"{w['wins']} / {w['losses']}", fmt(w["sign_test_p"]),
                        "tie" if w["tie"] else (better if w["difference"] > 0 else over)] for w in wins])
        references = {r["reference"] for r in rows if r["condition"] in pair}
        lines += [f"## Does {better} beat {over}?", "",
                  "Paired over the seeds both ran. The verdict is the mean difference's bootstrap interval over "
                  "seeds: `tie` when it holds 0. P(beats) is the share of seeds where the first scores higher (a "
                  "tie counts ½). With few seeds that all agree a bootstrap has no spread, so the exact sign test "
                  "over the seeds that differ is given too: 5 of 5 seeds is p = 0.0625.", ""]
        if len(references) > 1:
            lines += [f"The two score their children against different references ({', '.join(sorted(map(str, references)))}"
                      "; see `reference`): compare agreement A/B with care, primary / U and returns directly.", ""]
        lines += [beats if wins else "No figure both conditions have.", ""]
    meaning = "\n".join(f"- `{name}`: {text}" for name, text in FIGURES)
    lines += ["## Columns", "", "- `reference`: the pair the child is scored against (`validate_recombination."
              "parents_role`); `int8`: which int8 students the int8 returns are (ptq or qat).", meaning, ""]
    return "\n".join(lines)


def figure(rows: list[dict], stats: list[dict], confidence: float):
    """Per headline figure: each seed's value as a point, each condition's mean with its interval."""
    from ..plots import new_figure

    panels = [p for p in FIGURE_PANELS if any(s["figure"] == p for s in stats)]
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    fig = new_figure((3.6 * max(1, len(panels)), 3.8))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    seeds = sorted(dict.fromkeys(r["seed"] for r in rows))
    for ax, panel in zip(axes, panels):
        labelled = set()
        for x, condition in enumerate(conditions):
            for offset, seed in enumerate(seeds):
                value = next((r[panel] for r in rows if r["condition"] == condition and r["seed"] == seed), None)
                if value is not None:
                    jitter = (offset - (len(seeds) - 1) / 2) * 0.06
                    ax.plot(x + jitter, value, "o", color=f"C{offset}", alpha=0.6, markersize=4,
                            label=None if seed in labelled else f"seed {seed}")
                    labelled.add(seed)
            stat = next((s for s in stats if s["condition"] == condition and s["figure"] == panel), None)
            if stat is not None:
                ax.errorbar(x + 0.25, stat["mean"], yerr=[[stat["mean"] - stat["low"]], [stat["high"] - stat["mean"]]],
                            fmt="s", color="black", capsize=3)
        ax.set_xticks(range(len(conditions)), conditions, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(conditions) - 0.2)
        ax.set_title(panel.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3)
    if panels:
        axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Ablation: each seed (points), each condition's mean and {100 * confidence:g} % interval (black)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def summary(rows: list[dict], unc: UncertaintyConfig, pair: tuple[str, str] | None, seed_text: str, where: str,
            files: dict[str, str]) -> Outputs:
    """The summary files of these rows (`files`: rows, aggregates, metrics, markdown, figure → path), not yet
    written: the ablation stage's and `recomb ablation --from-exps`'s."""
    stats, wins = aggregates(rows, unc), improvement(rows, *pair, unc) if pair else []
    out = Outputs()
    out.add_csv(files["rows"], csv_rows(rows))
    out.add_csv(files["aggregates"], stats)
    out.add_json(files["metrics"], metrics(stats, wins))
    out.add_text(files["markdown"], markdown(rows, stats, wins, pair, unc.confidence, seed_text, where))
    out.add_figure(files["figure"], figure(rows, stats, unc.confidence))
    return out
