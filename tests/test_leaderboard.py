"""The leaderboard: reading `dvc exp show` rows, ranking, rendering, and the `recomb leaderboard` command.

tests/data/exp_show_rows.json (`json.dumps(dvc.api.exp_show())`) and tests/data/exp_show.csv
(`dvc exp show --csv`) are real DVC 3.67 output of one scratch repo, written by
tests/data/make_exp_show.py: its one stage writes the recombination report of
tests/data/exp_show_reports.json for the recipe in params.yaml, and two other metrics files
(quantized.json shares `n_heldout`, `passed` and `confidence` with it, so DVC prefixes those
columns with their file; search/summary.json has a top-level `children`). Revisions: the
workspace after `dvc exp apply weighted-07` (a duplicate of that experiment), the baseline
commit `main` (aligned), two experiments run in the workspace (`random-s1`, `layer-short`, no
State), two run from the queue (`weighted-07`, `slerp-quantized`, State Success), one failed
(`layer-long`, which still shows metrics, those it was queued with) and one still queued (`still-queued`).

The reports are those DVC once wrote for these recipes, extended by hand to the current report
format: `confidence: 0.95`; `selection` (validation figures of `child` and `child_raw`: n_states,
agreement A/B, primary with its interval, return over the choosing episodes); the interval keys
(`*_ci`) and `oracle_agreement` on `children`; `agreement` (parent_A, parent_B, child_raw, child)
and `greedy_return_interval` (mean, std, interval). The validation figures were chosen so that,
with the return bar 475: `main` leads, `weighted-07` is tied with it (its interval reaches main's
validation primary), `slerp-quantized` is clearly behind, `random-s1` has the highest validation
primary but does not act (return 310 on the choosing episodes), `layer-short` is degenerate; and
the validation order differs from the held-out one (held-out, `weighted-07` and `random-s1` lead).
"""

import copy
import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from conftest import run_recomb
from scratch import ROOT
from recomb.errors import RecombError
from recomb.evaluation.leaderboard import (baseline_rows, markdown, ranked, recommendation, row_from_report,
                                rows_from_exp_show)
from stages import cli

DATA = Path(__file__).parent / "data"
ROWS = DATA / "exp_show_rows.json"  # json.dumps(dvc.api.exp_show())
FIXTURE = DATA / "exp_show.csv"     # dvc exp show --csv, of the same revisions
METRICS = "data/reports/recombination.json"
BAR = 475.0  # params.yaml validate_recombination.thresholds.min_child_return
RANKED = ["main", "weighted-07", "slerp-quantized", "random-s1", "layer-short"]        # with the return bar
RANKED_WITHOUT_BAR = ["random-s1", "main", "weighted-07", "slerp-quantized", "layer-short"]
PARENTS_AGREEMENT = 0.5075
HELD_OUT = ("primary", "agreement_a", "agreement_b", "primary_over_bound", "gain_over_copy")
HELD_OUT_KEYS = tuple(f"{k}{s}" for k in HELD_OUT for s in ("", "_low", "_high")) + (
    "online_return", "online_return_std", "online_return_low", "online_return_high")


@pytest.fixture
def exp_show() -> list[dict]:
    return json.loads(ROWS.read_text())


@pytest.fixture
def parsed(exp_show) -> tuple[list[dict], list[dict], float]:
    return rows_from_exp_show(exp_show)


def by_rev(rows: list[dict]) -> dict[str, dict]:
    """The rows by experiment name, else rev (`workspace`, `main`)."""
    return {row["Experiment"] or row["rev"]: row for row in rows}


def leaves(row: dict, name: str) -> list[str]:
    """The columns of the report's leaf `name` or of the leaves under it (`METRICS:name...` or unprefixed)."""
    found = []
    for column in row:
        leaf = column.removeprefix(f"{METRICS}:")
        if (leaf == column and ":" in column) or leaf.startswith("selection.") and leaf.split(".")[1] not in (
                "child", "child_raw"):  # another file's; params.yaml's `selection` section
            continue
        if leaf == name or leaf.startswith(name + "."):
            found.append(column)
    return found


def with_report(rows: list[dict]) -> list[dict]:
    """The rows whose revision has a recombination report."""
    return [row for row in rows if row[f"{METRICS}:confidence"] is not None]


def set_leaves(rows: list[dict], name: str, value) -> None:
    """Set the report leaf `name` (or every leaf under it) of every row with a report."""
    for row in with_report(rows):
        for column in leaves(row, name):
            row[column] = value


def section(row: dict, name: str) -> dict:
    """The report's section `name` of one row, nested as in the report file."""
    tree: dict = {}
    for column in leaves(row, name):
        *branch, key = column.removeprefix(f"{METRICS}:")[len(name) + 1:].split(".")
        node = tree
        for part in branch:
            node = node.setdefault(part, {})
        node[key] = row[column]
    return tree


def report_of(row: dict) -> dict:
    """The parts of one row's report the leaderboard reads, nested."""
    return {**{name: section(row, name) for name in ("selection", "children", "agreement", "greedy_return_interval")},
            "confidence": row[f"{METRICS}:confidence"]}


def to_csv(rows: list[dict]) -> str:
    """Rows as `dvc exp show --csv` writes them (None: empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(rows[0]))
    writer.writerows([["" if value is None else value for value in row.values()] for row in rows])
    return out.getvalue()


def child(name: str, val_primary: float, val_return: float | None = 500.0, half: float = 0.01, *,
          parents: str = "students", mode: str = "weighted", held_out: float = 0.7) -> dict:
    """A hand-made leaderboard row: validation primary ± `half`, its return, and flat held-out figures."""
    row = {"experiment": name, "parents": parents, "mode": mode, "alpha": 0.5, "seed": 0, "regime": "short",
           "val_primary": val_primary, "val_primary_low": val_primary - half, "val_primary_high": val_primary + half,
           "val_return": val_return}
    for key in HELD_OUT:
        row[key], row[f"{key}_low"], row[f"{key}_high"] = held_out, held_out - 0.02, held_out + 0.02
    row.update(online_return=None, online_return_std=None, online_return_low=None, online_return_high=None)
    return row


def baselines_of(agreement: float = 0.5) -> list[dict]:
    figures = {"primary": agreement, "primary_ci": {"low": agreement - 0.02, "high": agreement + 0.02},
               "primary_over_bound": agreement / 0.75, "primary_over_bound_ci": {"low": 0.6, "high": 0.7},
               "gain_over_copy": 0.0, "gain_over_copy_ci": {"low": 0.0, "high": 0.0}}
    one = {"agreement_a": 1.0, "agreement_a_ci": {"low": 1.0, "high": 1.0},
           "agreement_b": agreement, "agreement_b_ci": figures["primary_ci"], **figures}
    other = {**one, "agreement_a": agreement, "agreement_a_ci": figures["primary_ci"],
             "agreement_b": 1.0, "agreement_b_ci": {"low": 1.0, "high": 1.0}}
    return baseline_rows({"parent_A": one, "parent_B": other}, {}, "parents")


def names(rows: list[dict]) -> list[str]:
    return [r["experiment"] for r in rows]


def refused(fn, *args) -> str:
    with pytest.raises(RecombError) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


# ----------------------------------------------------------------------------- exp show parsing


def test_rows_from_exp_show_reads_finished_experiments_and_the_baseline_commit(exp_show, parsed):
    rows, baselines, confidence = parsed
    assert sorted(names(rows)) == sorted(RANKED)  # no failed, queued or duplicate workspace
    revs = by_rev(exp_show)
    assert revs["layer-long"]["State"] == "Failed" and revs["layer-long"]["selection.child.primary"] is not None
    assert revs["still-queued"]["State"] == "Queued"
    assert confidence == 0.95
    by_name = {r["experiment"]: r for r in rows}
    assert by_name["random-s1"] == {
        "experiment": "random-s1", "parents": "students", "mode": "random", "alpha": 0.5, "seed": 1,
        "matching": None, "repair": None, "regime": "short",  # random reads neither
        "val_primary": 0.78, "val_primary_low": 0.7513, "val_primary_high": 0.8075, "val_return": 310.0,
        "primary": 0.74, "primary_low": 0.7208, "primary_high": 0.7592,
        "agreement_a": 0.74, "agreement_a_low": 0.7208, "agreement_a_high": 0.7592,
        "agreement_b": 0.76, "agreement_b_low": 0.7413, "agreement_b_high": 0.7787,
        "primary_over_bound": 0.9817578772802654, "primary_over_bound_low": 0.9563, "primary_over_bound_high": 1.0,
        "gain_over_copy": 0.9442, "gain_over_copy_low": 0.8662, "gain_over_copy_high": 1.0,
        "online_return": 480.0, "online_return_std": 40.0, "online_return_low": 452.5, "online_return_high": 497.5}
    assert type(by_name["random-s1"]["seed"]) is int  # DVC gives every number as a float
    assert by_name["slerp-quantized"]["parents"] == "quantized"
    assert by_name["main"]["mode"] == "aligned" and by_name["main"]["val_primary"] == 0.752
    assert by_name["main"]["primary"] == 0.718  # validation and held-out figures come from different sections
    # the baselines come from the first report taken (the first experiment's)
    first = next(row for row in exp_show if row["typ"] != "baseline")
    assert first["Experiment"] == "slerp-quantized"
    assert baselines == baseline_rows(section(first, "agreement"), section(first, "greedy_return_interval"), "parents")
    first["greedy_return_interval.parent_B.mean"] = 497.0  # slerp-quantized's report, and only it
    assert rows_from_exp_show(exp_show)[1][1]["online_return"] == 497.0


def test_the_csv_file_and_the_api_rows_give_the_same_leaderboard(exp_show, parsed):
    from_csv = cli.read_exp_show(str(FIXTURE))
    assert rows_from_exp_show(from_csv) == parsed
    # cell by cell as dvc.api.exp_show gives them (empty: None, numbers: float), but the time format of `Created`
    assert [{k: v for k, v in row.items() if k != "Created"} for row in from_csv] == \
        [{k: v for k, v in row.items() if k != "Created"} for row in exp_show]
    assert by_rev(from_csv)["main"][f"{METRICS}:passed"] == "True"  # booleans stay text, as in the API's rows
    assert by_rev(from_csv)["workspace"]["Experiment"] is None


def test_columns_of_other_files_are_not_read(exp_show, parsed):
    main = by_rev(exp_show)["main"]
    # the fixture's other metrics files: confidence, n_heldout and passed are prefixed with their file ...
    assert (main[f"{METRICS}:confidence"], main["data/reports/quantized.json:confidence"]) == (0.95, 0.9)
    assert "confidence" not in main and f"{METRICS}:n_heldout" in main
    # ... summary.json's `children` count and params.yaml's `selection` section are not
    assert main["children"] == 6.0 and main["selection.seed"] == 0.0 and "selection.child.primary" in main
    for row in exp_show:
        row["data/reports/quantized.json:confidence"] = 0.5
        row["children"], row["selection.seed"] = "6 children", 7.0
        row["data/reports/quantized.json:selection.child.primary"] = 0.1  # as if quantized.json had one too
    assert rows_from_exp_show(exp_show) == parsed


@pytest.mark.parametrize("empty", ["None", None])  # dvc.api.exp_show writes a null leaf as 'None', --csv as ''
def test_without_an_environment_the_returns_are_none(exp_show, empty):
    set_leaves(exp_show, "greedy_return_interval", empty)
    set_leaves(exp_show, "selection.child.return", empty)
    rows, baselines, _ = rows_from_exp_show(exp_show)
    assert all(r["val_return"] is None and r["online_return"] is None and r["online_return_high"] is None
               for r in rows + baselines)
    assert names(ranked(rows, 0.0, BAR)) == RANKED_WITHOUT_BAR  # a bar that nobody was measured against


def test_a_workspace_with_its_own_child_is_a_row_and_one_equal_to_the_commit_is_not(exp_show):
    own = copy.deepcopy(exp_show)
    by_rev(own)["workspace"]["crossover.alpha"] = 0.6
    workspace = [r for r in rows_from_exp_show(own)[0] if r["experiment"] == "workspace"]
    assert len(workspace) == 1 and workspace[0]["alpha"] == 0.6 and workspace[0]["val_primary"] == 0.745

    same_as_commit = copy.deepcopy(exp_show)
    same_as_commit[0] = {**by_rev(exp_show)["main"], "rev": "workspace", "Created": None}
    taken = names(rows_from_exp_show(same_as_commit)[0])
    assert taken.count("main") == 1 and "workspace" not in taken


def test_running_and_errored_entries_are_skipped(exp_show):
    revs = by_rev(exp_show)
    revs["random-s1"]["State"] = "Running"
    revs["slerp-quantized"]["State"] = "Failed"
    for column in revs["main"]:  # DVC could not read main's params.yaml
        if column.startswith(("crossover.", "finetune.", "validate_recombination.")):
            revs["main"][column] = "!"
    # the unreadable commit is gone, so the workspace (weighted-07 applied) is still a duplicate of the experiment
    assert sorted(names(rows_from_exp_show(exp_show)[0])) == ["layer-short", "weighted-07"]


@pytest.mark.parametrize("data", [{"rev": "workspace"}, "text", None, [1, 2], [{"name": "x"}],
                                  [{"rev": "workspace", "name": None, "data": {}}]])  # the `--json` layout
def test_garbage_is_one_line_naming_the_format(data):
    assert "not `dvc exp show` rows" in refused(rows_from_exp_show, data)


def test_no_finished_experiment_is_one_line(exp_show):
    for name in ("selection", "children", "agreement", "greedy_return_interval", "confidence"):  # no report anywhere
        set_leaves(exp_show, name, None)
    assert refused(rows_from_exp_show, exp_show).startswith("no finished experiment with data/reports/recombination")
    assert "no finished experiment" in refused(rows_from_exp_show, [])


RECIPE = {"parents": "students", "mode": "layer", "alpha": 0.5, "seed": 0}


def test_a_report_without_the_child_names_the_missing_key(exp_show):
    report = report_of(by_rev(exp_show)["main"])
    no_selection = {k: v for k, v in report.items() if k != "selection"}
    assert refused(row_from_report, "exp-1", RECIPE, "short", no_selection) == \
        "exp-1: recombination report has no selection.child"
    no_child = copy.deepcopy(report)
    del no_child["children"]["child"]
    assert refused(row_from_report, "exp-1", RECIPE, "short", no_child) == \
        "exp-1: recombination report has no children.child"
    assert refused(row_from_report, "exp-1", RECIPE, "short", {"children": {"child_raw": {}}}) == \
        "exp-1: recombination report has no selection.child"
    # the same from the rows: the first experiment's report names itself
    set_leaves(exp_show, "children.child.primary_ci", None)
    assert refused(rows_from_exp_show, exp_show) == "slerp-quantized: recombination report has no primary_ci"
    set_leaves(exp_show, "selection.child", None)
    assert refused(rows_from_exp_show, exp_show) == "slerp-quantized: recombination report has no selection.child"


def test_a_report_of_the_old_format_is_one_line(exp_show):
    """The trimmed reports as DVC first wrote them: no selection, no intervals, no agreement section."""
    old = {"parents_agreement": 0.5075, "bound": 0.75375, "children": {"child": {
        "vs_a": {"action_agreement": 0.79}, "vs_b": {"action_agreement": 0.74}, "primary": 0.74,
        "primary_over_bound": 0.98}}, "greedy_return": {"child": 500.0}, "parents_role": "parents", "passed": True}
    assert refused(row_from_report, "exp-1", RECIPE, "short", old) == \
        "exp-1: recombination report has no selection.child"
    with_selection = {**old, "selection": report_of(by_rev(exp_show)["main"])["selection"]}
    message = refused(row_from_report, "exp-1", RECIPE, "short", with_selection)
    assert message.startswith("exp-1: recombination report has no ") and "_ci" in message
    set_leaves(exp_show, "agreement", None)
    assert refused(rows_from_exp_show, exp_show) == "baseline: recombination report has no agreement"


def test_the_confidence_is_required_and_read_from_the_reports(exp_show):
    set_leaves(exp_show, "confidence", 0.9)
    assert rows_from_exp_show(exp_show)[2] == 0.9
    for row in exp_show:  # not even another file's confidence stands in for it
        row[f"{METRICS}:confidence"] = None
    assert refused(rows_from_exp_show, exp_show) == "baseline: recombination report has no confidence"


# ----------------------------------------------------------------------------- ranking


def test_fixture_ranks_acting_children_first_then_by_validation_primary(parsed):
    rows = ranked(parsed[0], 0.0, BAR)
    assert names(rows) == RANKED
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    by_name = {r["experiment"]: r for r in rows}
    # random-s1 has the highest validation primary of all, but misses the bar on the choosing episodes
    assert max(rows, key=lambda r: r["val_primary"])["experiment"] == "random-s1"
    assert by_name["random-s1"]["val_return"] < BAR <= by_name["slerp-quantized"]["val_return"]
    assert by_name["random-s1"]["rank"] > by_name["slerp-quantized"]["rank"]


def test_without_a_bar_or_returns_only_the_validation_primary_counts(parsed):
    assert names(ranked(parsed[0], 0.0, None)) == RANKED_WITHOUT_BAR
    no_returns = [dict(r, val_return=None) for r in parsed[0]]
    assert names(ranked(no_returns, 0.0, BAR)) == RANKED_WITHOUT_BAR
    assert names(ranked([child("low", 0.6, None), child("high", 0.7, None)], 0.0, BAR)) == ["high", "low"]


def test_an_acting_child_ranks_above_a_better_agreeing_one_that_does_not_act():
    rows = ranked([child("agrees", 0.9, 159.0), child("acts", 0.6, 500.0), child("edge", 0.5, BAR)], 0.0, BAR)
    assert names(rows) == ["acts", "edge", "agrees"]  # the bar itself is reached
    assert names(ranked([child("agrees", 0.9, 159.0), child("acts", 0.6, 500.0)], 0.0, None)) == ["agrees", "acts"]


def test_ties_on_validation_primary_break_by_return_then_none_last_then_name():
    rows = [child("e", 0.7, None), child("d", 0.7, 480.0), child("c", 0.7, 500.0), child("a", 0.7, 500.0),
            child("z", 0.8, 476.0)]
    expected = ["z", "a", "c", "d", "e"]
    assert names(ranked(rows, 0.0, BAR)) == expected
    assert names(ranked(rows[::-1], 0.0, BAR)) == expected


def test_the_held_out_figures_never_change_the_order(parsed):
    rows = parsed[0]
    # the held-out figures alone would order the children differently
    by_held_out = sorted(rows, key=lambda r: (-r["primary"], -r["online_return"], r["experiment"]))
    assert names(by_held_out)[:2] == ["weighted-07", "random-s1"] != RANKED[:2]

    def chosen(rows_):
        return [(r["experiment"], r["rank"], r["tied"], r["degenerate"]) for r in ranked(rows_, 0.5, BAR)]

    expected = chosen(rows)
    figures = [{k: r[k] for k in HELD_OUT_KEYS} for r in rows]
    for shift in range(1, len(rows)):  # every rotation of the held-out figures among the children
        moved = [{**r, **figures[(i + shift) % len(rows)]} for i, r in enumerate(rows)]
        assert [m["primary"] for m in moved] != [r["primary"] for r in rows]
        assert chosen(moved) == expected
    extreme = [{**r, "primary": 1.0 - r["val_primary"], "primary_high": 1.0, "online_return": 0.0,
                "online_return_high": 0.0, "agreement_a": 0.0, "agreement_b": 1.0} for r in rows]
    assert chosen(extreme) == expected


def test_the_held_out_figures_in_the_reports_never_change_the_order(exp_show):
    before = [(r["experiment"], r["tied"]) for r in ranked(rows_from_exp_show(exp_show)[0], 0.0, BAR)]
    for row in with_report(exp_show):  # the worst held-out child for the validation leader, and so on
        row["children.child.primary"] = 1.0 - row["selection.child.primary"]
        row["greedy_return_interval.child.mean"] = 1.0
    rows = rows_from_exp_show(exp_show)[0]
    assert {r["experiment"]: r["primary"] for r in rows}["main"] == pytest.approx(0.248)
    assert [(r["experiment"], r["tied"]) for r in ranked(rows, 0.0, BAR)] == before


def test_degenerate_flag_off_at_zero_and_strictly_below_the_threshold():
    rows = [child("low", 0.3), child("edge", 0.5), child("high", 0.8, held_out=0.1)]
    assert not any(r["degenerate"] for r in ranked(rows, 0.0, BAR))
    # validation primary decides, not the held-out one (0.1 for "high")
    assert {r["experiment"]: r["degenerate"] for r in ranked(rows, 0.5, BAR)} == {
        "high": False, "edge": False, "low": True}


def test_ranked_does_not_change_its_input_and_reranks_cleanly():
    rows = [child("a", 0.5), child("b", 0.6)]
    once = ranked(rows, 0.55, BAR)
    assert all("rank" not in r and "degenerate" not in r and "tied" not in r for r in rows)
    again = ranked(once[::-1], 0.0, BAR)
    assert [(r["experiment"], r["rank"], r["degenerate"]) for r in again] == [("b", 1, False), ("a", 2, False)]


# ----------------------------------------------------------------------------- ties


def test_fixture_ties_by_the_unpaired_rule(parsed):
    rows = ranked(parsed[0], 0.0, BAR)
    assert [r["experiment"] for r in rows if r["tied"]] == ["weighted-07"]
    by_name = {r["experiment"]: r for r in rows}
    leader = rows[0]
    assert leader["experiment"] == "main" and not leader["tied"]
    assert by_name["weighted-07"]["val_primary_high"] >= leader["val_primary"]           # tied
    assert by_name["slerp-quantized"]["val_primary_high"] < leader["val_primary"]        # clearly behind
    assert by_name["random-s1"]["val_primary_high"] >= leader["val_primary"]             # reaches, but ...
    assert not by_name["random-s1"]["tied"]                                              # ... does not act
    # without a bar nobody reaches random-s1's 0.78: it leads alone
    assert not any(r["tied"] for r in ranked(parsed[0], 0.0, None))


def test_unpaired_rule_reaching_the_leaders_value_exactly_is_tied():
    edge, short = child("edge", 0.74), child("short", 0.73)
    edge["val_primary_high"], short["val_primary_high"] = 0.75, 0.7499
    rows = ranked([child("leader", 0.75), edge, short], 0.0, BAR)
    assert {r["experiment"]: r["tied"] for r in rows} == {"leader": False, "edge": True, "short": False}


def test_a_row_on_the_other_side_of_the_bar_is_never_tied():
    # the leader acts; a child just below it in validation primary with a wide interval does not
    rows = ranked([child("leader", 0.70, 500.0), child("no-act", 0.80, 100.0, half=0.2),
                   child("no-act-2", 0.69, 200.0, half=0.2)], 0.0, BAR)
    assert names(rows) == ["leader", "no-act", "no-act-2"] and not any(r["tied"] for r in rows)
    # when nobody acts, every row is on the leader's side of the bar
    rows = ranked([child("a", 0.70, 100.0), child("b", 0.69, 200.0, half=0.05)], 0.0, BAR)
    assert [r["tied"] for r in rows] == [False, True]
    with_paired = ranked([child("leader", 0.70, 500.0), child("no-act", 0.80, 100.0)], 0.0, BAR,
                         lambda leader, row: (-1.0, 1.0))
    assert not with_paired[1]["tied"]


def test_the_paired_difference_is_used_when_given():
    calls = []

    def difference(leader: dict, row: dict) -> tuple[float, float]:
        calls.append((leader["experiment"], row["experiment"]))
        return {"wide": (0.01, 0.05), "narrow": (-0.02, 0.03)}[row["experiment"]]

    # unpaired: "wide" (interval reaches 0.75) would be tied and "narrow" (0.70 + 0.01 < 0.75) would not
    rows = [child("leader", 0.75), child("wide", 0.74, half=0.05), child("narrow", 0.70, half=0.01)]
    assert {r["experiment"]: r["tied"] for r in ranked(rows, 0.0, BAR)} == {
        "leader": False, "wide": True, "narrow": False}
    paired = ranked(rows, 0.0, BAR, difference)
    assert {r["experiment"]: r["tied"] for r in paired} == {"leader": False, "wide": False, "narrow": True}
    assert sorted(calls) == [("leader", "narrow"), ("leader", "wide")]  # never the leader against itself


# ----------------------------------------------------------------------------- rendering


HEADER = ("| rank | experiment | recipe | regime | val primary | val return | acts | tied | held-out primary "
          "| agreement A | agreement B | primary/U | gain over copy | return (mean ± std) | degenerate |")


def test_markdown_lists_ranked_rows_then_baselines(parsed):
    rows, baselines, _ = parsed
    lines = markdown(ranked(rows, 0.5, BAR), baselines, BAR).splitlines()
    assert lines[0] == HEADER and lines[1] == "|" + "---|" * 15
    assert lines[2] == ("| 1 | main | aligned α=0.5 on students | tuned | 0.7520 [0.7300, 0.7740] | 500.0 | yes | no "
                        "| 0.7180 [0.6983, 0.7377] | 0.7715 [0.7531, 0.7899] | 0.7180 [0.6983, 0.7377] "
                        "| 0.9526 [0.9264, 0.9787] | 0.8548 [0.7748, 0.9348] | 500.0 ± 0.0 [500.0, 500.0] | no |")
    assert lines[3].startswith("| 2 | weighted-07 | weighted α=0.7 on students | tuned | 0.7450 [0.7225, 0.7680] "
                               "| 500.0 | yes | yes |")
    assert lines[4].startswith("| 3 | slerp-quantized | slerp α=0.3 on quantized | tuned |")
    assert lines[5] == ("| 4 | random-s1 | random α=0.5 seed=1 on students | short | 0.7800 [0.7513, 0.8075] | 310.0 "
                        "| no | no | 0.7400 [0.7208, 0.7592] | 0.7400 [0.7208, 0.7592] | 0.7600 [0.7413, 0.7787] "
                        "| 0.9818 [0.9563, 1.0000] | 0.9442 [0.8662, 1.0000] | 480.0 ± 40.0 [452.5, 497.5] | no |")
    assert lines[6] == ("| 5 | layer-short | layer on students | short | 0.3600 [0.3275, 0.3938] | 12.0 | no | no "
                        "| 0.3500 [0.3291, 0.3709] | 0.9200 [0.9081, 0.9319] | 0.3500 [0.3291, 0.3709] "
                        "| 0.4643 [0.4366, 0.4921] | -0.6396 [-0.7245, -0.5547] | 9.4 ± 0.8 [9.0, 9.9] | yes |")
    assert lines[7] == ("| — | parent_A (baseline) | — | — | — | — | — | — | 0.5075 [0.4856, 0.5294] "
                        "| 1.0000 [1.0000, 1.0000] | 0.5075 [0.4856, 0.5294] | 0.6733 [0.6442, 0.7024] "
                        "| 0.0000 [0.0000, 0.0000] | 500.0 ± 0.0 [500.0, 500.0] | — |")
    assert lines[8].startswith("| — | parent_B (baseline) |") and "| 498.5 ± 4.5 [495.6, 500.0] |" in lines[8]
    assert len(lines) == 9


def test_markdown_without_a_bar_says_nothing_about_acting(parsed):
    rows, baselines, _ = parsed
    lines = markdown(ranked(rows, 0.0, None), baselines, None).splitlines()
    assert lines[2].startswith("| 1 | random-s1 | random α=0.5 seed=1 on students | short | 0.7800 [0.7513, 0.8075] "
                               "| 310.0 | — | no |")


def test_markdown_names_the_parents_only_when_rows_differ_in_them():
    rows = ranked([child("w", 0.7, None), {**child("r", 0.6), "mode": "random", "seed": 2},
                   {**child("l", 0.5), "mode": "layer"}], 0.0, BAR)
    text = markdown(rows, baselines_of(), BAR)
    assert ("| 1 | r | random α=0.5 seed=2 | short | 0.6000 [0.5900, 0.6100] | 500.0 | yes | no "
            "| 0.7000 [0.6800, 0.7200] | 0.7000 [0.6800, 0.7200] | 0.7000 [0.6800, 0.7200] "
            "| 0.7000 [0.6800, 0.7200] | 0.7000 [0.6800, 0.7200] | — | no |") in text
    assert "| 3 | w | weighted α=0.5 | short | 0.7000 [0.6900, 0.7100] | — | — |" in text
    assert "| layer |" in text and " on students" not in text


# ----------------------------------------------------------------------------- recommendation


def test_recommendation_names_the_leader_its_figures_and_its_tie(parsed):
    rows, baselines, confidence = parsed
    text = recommendation(ranked(rows, 0.0, BAR), baselines, "  dvc exp apply main", BAR, confidence, paired=False)
    lines = text.splitlines()
    assert lines[0] == "Recommended: aligned α=0.5 on students, fine-tune regime tuned (experiment main)."
    assert lines[1] == ("  chosen on validation states drawn from train: primary 0.7520 [0.7300, 0.7740] "
                        "(95% interval); return over the choosing episodes 500.0")
    assert lines[2] == ("  held-out (reported, never used to choose): primary 0.7180 [0.6983, 0.7377], "
                        "agreement A 0.7715 [0.7531, 0.7899], agreement B 0.7180 [0.6983, 0.7377]")
    assert lines[3] == ("  primary/U 0.9526 [0.9264, 0.9787]; gain over a copy of either parent 0.8548 [0.7748, 0.9348]; "
                        "return 500.0 ± 0.0 [500.0, 500.0]")
    assert lines[4].startswith("  tied: 1 other child(ren) cannot be told from it at 95%")
    assert lines[4].endswith(": weighted-07. It leads by rank order, not by a measured margin.")
    assert lines[5] == ("  the parents agree with each other on 0.5075 of held-out states; the child agrees more with "
                        "both, beyond its interval: yes")
    assert "runner-up" not in text and "warning" not in text and "degenerate" not in text
    assert text.endswith("\n\nHow to apply:\n  dvc exp apply main\n")


def test_recommendation_lists_every_tied_child():
    rows = ranked([child("lead", 0.75), child("t1", 0.74, half=0.02), child("t2", 0.745), child("far", 0.6)],
                  0.0, BAR)
    text = recommendation(rows, baselines_of(), "x", BAR, 0.95, paired=False)
    assert "  tied: 2 other child(ren) cannot be told from it at 95%" in text
    assert ": t2, t1. It leads by rank order, not by a measured margin." in text and "far" not in text


def test_recommendation_states_the_margin_when_none_is_tied(parsed):
    rows, baselines, confidence = parsed
    text = recommendation(ranked(rows, 0.0, None), baselines, "  dvc exp apply random-s1", None, confidence,
                          paired=False)
    assert text.startswith("Recommended: random α=0.5 seed=1 on students, fine-tune regime short "
                           "(experiment random-s1).")
    assert ("  it is ahead of the runner-up main (aligned α=0.5 on students, tuned) beyond the 95% interval: "
            "validation primary +0.0280, return 310.0 vs 500.0\n") in text
    assert "tied" not in text and "warning" not in text  # no bar: a return of 310 is not judged


def test_recommendation_warns_when_no_child_reaches_the_return_bar(parsed):
    rows, baselines, confidence = parsed
    text = recommendation(ranked(rows, 0.0, 600.0), baselines, "x", 600.0, confidence, paired=False)
    assert "(experiment random-s1)" in text  # nobody acts: the validation primary alone decides
    assert ("  warning: no child reaches the return bar 600 on the choosing episodes; this is the best by validation "
            "primary, and it does not act well enough") in text
    assert "warning" not in recommendation(ranked(rows, 0.0, BAR), baselines, "x", BAR, confidence, paired=False)


def test_recommendation_of_a_lone_degenerate_child_says_so():
    text = recommendation(ranked([child("only", 0.45, None, held_out=0.45)], 0.5, BAR), baselines_of(), "apply it",
                          BAR, 0.9, paired=False)
    assert "no runner-up: a single child was ranked" in text and "; return —" in text
    assert "(90% interval); return over the choosing episodes —" in text
    assert "agrees more with both, beyond its interval: NO" in text and "flagged degenerate" in text
    assert "warning: no child reaches" not in text  # no return was measured


def test_recommendation_needs_both_agreements_beyond_their_interval():
    # held-out agreements 0.52 / 0.7 with lows 0.50 / 0.68 against parents agreeing on 0.5
    row = {**child("c", 0.7), "agreement_a": 0.52, "agreement_a_low": 0.50, "agreement_a_high": 0.54}
    text = recommendation(ranked([row], 0.0, BAR), baselines_of(0.5), "x", BAR, 0.95, paired=False)
    assert "beyond its interval: NO" in text
    row["agreement_a_low"] = 0.501
    text = recommendation(ranked([row], 0.0, BAR), baselines_of(0.5), "x", BAR, 0.95, paired=False)
    assert "beyond its interval: yes" in text


# ----------------------------------------------------------------------------- the command


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    return run_recomb(capsys, "leaderboard", *args)


def project_params(**search) -> str:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["search"].update(search)
    return yaml.safe_dump(params)


def board_rows(folder: str) -> list[dict]:
    """The ranked rows of the one group of a leaderboard.json the CLI wrote to `folder`."""
    [group] = json.loads((Path(folder) / "leaderboard.json").read_text())["groups"]
    return group["rows"]


def test_cli_writes_the_three_reports_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: threshold 0, no return bar
    code, out, err = run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "board")
    assert (code, err) == (0, "")
    assert out == (tmp_path / "board" / "leaderboard.md").read_text()
    assert out.splitlines()[0] == HEADER and "| yes |" not in out  # nothing acts, is tied or is degenerate
    [saved] = json.loads((tmp_path / "board" / "leaderboard.json").read_text())["groups"]  # one context
    assert names(saved["rows"]) == RANKED_WITHOUT_BAR and len(saved["baselines"]) == 2
    assert saved["confidence"] == 0.95 and not any(r["degenerate"] or r["tied"] for r in saved["rows"])
    advice = (tmp_path / "board" / "recommendation.txt").read_text()
    assert "(experiment random-s1)" in advice and "runner-up main" in advice
    assert "dvc exp apply random-s1\n  dvc repro" in advice and 'git commit -am "Crossover random' in advice


def test_cli_reads_the_return_bar_from_params_yaml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(project_params())
    assert run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "board")[0] == 0
    [saved] = json.loads(Path("board/leaderboard.json").read_text())["groups"]
    assert names(saved["rows"]) == RANKED
    assert [r["experiment"] for r in saved["rows"] if r["tied"]] == ["weighted-07"]
    advice = Path("board/recommendation.txt").read_text()
    assert "(experiment main)" in advice and "weighted-07. It leads by rank order" in advice
    assert "dvc exp apply main\n" in advice


def test_cli_threshold_from_params_yaml_and_the_flag_overrides_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(project_params(degenerate_threshold=0.5))
    assert run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "a")[0] == 0
    flagged = [r["experiment"] for r in board_rows("a") if r["degenerate"]]
    assert flagged == ["layer-short"]
    assert run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "b", "--degenerate-threshold", "0")[0] == 0
    assert not any(r["degenerate"] for r in board_rows("b"))
    # the flag flags by validation primary: 0.75 catches slerp-quantized (0.69) but not main (0.752)
    assert run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "c", "--degenerate-threshold", "0.75")[0] == 0
    flagged = [r["experiment"] for r in board_rows("c") if r["degenerate"]]
    assert flagged == ["weighted-07", "slerp-quantized", "layer-short"]


def test_cli_confidence_comes_from_the_reports(tmp_path, exp_show, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    set_leaves(exp_show, "confidence", 0.9)
    (tmp_path / "exp.csv").write_text(to_csv(exp_show))
    assert run_cli(capsys, "--exp-show", "exp.csv", "--out", "board")[0] == 0
    assert json.loads(Path("board/leaderboard.json").read_text())["groups"][0]["confidence"] == 0.9
    advice = Path("board/recommendation.txt").read_text()
    assert "(90% interval)" in advice and "beyond the 90% interval" in advice and "95%" not in advice


@pytest.fixture
def fake_dvc(monkeypatch, exp_show):
    """dvc.api.exp_show and the project root it is given, faked; the calls' keyword arguments."""
    import dvc.api
    from dvc.repo import Repo

    calls = []
    monkeypatch.setattr(Repo, "find_root", lambda *args, **kwargs: "/project")
    monkeypatch.setattr(dvc.api, "exp_show", lambda **kwargs: calls.append(kwargs) or copy.deepcopy(exp_show))
    return calls


def test_cli_runs_dvc_exp_show_without_a_file_and_reads_stdin_with_dash(tmp_path, monkeypatch, capsys, fake_dvc):
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "--out", "a")[0] == 0
    assert fake_dvc == [{"repo": "/project"}]
    assert names(board_rows("a")) == RANKED_WITHOUT_BAR
    monkeypatch.setattr(cli.sys, "stdin", io.StringIO(FIXTURE.read_text()))
    code, out, _ = run_cli(capsys, "--exp-show", "-", "--out", "b")
    assert code == 0 and out.splitlines()[2].startswith("| 1 | random-s1 |")
    assert len(fake_dvc) == 1  # stdin: dvc was not run again
    assert Path("a/leaderboard.json").read_text() == Path("b/leaderboard.json").read_text()


@pytest.mark.parametrize("args, message", [
    (["--exp-show", "garbage.csv"], "error: garbage.csv: not `dvc exp show --csv` output (no 'rev' and 'typ' columns)"),
    (["--exp-show", "empty.csv"], "error: empty.csv: not `dvc exp show --csv` output (no 'rev' and 'typ' columns)"),
    (["--exp-show", "ragged.csv"], "error: ragged.csv: not `dvc exp show --csv` output (line 3 has 2 cells, the header "
                                   "{cells})"),
    (["--exp-show", "exp.json"], "error: exp.json: JSON, not `dvc exp show --csv` output "
                                 "(save `dvc exp show --csv > FILE`)"),
    (["--exp-show", "missing.csv"], "error: missing.csv: cannot read (No such file or directory)"),
    (["--exp-show", "random.bin"], "error: random.bin: not `dvc exp show --csv` output (not UTF-8 text)"),
    (["--exp-show", "header.csv"], "error: header.csv: no finished experiment with a recombination report "
                                   "(data/reports/recombination.json) and crossover/finetune params"),
    (["--exp-show", "old.csv"], "error: slerp-quantized: recombination report has no selection.child"),
    (["--exp-show", str(FIXTURE), "--degenerate-threshold", "high"],
     "error: --degenerate-threshold: must be a number in [0, 1] (got 'high')"),
    (["--exp-show", str(FIXTURE), "--degenerate-threshold", "1.5"],
     "error: --degenerate-threshold: must be in [0, 1], 0 = off (got '1.5')"),
])
def test_cli_user_mistakes_are_one_line_and_exit_1(tmp_path, exp_show, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.csv").write_text("not csv\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "random.bin").write_bytes(bytes(range(128, 256)) * 8)
    lines = FIXTURE.read_text().splitlines()
    (tmp_path / "header.csv").write_text(lines[0] + "\n")  # the header, no experiment
    (tmp_path / "ragged.csv").write_text("\n".join([*lines[:2], "a,b", *lines[2:]]) + "\n")
    (tmp_path / "exp.json").write_text(ROWS.read_text())  # the API's rows, or `dvc exp show --json`: not read
    set_leaves(exp_show, "selection", None)  # reports written before the selection section existed
    (tmp_path / "old.csv").write_text(to_csv(exp_show))
    code, out, err = run_cli(capsys, *args, "--out", "board")
    assert (code, out, err) == (1, "", message.format(cells=len(exp_show[0])) + "\n")
    assert not (tmp_path / "board").exists()


def test_cli_reports_a_failing_dvc_in_one_line(tmp_path, monkeypatch, capsys, fake_dvc):
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    monkeypatch.chdir(tmp_path)
    for error, line in [(DvcException("experiments are broken\n  because of this"), "experiments are broken"),
                        (SCMError("unknown Git revision 'HEAD'"), "unknown Git revision 'HEAD'")]:
        def fail(**kwargs):
            raise error
        monkeypatch.setattr("dvc.api.exp_show", fail)
        code, out, err = run_cli(capsys, "--out", "board")
        assert (code, out, err) == (1, "", f"error: dvc.api.exp_show failed: {line}\n")
    assert not (tmp_path / "board").exists()


def test_cli_outside_a_dvc_project_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the real DVC: no .dvc here or above
    code, out, err = run_cli(capsys, "--out", "board")
    assert (code, out) == (1, "")
    assert err.startswith("error: dvc.api.exp_show failed: you are not inside of a DVC repository") and \
        err.count("\n") == 1
    assert not (tmp_path / "board").exists()


def test_apply_hint_of_the_workspace_does_not_ask_for_dvc_exp_apply():
    workspace = cli.how_to_apply(child("workspace", 0.7))
    assert "dvc exp apply" not in workspace and "it is your workspace already" in workspace
    assert 'git commit -am "Crossover weighted α=0.5 on students, regime short"' in workspace
    assert cli.how_to_apply(child("exp-1", 0.7)).startswith("  dvc exp apply exp-1\n  dvc repro")


def test_console_command_outside_a_project_is_one_line(tmp_path, monkeypatch, capsys):
    from recomb import cli
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.main(["check"])
    assert stop.value.code == 1
    assert capsys.readouterr().err == (f"error: {tmp_path}: not a recomb project's root (no stages/cli.py); "
                                       "run recomb where dvc.yaml is\n")
