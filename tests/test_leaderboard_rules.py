"""The leaderboard's reading and wording rules, pinned on small cases (mutation-testing follow-up).

What a user of `recomb leaderboard` relies on beyond tests/test_leaderboard.py: which revisions
become rows (and under which name), which DVC cells count as empty, the exact error lines, and
the sentences of the recommendation that say why the leader leads. Helpers and fixtures are
those of tests/test_leaderboard.py (the real `dvc exp show` rows of tests/data).
"""

import pytest

from recomb.evaluation.leaderboard import (experiment_rows, file_tree, finished_revisions, ranked, recipe,
                                           recommendation, role_baselines, row_from_report, rows_from_csv,
                                           rows_from_exp_show)
from test_leaderboard import (BAR, PARENTS_AGREEMENT, RANKED, RANKED_WITHOUT_BAR, RECIPE,  # noqa: F401
                              baselines_of, by_rev, child, exp_show, leaves, names, parsed, refused, report_of,
                              set_leaves, to_csv, with_report)

FIRST = "slerp-quantized"  # the first experiment of the fixture: its report gives the baselines


def without_report(row: dict) -> None:
    """Blank every leaf of the recombination report in one revision's row (as for a stage that never ran)."""
    for name in ("selection", "children", "agreement", "greedy_return_interval", "confidence"):
        for column in leaves(row, name):
            row[column] = None


# ----------------------------------------------------------------------------- which revisions are rows


def test_revisions_come_as_experiments_then_the_commit_then_the_workspace(exp_show):
    """Every finished revision, with its kind; an experiment DVC gave no name is named by its rev."""
    unnamed = by_rev(exp_show)["random-s1"]
    unnamed["Experiment"] = None
    assert [(kind, name) for kind, name, _ in finished_revisions(exp_show)] == [
        ("experiment", "slerp-quantized"), ("experiment", "weighted-07"), ("experiment", "layer-short"),
        ("experiment", unnamed["rev"]), ("commit", "main"), ("workspace", "workspace")]
    assert unnamed["rev"] in names(rows_from_exp_show(exp_show)[0])


def test_not_exp_show_rows_is_the_whole_message():
    assert refused(rows_from_exp_show, "text") == (
        "not `dvc exp show` rows (expected a list of rows with 'rev' and 'typ', "
        "as dvc.api.exp_show() or `dvc exp show --csv` give)")


def test_a_revision_without_a_report_or_a_regime_is_left_out_and_hides_nothing(exp_show):
    """The first experiment has no report, another no fine-tune regime: both go, the others stay."""
    revs = by_rev(exp_show)
    without_report(revs[FIRST])
    revs["random-s1"]["finetune.regime"] = None
    assert sorted(names(rows_from_exp_show(exp_show)[0])) == ["layer-short", "main", "weighted-07"]


def test_two_experiments_with_the_same_child_are_both_listed(exp_show):
    """Only the commit and the workspace are dropped as duplicates; experiments are always rows."""
    again = {**by_rev(exp_show)["weighted-07"], "Experiment": "weighted-07-again", "rev": "0a1b2c3"}
    exp_show.append(again)
    taken = names(rows_from_exp_show(exp_show)[0])
    assert sorted(taken) == sorted([*RANKED, "weighted-07-again"])  # the workspace is still a duplicate


def test_a_duplicate_commit_does_not_hide_the_workspace(exp_show):
    revs = by_rev(exp_show)
    revs["main"].update({k: v for k, v in revs["weighted-07"].items()
                         if k not in ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")})
    revs["workspace"]["crossover.alpha"] = 0.6
    taken = names(rows_from_exp_show(exp_show)[0])
    assert "main" not in taken and "workspace" in taken


def test_a_duplicate_is_found_whatever_the_order_of_its_columns(exp_show):
    """The workspace holding main's child is left out even when its row lists the columns in another order."""
    main = by_rev(exp_show)["main"]
    exp_show[0] = dict(reversed(list({**main, "rev": "workspace"}.items())))
    assert sorted(names(rows_from_exp_show(exp_show)[0])) == sorted(RANKED)


def test_params_prefixed_with_their_file_are_read_and_other_files_are_not(exp_show, parsed):
    """DVC writes `params.yaml:crossover.mode` when another file has that leaf too; that other file is ignored."""
    for row in exp_show:
        for column in [c for c in row if c.startswith(("crossover.", "finetune.", "validate_recombination."))]:
            row[f"params.yaml:{column}"] = row.pop(column)
        row["other.yaml:crossover.mode"], row["other.yaml:finetune.regime"] = "layer", "long"
    assert rows_from_exp_show(exp_show) == parsed


def test_file_tree_keeps_to_its_file_and_reads_past_a_clash():
    """A file whose name starts like a section (crossover.yaml) is another file; a leaf that clashes with a
    branch of the same name does not stop the other columns from being read."""
    parts = ("crossover", "finetune.regime")
    assert file_tree({"crossover.yaml:mode": "slerp", "crossover.mode": "layer"}, "params.yaml", parts) == \
        {"crossover": {"mode": "layer"}}
    assert file_tree({"crossover": "weighted", "crossover.mode": "layer", "finetune.regime": "short"},
                     "params.yaml", parts) == {"crossover": "weighted", "finetune": {"regime": "short"}}


def test_an_empty_csv_cell_is_no_figure(exp_show):
    """`dvc exp show --csv` writes a null leaf as '': no return, and the return bar is not judged."""
    set_leaves(exp_show, "greedy_return_interval", "")
    set_leaves(exp_show, "selection.child.return", "")
    rows, baselines, _ = rows_from_exp_show(exp_show)
    assert all(r["val_return"] is None and r["online_return"] is None for r in rows + baselines)
    assert names(ranked(rows, 0.0, BAR)) == RANKED_WITHOUT_BAR


# ----------------------------------------------------------------------------- baselines


def test_baselines_are_rows_with_the_childrens_columns_and_nothing_chose_them(parsed):
    """leaderboard.json lists the parents with the same keys as a child; recipe and validation fields are None."""
    rows, baselines, _ = parsed
    assert [set(b) for b in baselines] == [set(rows[0])] * 2
    assert {k: baselines[0][k] for k in ("experiment", "parents", "mode", "alpha", "seed", "regime", "val_primary",
                                         "val_primary_low", "val_primary_high", "val_return", "primary")} == {
        "experiment": "parent_A (baseline)", "parents": "parents", "mode": None, "alpha": None, "seed": None,
        "regime": None, "val_primary": None, "val_primary_low": None, "val_primary_high": None,
        "val_return": None, "primary": 0.5075}


def with_students(rows: list[dict], agreement: float, student_return: float) -> None:
    """Give every report students A and B as validate_recombination writes them: each agrees fully with itself,
    on `agreement` of states with the other (so its primary is `agreement`), and returns `student_return`."""
    for row in with_report(rows):
        for side in ("A", "B"):
            own = f"agreement.parent_{side}.agreement_{side.lower()}"
            for column in leaves(row, f"agreement.parent_{side}"):
                student = column.replace(f".parent_{side}", f".student_{side}")
                row[student] = row[column] if own in column else agreement
            for column in leaves(row, f"greedy_return_interval.parent_{side}"):
                row[column.replace(f".parent_{side}", f".student_{side}")] = student_return


def test_baselines_are_the_scoring_roles_networks_not_the_dqn_parents(exp_show):
    """With the students as scoring roles the baselines, and the recommendation's "parents agree" figure, are the
    students' (0.8 here), not the DQN parents' (0.5075) that every report also carries."""
    with_students(exp_show, 0.8, 321.0)
    for row in exp_show:
        row["validate_recombination.parents_role"] = "students"
    rows, baselines, confidence = rows_from_exp_show(exp_show)
    assert [(b["parents"], b["primary"], b["online_return"]) for b in baselines] == [("students", 0.8, 321.0)] * 2
    text = recommendation(ranked(rows, 0.0, BAR), baselines, "x", BAR, confidence, paired=False)
    assert "the parents agree with each other on 0.8000 of held-out states" in text


def test_baselines_take_the_scoring_role_of_the_first_report(exp_show):
    with_students(exp_show, 0.8, 321.0)
    by_rev(exp_show)[FIRST]["validate_recombination.parents_role"] = "students"
    assert [(b["parents"], b["primary"]) for b in rows_from_exp_show(exp_show)[1]] == [("students", 0.8)] * 2


def test_a_report_without_its_roles_networks_names_them():
    """A report written before the role's networks were recorded: one line naming the missing network."""
    report = {"agreement": {"parent_A": {}, "parent_B": {}}}
    assert refused(role_baselines, report, "qat") == "baseline: recombination report has no student_qat_int8_A"


@pytest.mark.parametrize("blank, missing", [("agreement.parent_B", "parent_B"),
                                            ("agreement.parent_B.primary_ci", "primary_ci"),
                                            ("agreement.parent_A.agreement_b", "agreement_b")])
def test_a_report_without_a_parents_figure_says_baseline_and_the_key(exp_show, blank, missing):
    set_leaves(exp_show, blank, None)
    assert refused(rows_from_exp_show, exp_show) == f"baseline: recombination report has no {missing}"


@pytest.mark.parametrize("section, key", [("selection", "primary"), ("selection", "primary_low"),
                                          ("selection", "primary_high"), ("children", "agreement_b")])
def test_a_child_without_a_figure_names_its_experiment_and_the_key(exp_show, section, key):
    report = report_of(by_rev(exp_show)["main"])
    del report[section]["child"][key]
    assert refused(row_from_report, "exp-1", RECIPE, "short", report) == \
        f"exp-1: recombination report has no {key}"


# ----------------------------------------------------------------------------- reading dvc exp show output


@pytest.mark.parametrize("text", ['\n  [{"rev": "workspace", "typ": "baseline"}]',
                                  '{"workspace": {"rev": "workspace", "typ": "baseline"}}'])
def test_json_is_refused_as_json(text):
    assert refused(rows_from_csv, text, "exp.json") == \
        "exp.json: JSON, not `dvc exp show --csv` output (save `dvc exp show --csv > FILE`)"


def test_csv_needs_both_rev_and_typ_and_says_when_it_cannot_be_parsed():
    assert refused(rows_from_csv, "rev,Experiment\nabc1234,exp-1\n", "x.csv") == \
        "x.csv: not `dvc exp show --csv` output (no 'rev' and 'typ' columns)"
    too_long = "rev,typ\n" + "a" * 200_000 + ",baseline\n"  # beyond the csv module's field limit
    assert refused(rows_from_csv, too_long, "x.csv").startswith("x.csv: not valid CSV (field larger than")


@pytest.mark.parametrize("end", ["\r\n", "\n", "\r"])
def test_csv_cells_are_read_as_written(end):
    """Whatever the line ending, a quoted cell keeps its line break as written, and a text column stays text
    even when it looks like a number."""
    text = f'rev,typ,Experiment,crossover.parents{end}1234567,baseline,,"two{end}lines"{end}'
    assert rows_from_csv(text, "x.csv") == [
        {"rev": "1234567", "typ": "baseline", "Experiment": None, "crossover.parents": f"two{end}lines"}]


def test_a_commit_with_an_all_digit_short_sha_keeps_its_name(exp_show):
    by_rev(exp_show)["main"]["rev"] = "1234567"
    assert "1234567" in names(rows_from_exp_show(rows_from_csv(to_csv(exp_show), "exp.csv"))[0])


def test_a_dvc_error_without_text_is_named_by_its_type(monkeypatch):
    import dvc.api
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    def fail(**kwargs):
        raise DvcException("\n")  # DVC refuses an empty message, not a blank one
    monkeypatch.setattr(Repo, "find_root", lambda *args, **kwargs: "/project")
    monkeypatch.setattr(dvc.api, "exp_show", fail)
    assert refused(experiment_rows) == "dvc.api.exp_show failed: DvcException"


# ----------------------------------------------------------------------------- wording


def test_recipe_text():
    """`layer` ignores alpha, only `random` names its seed; the parents only when asked."""
    row = {"parents": "students", "alpha": 0.7, "seed": 3}
    assert [recipe({**row, "mode": mode}) for mode in ("layer", "weighted", "random")] == [
        "layer", "weighted α=0.7", "random α=0.7 seed=3"]
    assert recipe({**row, "mode": "layer"}, True) == "layer on students"


@pytest.mark.parametrize("paired, rule", [
    (True, "the paired interval of the difference in validation primary contains 0"),
    (False, "their own validation primary interval reaches the leader's value")])
def test_recommendation_names_the_tie_rule(paired, rule):
    rows = ranked([child("lead", 0.75), child("close", 0.745)], 0.0, BAR)
    text = recommendation(rows, baselines_of(), "x", BAR, 0.95, paired=paired)
    assert f"  tied: 1 other child(ren) cannot be told from it at 95% ({rule}): close." in text


def test_recommendation_of_two_acting_children_states_the_margin():
    rows = ranked([child("lead", 0.75, 500.0), child("next", 0.70, 480.0)], 0.0, BAR)
    lines = recommendation(rows, baselines_of(), "x", BAR, 0.95, paired=False).splitlines()
    assert lines[4] == ("  it is ahead of the runner-up next (weighted α=0.5 on students, short) beyond the 95% "
                        "interval: validation primary +0.0500, return 500.0 vs 480.0")


def test_recommendation_says_the_runner_up_does_not_act():
    """A runner-up with a better validation primary but below the return bar: the bar is the reason."""
    rows = ranked([child("lead", 0.70, 500.0), child("no-act", 0.80, 310.0)], 0.0, BAR)
    lines = recommendation(rows, baselines_of(), "x", BAR, 0.95, paired=False).splitlines()
    assert lines[4] == ("  it is ahead of the runner-up no-act (weighted α=0.5 on students, short) because that one "
                        "does not reach the return bar 475 (return 310.0, validation primary 0.8000)")


def test_recommendation_of_a_lone_degenerate_child_in_full_lines():
    text = recommendation(ranked([child("only", 0.45)], 0.5, BAR), baselines_of(), "x", BAR, 0.95, paired=False)
    lines = text.splitlines()
    assert "  no runner-up: a single child was ranked" in lines
    assert "  warning: even the winner is flagged degenerate (validation primary below the threshold)" in lines


def test_a_child_merely_equal_to_the_parents_agreement_does_not_beat_them():
    """Both agreement lows must be strictly above the parents' agreement (0.5): B's low at 0.5 is not."""
    row = {**child("c", 0.7), "agreement_b": 0.52, "agreement_b_low": 0.5, "agreement_b_high": 0.54}
    text = recommendation(ranked([row], 0.0, BAR), baselines_of(0.5), "x", BAR, 0.95, paired=False)
    assert "beyond its interval: NO" in text


def test_a_row_without_a_scoring_role_takes_the_dqn_parents_as_baselines(exp_show):
    """A params.yaml without `validate_recombination.parents_role` (older experiments): the parents, as the stage
    defaulted to then."""
    with_students(exp_show, 0.8, 321.0)
    for row in exp_show:
        row["validate_recombination.parents_role"] = None
    baselines = rows_from_exp_show(exp_show)[1]
    assert [(b["parents"], b["primary"]) for b in baselines] == [(None, PARENTS_AGREEMENT)] * 2


def test_the_confidence_is_the_first_reports_like_its_baselines(exp_show):
    second = by_rev(exp_show)["weighted-07"]
    for column in leaves(second, "confidence"):
        second[column] = 0.8
    assert rows_from_exp_show(exp_show)[2] == 0.95  # the first experiment, slerp-quantized, says 0.95
    for column in leaves(by_rev(exp_show)[FIRST], "confidence"):
        by_rev(exp_show)[FIRST][column] = 0.9
    assert rows_from_exp_show(exp_show)[2] == 0.9
