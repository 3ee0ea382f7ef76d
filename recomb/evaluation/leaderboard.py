"""Rank fine-tuned children of crossover recipes into one leaderboard.

The children come either from DVC experiments (the rows of `dvc.api.exp_show()`, or of
`dvc exp show --csv` saved to a file, read by the `recomb leaderboard` command) or from
the in-process `search` stage; both build the same row from a recombination report, so
their leaderboards read and compare alike.

A row holds what chose it — the validation figures of the report's `selection`
section (`val_primary` with its interval, `val_return` over the choosing episodes),
ranked by `selection.rank` — and what reports it: held-out agreement with A and B,
primary and primary / U with their intervals, and the return over the reported
episodes (mean, std, interval). `tied` marks rows the data cannot tell from the
leader (`selection.mark_ties`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Callable

from ..errors import RecombError
from ..operator_knobs import READS, RECIPE_KNOBS, recipe_knobs, recipe_text
from ..reports import return_figure, table
from ..reports import with_interval as interval_text
from ..selection import mark_ties, rank, reaches_bar
from .validation import ROLE_NETWORKS

METRICS_FILE = "data/reports/recombination.json"
PARAMS_FILE = "params.yaml"
RECIPE_KEYS = ("parents", "mode", "alpha", "seed")  # what every revision's crossover section has held
NONE = "—"


def _get(report: dict, path: str, where: str):
    """`report[a][b]...` for the dotted `path`; a missing key names itself, so an old report reads as one line."""
    value = report
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise RecombError(f"{where}: recombination report has no {path}")
        value = value[key]
    return value


def _returns(report: dict) -> dict:
    """Return intervals by network; null metrics arrive empty (`_cell`), so an absent section means no environment."""
    return report.get("greedy_return_interval") or {}


def reported_figures(figures: dict, returns: dict | None, where: str) -> dict:
    """The held-out part of a row from one network's agreement figures and its return interval."""
    row = {}
    for key in ("primary", "agreement_a", "agreement_b", "primary_over_bound", "gain_over_copy"):
        row[key] = _get(figures, key, where)
        interval = _get(figures, f"{key}_ci", where)
        row[f"{key}_low"], row[f"{key}_high"] = interval["low"], interval["high"]
    for key in ("mean", "std", "low", "high"):
        row["online_return" if key == "mean" else f"online_return_{key}"] = None if returns is None else returns[key]
    return row


def recipe_fields(crossover: dict) -> dict:
    """A crossover section's recipe: parents, mode and each knob the mode reads; None for a knob it does not
    read (it cannot change the child) or one the section predates."""
    reads = recipe_knobs(crossover["mode"])
    knobs = {key: crossover.get(key) if key in reads else None for key in RECIPE_KNOBS}
    cast = {"alpha": float, "seed": int}
    return {"parents": crossover["parents"], "mode": crossover["mode"],
            **{key: cast[key](value) if key in cast and value is not None else value for key, value in knobs.items()}}


def row_from_report(experiment: str, crossover: dict, regime: str, report: dict) -> dict:
    """The leaderboard row of the child named `child` in a validate_recombination (or search) report."""
    chosen = _get(report, "selection.child", experiment)
    return {"experiment": experiment, **recipe_fields(crossover), "regime": regime,
            "val_primary": _get(chosen, "primary", experiment), "val_primary_low": _get(chosen, "primary_low", experiment),
            "val_primary_high": _get(chosen, "primary_high", experiment), "val_return": chosen.get("return"),
            **reported_figures(_get(report, "children.child", experiment), _returns(report).get("child"), experiment)}


def baseline_rows(figures: dict, returns: dict, parents_role: str | None) -> list[dict]:
    """The scoring roles A and B as if they were children: the figures a child has to beat (held-out only).

    `figures` maps `parent_A`/`parent_B` to the roles' own agreement figures against the
    two roles; each agrees fully with itself, so its primary is the roles' agreement.
    Nothing chose them: the validation and recipe fields are None.
    """
    return [{"experiment": f"parent_{side} (baseline)", "parents": parents_role, "mode": None,
             **{key: None for key in RECIPE_KNOBS}, "regime": None, "val_primary": None, "val_primary_low": None, "val_primary_high": None,
             "val_return": None,
             **reported_figures(figures[f"parent_{side}"], returns.get(f"parent_{side}"), "baseline")}
            for side in ("A", "B")]


def ranked(rows: list[dict], degenerate_threshold: float, min_return: float | None,
           difference: Callable[[dict, dict], tuple[float, float]] | None = None) -> list[dict]:
    """Rows best first (`selection.rank`), with `tied` (`selection.mark_ties`) and `degenerate`.

    `degenerate` flags a validation primary below the threshold (a child that copies
    one parent and ignores the other); a threshold of 0 flags nothing.
    """
    rows = mark_ties(rank(rows, min_return), min_return, difference)
    return [dict(row, degenerate=row["val_primary"] < degenerate_threshold) for row in rows]


# ----------------------------------------------------------------------------- dvc exp show rows

# What a row needs, as dotted names: params.yaml's recipe, and the parts of the report `row_from_report`
# and `baseline_rows` read (not whole sections: params.yaml has a `selection` section too).
PARAM_PARTS = ("crossover", "finetune.regime", "validate_recombination.parents_role")
REPORT_PARTS = ("confidence", "selection.child", "children.child", "greedy_return_interval.child",
                *(f"{part}.{name}_{side}" for part in ("agreement", "greedy_return_interval")
                  for name in ROLE_NETWORKS.values() for side in ("A", "B")))


def role_baselines(report: dict, parents_role: str | None) -> list[dict]:
    """`baseline_rows` of a recombination report: its scoring role's networks (`ROLE_NETWORKS`), the parents' when
    the role is not known."""
    name = ROLE_NETWORKS.get(parents_role, "parent")
    agreement, returns = _get(report, "agreement", "baseline"), _returns(report)
    return baseline_rows({f"parent_{side}": _get(agreement, f"{name}_{side}", "baseline") for side in ("A", "B")},
                         {f"parent_{side}": returns.get(f"{name}_{side}") for side in ("A", "B")}, parents_role)


def _cell(value):
    """A cell's value, None when empty: DVC writes a leaf that is null or missing in a file it read as the text
    'None' (`dvc.api.exp_show`) or '' (`--csv`), a leaf of a file it could not read as '!'."""
    return None if value is None or (isinstance(value, str) and value in ("", "None", "!")) else value


def file_tree(row: dict, path: str, parts: tuple[str, ...]) -> dict:
    """The leaves of the file `path` under the dotted `parts` in one flat row, nested again; empty leaves left out.

    DVC names a leaf `path:name` when another file (params or metrics) has a leaf of that name, else just
    `name`; so a column prefixed with another file is not this file's, and an unprefixed one is taken as
    this file's (only `parts` are read, names no other file of the project has).
    """
    tree: dict = {}
    for column, value in row.items():
        if column.startswith(f"{path}:"):
            name = column[len(path) + 1:]
        elif ":" in column:
            continue
        else:
            name = column
        value = _cell(value)
        if value is None or not any(name == part or name.startswith(f"{part}.") for part in parts):
            continue
        *branch, leaf = name.split(".")
        node = tree
        for key in branch:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                break
        else:
            if not isinstance(node.get(leaf), dict):
                node[leaf] = value
    return tree


def finished_revisions(rows) -> list[tuple[str, str, dict]]:
    """(kind, name, row) of every finished revision: experiments, then baseline commits, then the workspace.

    `rows` are those of `dvc.api.exp_show()` (or of `dvc exp show --csv`): one flat dict per revision with
    `Experiment`, `rev`, `typ`, `State` and a column per params or metrics leaf (`file_tree`). `typ` is `baseline`
    for the workspace (`rev` `workspace`) and the commits (`rev` the branch name or short sha), another value
    for an experiment (`Experiment` its name, else `rev`). An experiment whose `State` is neither empty (run
    in the workspace) nor `Success` (run from the queue), i.e. queued, running or failed, is left out.
    """
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "rev" in row and "typ" in row
                                             for row in rows):
        raise RecombError("not `dvc exp show` rows (expected a list of rows with 'rev' and 'typ', "
                          "as dvc.api.exp_show() or `dvc exp show --csv` give)")
    experiments, commits, workspace = [], [], []
    for row in rows:
        if row["typ"] == "baseline" and row["rev"] == "workspace":
            workspace.append(("workspace", "workspace", row))
        elif row["typ"] == "baseline":
            commits.append(("commit", str(row["rev"]), row))
        elif str(_cell(row.get("State")) or "success").lower() == "success":
            experiments.append(("experiment", str(_cell(row.get("Experiment")) or row["rev"]), row))
    return experiments + commits + workspace


FIXED_COLUMNS = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")  # text, as the API leaves them


def experiment_rows() -> list[dict]:
    """`dvc.api.exp_show()` of the DVC project around the current directory; a DVC error is one line."""
    import dvc.api  # here, not at the top: the search stage imports this module and needs no DVC
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from scmrepo.exceptions import SCMError

    try:
        root = Repo.find_root()  # else exp_show would try to clone the current directory and fail with 'SCM error'
        return dvc.api.exp_show(repo=root)
    except (DvcException, SCMError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise RecombError(f"dvc.api.exp_show failed: {first}") from None


def rows_from_csv(text: str, name: str) -> list[dict]:
    """`dvc exp show --csv` output (saved for offline use) as the rows `dvc.api.exp_show()` gives: an empty
    cell is None, a number a float, anything else text."""
    if text.lstrip().startswith(("[", "{")):
        raise RecombError(f"{name}: JSON, not `dvc exp show --csv` output (save `dvc exp show --csv > FILE`)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, line) for line in reader if line]
    except csv.Error as exc:
        raise RecombError(f"{name}: not valid CSV ({exc})") from None
    header = lines[0][1] if lines else []
    if "rev" not in header or "typ" not in header:
        raise RecombError(f"{name}: not `dvc exp show --csv` output (no 'rev' and 'typ' columns)")

    def cell(column: str, value: str):
        if value == "" or column in FIXED_COLUMNS:
            return value or None
        try:
            return float(value)
        except ValueError:
            return value

    rows = []
    for number, line in lines[1:]:
        if len(line) != len(header):
            raise RecombError(f"{name}: not `dvc exp show --csv` output (line {number} has {len(line)} cells, "
                              f"the header {len(header)})")
        rows.append({column: cell(column, value) for column, value in zip(header, line)})
    return rows


def _params_and_report(row: dict) -> tuple[dict, str, dict, str | None] | None:
    """(crossover, regime, report, parents_role) of one revision's row, or None when it lacks the params or the
    metrics. The report holds only `REPORT_PARTS`; numbers arrive as floats (`row_from_report` makes the seed int)."""
    params = file_tree(row, PARAMS_FILE, PARAM_PARTS)
    report = file_tree(row, METRICS_FILE, REPORT_PARTS)
    crossover = params.get("crossover")
    regime = (params.get("finetune") or {}).get("regime")
    if not report or not isinstance(crossover, dict) or regime is None:
        return None
    if not all(key in crossover for key in RECIPE_KEYS) or crossover["mode"] not in READS:
        return None
    return crossover, regime, report, (params.get("validate_recombination") or {}).get("parents_role")


def _rows_of(revisions: list[tuple[str, str, dict]]) -> tuple[list[dict], list[dict], float] | None:
    """`rows_from_exp_show` of some finished revisions; None when none has a recombination report."""
    taken, reports, roles, seen = [], [], [], set()
    for kind, name, revision in revisions:
        found = _params_and_report(revision)
        if found is None:
            continue
        crossover, regime, report, role = found
        key = json.dumps([recipe_fields(crossover), regime, report], sort_keys=True)
        if kind != "experiment" and key in seen:
            continue
        seen.add(key)
        taken.append(row_from_report(name, crossover, regime, report))
        reports.append(report)
        roles.append(role)
    if not taken:
        return None
    return taken, role_baselines(reports[0], roles[0]), _get(reports[0], "confidence", "baseline")


def rows_from_exp_show(rows) -> tuple[list[dict], list[dict], float]:
    """Unranked rows of every finished experiment with a recombination report, the parents' baselines,
    and the confidence level of the reports' intervals, from `dvc exp show` rows (`finished_revisions`).

    The baseline commit and the workspace are rows too (named after the branch or
    short rev, and `workspace`): they may hold a child no experiment has. They are
    left out when their recipe and report equal a row already taken (experiments
    first, then commits), e.g. the workspace after `dvc exp apply`; so each child
    appears once, under the name `dvc exp apply` accepts. The workspace row trusts
    that its metrics match its params (`dvc repro` ran). Baselines come from the
    first report taken.
    """
    found = _rows_of(finished_revisions(rows))
    if found is None:
        raise RecombError(f"no finished experiment with {METRICS_FILE} and crossover/finetune params")
    return found


RECIPE_SECTIONS = ("crossover", "finetune", "regimes")  # the params that make a child's recipe


def _outputs(stage: dict) -> list[str]:
    return [entry if isinstance(entry, str) else next(iter(entry))
            for kind in ("outs", "metrics", "plots") for entry in stage.get(kind) or []]


def context_params(stages: dict, target: str = "validate_recombination") -> list[str]:
    """The params (dotted prefixes) that make a child's context rather than its recipe: those read by `target`
    and the stages upstream of it in dvc.yaml's `stages`, but the recipe's (`RECIPE_SECTIONS`) and the
    whole-file check of the `params` stage. An interpolated entry (`parents.${parents.source}`) stands for
    everything under its fixed part (`parents`). Children that differ in any of them are not ranked together.
    """
    upstream, todo = {target}, [target]
    while todo:
        deps = stages[todo.pop()].get("deps") or []
        for name, stage in stages.items():
            if name not in upstream and any(dep == out or dep.startswith(out.rstrip("/") + "/")
                                            for dep in deps for out in _outputs(stage)):
                upstream.add(name)
                todo.append(name)
    prefixes = set()
    for name in upstream:
        for entry in stages[name].get("params") or []:
            if isinstance(entry, str):
                fixed = entry.split(".${")[0]
                if fixed.split(".")[0] not in RECIPE_SECTIONS:
                    prefixes.add(fixed)
    return sorted(prefixes)


def context_keys(params: dict, prefixes: list[str]) -> list[str]:
    """The dotted name of every leaf of a params.yaml tree that lies under one of `prefixes`."""
    def leaves(node, path: tuple[str, ...]) -> list[str]:
        if isinstance(node, dict) and node:
            return [leaf for key, value in node.items() for leaf in leaves(value, (*path, str(key)))]
        return [".".join(path)]
    return [leaf for leaf in leaves(params, ())
            if any(leaf == prefix or leaf.startswith(f"{prefix}.") for prefix in prefixes)]


def param_value(row: dict, name: str):
    """One params.yaml leaf of a `dvc exp show` row (its column is `params.yaml:name` when a metric shares the
    name), None when the revision's params.yaml has no such key."""
    return _cell(row.get(f"{PARAMS_FILE}:{name}", row.get(name)))


@dataclass(frozen=True)
class Group:
    """Experiments that share every context param (`context`): ranked together, against their own baselines."""

    context: dict
    rows: list[dict]
    baselines: list[dict]
    confidence: float


def groups_from_exp_show(rows, keys: list[str], source: str = "dvc exp show") -> list[Group]:
    """`rows_from_exp_show` per group of revisions that agree on the params `keys`, in order of first appearance.

    A revision's parents, task, students or scoring make its child's figures; rows that differ in them
    do not compare like with like, so each group gets its own ranking and baselines. `source` names where
    the rows came from in the error when none has a child.
    """
    partitions: dict[str, tuple[dict, list]] = {}
    for revision in finished_revisions(rows):
        context = {name: param_value(revision[2], name) for name in keys}
        partitions.setdefault(repr(list(context.values())), (context, []))[1].append(revision)
    groups = [Group(context, *found) for context, revisions in partitions.values()
              if (found := _rows_of(revisions)) is not None]
    if not groups:
        raise RecombError(f"{source}: no finished experiment with a recombination report ({METRICS_FILE}) and "
                          "crossover/finetune params")
    return groups


def differing_keys(groups: list[Group]) -> list[str]:
    """The context params whose values are not the same in every group: what tells the groups apart."""
    keys = groups[0].context if groups else {}
    return [key for key in keys if len({repr(g.context.get(key)) for g in groups}) > 1]


# ----------------------------------------------------------------------------- rendering


def recipe(row: dict, with_parents: bool = False) -> str:
    """`layer`, `random α=0.5 seed=1`, `aligned α=0.5 activations repair` (`operator_knobs.recipe_text`)."""
    text = recipe_text(row)
    return f"{text} on {row['parents']}" if with_parents else text


def _number(value: float | None, digits: int = 4) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def with_interval(row: dict, key: str) -> str:
    """A row's figure and its interval (`reports.with_interval`)."""
    return interval_text(row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high"))


def return_text(row: dict) -> str:
    """A row's return over the reported episodes: mean ± std, and the interval of the mean."""
    if row.get("online_return") is None:
        return NONE
    return return_figure({"mean": row["online_return"], "std": row["online_return_std"],
                          "low": row["online_return_low"], "high": row["online_return_high"]})


def markdown(rows: list[dict], baselines: list[dict], min_return: float | None) -> str:
    """Ranked rows, then the baselines (rank —). The parents set enters the recipe only when rows differ in it.

    The first columns chose the ranking (validation states, choosing episodes); the
    held-out columns only report.
    """
    mixed_parents = len({row["parents"] for row in rows}) > 1
    header = ["rank", "experiment", "recipe", "regime", "val primary", "val return", "acts", "tied",
              "held-out primary", "agreement A", "agreement B", "primary/U", "gain over copy", "return (mean ± std)",
              "degenerate"]

    def acts(row: dict) -> str:
        return NONE if row["val_return"] is None or min_return is None else (
            "yes" if reaches_bar(row["val_return"], min_return) else "no")

    lines = [[row["rank"], row["experiment"], recipe(row, mixed_parents), row["regime"],
              with_interval(row, "val_primary"), _number(row["val_return"], 1), acts(row),
              "yes" if row["tied"] else "no", with_interval(row, "primary"), with_interval(row, "agreement_a"),
              with_interval(row, "agreement_b"), with_interval(row, "primary_over_bound"),
              with_interval(row, "gain_over_copy"), return_text(row), "yes" if row["degenerate"] else "no"]
             for row in rows]
    lines += [[NONE, row["experiment"], NONE, NONE, NONE, NONE, NONE, NONE, with_interval(row, "primary"),
               with_interval(row, "agreement_a"), with_interval(row, "agreement_b"),
               with_interval(row, "primary_over_bound"), with_interval(row, "gain_over_copy"), return_text(row), NONE]
              for row in baselines]
    return table(header, lines) + "\n"


def recommendation(rows: list[dict], baselines: list[dict], how_to_apply: str, min_return: float | None,
                   confidence: float, paired: bool) -> str:
    """The leader of the ranked rows, what chose it, what it reports, its ties, and how to adopt it.

    `paired` says which tie rule marked the rows (`selection.mark_ties`), so the text names it.
    """
    best = rows[0]
    pct = f"{100 * confidence:g}%"
    lines = [
        f"Recommended: {recipe(best, True)}, fine-tune regime {best['regime']} (experiment {best['experiment']}).",
        f"  chosen on validation states drawn from train: primary {with_interval(best, 'val_primary')}"
        f" ({pct} interval); return over the choosing episodes {_number(best['val_return'], 1)}",
        f"  held-out (reported, never used to choose): primary {with_interval(best, 'primary')},"
        f" agreement A {with_interval(best, 'agreement_a')}, agreement B {with_interval(best, 'agreement_b')}",
        f"  primary/U {with_interval(best, 'primary_over_bound')}; gain over a copy of either parent "
        f"{with_interval(best, 'gain_over_copy')}; return {return_text(best)}",
    ]
    measured = min_return is not None and best["val_return"] is not None
    if measured and not reaches_bar(best["val_return"], min_return):
        lines.append(f"  warning: no child reaches the return bar {min_return:g} on the choosing episodes; "
                     "this is the best by validation primary, and it does not act well enough")
    tied = [r for r in rows if r["tied"]]
    rule = ("the paired interval of the difference in validation primary contains 0" if paired else
            "their own validation primary interval reaches the leader's value")
    if tied:
        lines.append(f"  tied: {len(tied)} other child(ren) cannot be told from it at {pct} ({rule}): "
                     + ", ".join(r["experiment"] for r in tied) + ". It leads by rank order, not by a measured margin.")
    elif len(rows) > 1:
        runner_up = rows[1]
        versus = (f"the runner-up {runner_up['experiment']} ({recipe(runner_up, True)}, {runner_up['regime']})")
        if reaches_bar(best["val_return"], min_return) != reaches_bar(runner_up["val_return"], min_return):
            lines.append(f"  it is ahead of {versus} because that one does not reach the return bar {min_return:g} "
                         f"(return {_number(runner_up['val_return'], 1)}, validation primary "
                         f"{runner_up['val_primary']:.4f})")
        else:
            lines.append(f"  it is ahead of {versus} beyond the {pct} interval: validation primary "
                         f"{best['val_primary'] - runner_up['val_primary']:+.4f}, return "
                         f"{_number(best['val_return'], 1)} vs {_number(runner_up['val_return'], 1)}")
    else:
        lines.append("  no runner-up: a single child was ranked")
    parents_agreement = baselines[0]["primary"]
    beats = best["agreement_a_low"] > parents_agreement and best["agreement_b_low"] > parents_agreement
    lines.append(f"  the parents agree with each other on {parents_agreement:.4f} of held-out states; the child agrees "
                 f"more with both, beyond its interval: {'yes' if beats else 'NO'}")
    if best["degenerate"]:
        lines.append("  warning: even the winner is flagged degenerate (validation primary below the threshold)")
    return "\n".join([*lines, "", "How to apply:", how_to_apply]) + "\n"
