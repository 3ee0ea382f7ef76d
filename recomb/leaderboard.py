"""Rank fine-tuned children of crossover recipes into one leaderboard.

The children come either from DVC experiments (`dvc exp show --json`, read by the
`recomb leaderboard` command) or from the in-process `search` stage; both build the
same row from a recombination report, so their leaderboards read and compare alike.
A row: rank, experiment, parents, mode, alpha, seed, regime, primary (min agreement
with parents A and B), agreement_a, agreement_b, primary_over_bound, online_return
(None without an environment) and degenerate.
"""

from __future__ import annotations

import json

from .errors import RecombError
from .reports import table

METRICS_FILE = "data/reports/recombination.json"
PARAMS_FILE = "params.yaml"
RECIPE_KEYS = ("parents", "mode", "alpha", "seed")
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
    """Greedy returns by network; `dvc exp show` drops null metrics, so an absent section means no environment."""
    return report.get("greedy_return") or {}


def row_from_report(experiment: str, crossover: dict, regime: str, report: dict) -> dict:
    """The leaderboard row of the child named `child` in a validate_recombination report."""
    child = _get(report, "children.child", experiment)
    agreement_a = _get(child, "vs_a.action_agreement", experiment)
    agreement_b = _get(child, "vs_b.action_agreement", experiment)
    return {"experiment": experiment, "parents": crossover["parents"], "mode": crossover["mode"],
            "alpha": float(crossover["alpha"]), "seed": int(crossover["seed"]), "regime": regime,
            "primary": _get(child, "primary", experiment), "agreement_a": agreement_a, "agreement_b": agreement_b,
            "primary_over_bound": _get(child, "primary_over_bound", experiment),
            "online_return": _returns(report).get("child")}


def baseline_rows(report: dict) -> list[dict]:
    """Parents A and B as if they were children: the figures a child has to beat.

    Each parent agrees fully with itself and `parents_agreement` with the other, so
    its primary is the parents' agreement. The recipe fields do not apply (None).
    """
    agreement = _get(report, "parents_agreement", "baseline")
    over_bound = agreement / _get(report, "bound", "baseline")
    returns = _returns(report)
    return [{"experiment": f"parent_{side} (baseline)", "parents": report.get("parents_role"), "mode": None,
             "alpha": None, "seed": None, "regime": None, "primary": agreement,
             "agreement_a": 1.0 if side == "A" else agreement, "agreement_b": agreement if side == "A" else 1.0,
             "primary_over_bound": over_bound, "online_return": returns.get(f"parent_{side}")}
            for side in ("A", "B")]


def rank(rows: list[dict], degenerate_threshold: float) -> list[dict]:
    """Best first: primary, then online return (None last), then primary/U, then name, so ties never reorder.

    `degenerate` flags a primary below the threshold (a child that copies one parent
    and ignores the other); a threshold of 0 flags nothing.
    """
    def order(row: dict) -> tuple:
        ret = row["online_return"]
        return -row["primary"], ret is None, -(ret or 0.0), -row["primary_over_bound"], row["experiment"]

    return [dict(row, rank=i, degenerate=row["primary"] < degenerate_threshold)
            for i, row in enumerate(sorted(rows, key=order), start=1)]


# ----------------------------------------------------------------------------- dvc exp show --json


def _entries(data) -> list[tuple[str, str, dict]]:
    """(kind, name, data) of every finished revision: experiments, then baseline commits, then the workspace.

    `dvc exp show --json` is a list of the workspace and baseline commits, each
    `{"rev", "name", "data", "error", "experiments"}`; a commit's experiments are
    `{"name", "executor", "revs": [{"rev", "name", "data", "error"}]}`. Queued,
    running and failed experiments (executor state, or an error) are left out.
    """
    if not isinstance(data, list) or not all(isinstance(c, dict) and "rev" in c for c in data):
        raise RecombError("not `dvc exp show --json` output (expected a list of revisions with 'rev')")
    experiments, commits, workspace = [], [], []
    for commit in data:
        if commit.get("error") is None and commit["rev"] == "workspace":
            workspace.append(("workspace", "workspace", commit.get("data") or {}))
        elif commit.get("error") is None:
            commits.append(("commit", commit.get("name") or commit["rev"][:7], commit.get("data") or {}))
        for exp in commit.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            if state not in (None, "success"):
                continue
            experiments += [("experiment", rev.get("name") or exp.get("name") or rev["rev"][:7], rev.get("data") or {})
                            for rev in exp.get("revs") or [] if rev.get("error") is None]
    return experiments + commits + workspace


def _params_and_report(data: dict) -> tuple[dict, str, dict] | None:
    """(crossover, regime, report) of one revision, or None when it lacks the params or the metrics file."""
    params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}
    report = ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data")
    crossover = params.get("crossover")
    regime = (params.get("finetune") or {}).get("regime")
    if not isinstance(report, dict) or not isinstance(crossover, dict) or regime is None:
        return None
    if not all(key in crossover for key in RECIPE_KEYS):
        return None
    return crossover, regime, report


def rows_from_exp_show(data) -> tuple[list[dict], list[dict]]:
    """Unranked rows of every finished experiment with a recombination report, and the parents' baselines.

    The baseline commit and the workspace are rows too (named after the branch or
    short rev, and `workspace`): they may hold a child no experiment has. They are
    left out when their recipe and report equal a row already taken (experiments
    first, then commits), e.g. the workspace after `dvc exp apply`; so each child
    appears once, under the name `dvc exp apply` accepts. The workspace row trusts
    that its metrics match its params (`dvc repro` ran). Baselines come from the
    first report taken.
    """
    rows, reports, seen = [], [], set()
    for kind, name, revision in _entries(data):
        found = _params_and_report(revision)
        if found is None:
            continue
        crossover, regime, report = found
        key = json.dumps([{k: crossover[k] for k in RECIPE_KEYS}, regime, report], sort_keys=True)
        if kind != "experiment" and key in seen:
            continue
        seen.add(key)
        rows.append(row_from_report(name, crossover, regime, report))
        reports.append(report)
    if not rows:
        raise RecombError(f"no finished experiment with {METRICS_FILE} and crossover/finetune params")
    return rows, baseline_rows(reports[0])


# ----------------------------------------------------------------------------- rendering


def recipe(row: dict, with_parents: bool = False) -> str:
    """`layer`, `random α=0.5 seed=1`, `weighted α=0.7` (`layer` ignores alpha, only `random` uses the seed)."""
    text = row["mode"]
    if row["mode"] != "layer":
        text += f" α={row['alpha']:g}"
    if row["mode"] == "random":
        text += f" seed={row['seed']}"
    return f"{text} on {row['parents']}" if with_parents else text


def _number(value: float | None, digits: int = 4) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], baselines: list[dict]) -> str:
    """Ranked rows, then the baselines (rank —). The parents set enters the recipe only when rows differ in it."""
    mixed_parents = len({row["parents"] for row in rows}) > 1
    header = ["rank", "experiment", "recipe", "regime", "primary", "agreement A", "agreement B", "primary/U",
              "online return", "degenerate"]
    lines = [[row["rank"], row["experiment"], recipe(row, mixed_parents), row["regime"], _number(row["primary"]),
              _number(row["agreement_a"]), _number(row["agreement_b"]), _number(row["primary_over_bound"]),
              _number(row["online_return"], 1), "yes" if row["degenerate"] else "no"] for row in rows]
    lines += [[NONE, row["experiment"], NONE, NONE, _number(row["primary"]), _number(row["agreement_a"]),
               _number(row["agreement_b"]), _number(row["primary_over_bound"]), _number(row["online_return"], 1), NONE]
              for row in baselines]
    return table(header, lines) + "\n"


def winner(rows: list[dict], min_return: float | None) -> dict:
    """The best-ranked row whose online return reaches `min_return`; rows[0] when none does or none was measured.

    Offline agreement is the sort key, but a child that agrees with both parents on
    most states can still fail in the environment: it must also act.
    """
    passing = [r for r in rows if min_return is not None and r["online_return"] is not None
               and r["online_return"] >= min_return]
    return passing[0] if passing else rows[0]


def recommendation(rows: list[dict], baselines: list[dict], how_to_apply: str, min_return: float | None = None) -> str:
    """The winner (see `winner`), the figures that make it the winner, and how to adopt it (`how_to_apply`)."""
    best = winner(rows, min_return)
    parents_agreement = baselines[0]["primary"]
    lines = [
        f"Recommended: {recipe(best, True)}, fine-tune regime {best['regime']} (experiment {best['experiment']}).",
        f"  primary (min agreement with A and B): {best['primary']:.4f}"
        f" (agreement A {best['agreement_a']:.4f}, agreement B {best['agreement_b']:.4f})",
        f"  primary/U: {best['primary_over_bound']:.4f}; online return: {_number(best['online_return'], 1)}",
    ]
    measured = min_return is not None and any(r["online_return"] is not None for r in rows)
    if measured and best is not rows[0]:
        lines.append(f"  ranked {best['rank']} offline: the children above it return less than {min_return:g} "
                     f"online (rank 1 {rows[0]['experiment']}: {_number(rows[0]['online_return'], 1)})")
    elif measured and (best["online_return"] is None or best["online_return"] < min_return):
        lines.append(f"  warning: no child reaches the online return bar {min_return:g}; this is the best offline")
    others = [r for r in rows if r is not best]
    if others:
        runner_up = others[0]
        lines.append(f"  margin over the runner-up {runner_up['experiment']} ({recipe(runner_up, True)}, "
                     f"{runner_up['regime']}): primary {best['primary'] - runner_up['primary']:+.4f}, "
                     f"online return {_number(best['online_return'], 1)} vs {_number(runner_up['online_return'], 1)}")
    else:
        lines.append("  no runner-up: a single child was ranked")
    beats = best["agreement_a"] > parents_agreement and best["agreement_b"] > parents_agreement
    lines.append(f"  the parents agree with each other on {parents_agreement:.4f}; the child agrees more with both: "
                 f"{'yes' if beats else 'NO'} (A {best['agreement_a'] - parents_agreement:+.4f}, "
                 f"B {best['agreement_b'] - parents_agreement:+.4f})")
    if best["degenerate"]:
        lines.append("  warning: even the winner is flagged degenerate (primary below the threshold)")
    return "\n".join([*lines, "", "How to apply:", how_to_apply]) + "\n"
