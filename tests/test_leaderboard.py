"""The leaderboard: parsing `dvc exp show --json`, ranking, rendering, and the `recomb leaderboard` command.

tests/data/exp_show.json is real DVC 3.67 output of a one-stage scratch repo whose stage
writes a trimmed recombination report per recipe: the baseline commit `main` (aligned),
four finished experiments, one failed (`layer-long`), one still queued (`still-queued`),
and the workspace after `dvc exp apply weighted-07` (a duplicate of that experiment).
"""

import copy
import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from recomb.errors import RecombError
from recomb.leaderboard import (baseline_rows, markdown, rank, recommendation, row_from_report, rows_from_exp_show,
                                winner)
from stages import cli

FIXTURE = Path(__file__).parent / "data" / "exp_show.json"
ROOT = Path(__file__).resolve().parents[1]
RANKED = ["weighted-07", "random-s1", "main", "slerp-quantized", "layer-short"]
PARENTS_AGREEMENT, BOUND = 0.5075, 0.7537499999999999


@pytest.fixture
def exp_show() -> list:
    return json.loads(FIXTURE.read_text())


def child(name: str, primary: float, online_return: float | None = 500.0, over_bound: float | None = None) -> dict:
    """A hand-made row for the ranking rules: only the sort keys matter."""
    return {"experiment": name, "parents": "students", "mode": "weighted", "alpha": 0.5, "seed": 0, "regime": "short",
            "primary": primary, "agreement_a": primary, "agreement_b": primary,
            "primary_over_bound": primary / BOUND if over_bound is None else over_bound,
            "online_return": online_return}


def refused(fn, *args) -> str:
    with pytest.raises(RecombError) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


# ----------------------------------------------------------------------------- exp show parsing


def test_rows_from_exp_show_reads_finished_experiments_and_the_baseline_commit(exp_show):
    rows, baselines = rows_from_exp_show(exp_show)
    assert sorted(r["experiment"] for r in rows) == sorted(RANKED)  # no failed, queued or duplicate workspace
    by_name = {r["experiment"]: r for r in rows}
    assert by_name["random-s1"] == {
        "experiment": "random-s1", "parents": "students", "mode": "random", "alpha": 0.5, "seed": 1,
        "regime": "short", "primary": 0.74, "agreement_a": 0.74, "agreement_b": 0.76,
        "primary_over_bound": 0.74 / BOUND, "online_return": 480.0}
    assert by_name["slerp-quantized"]["parents"] == "quantized"
    assert by_name["main"]["mode"] == "aligned" and by_name["main"]["primary"] == 0.718
    assert baselines == baseline_rows(exp_show[1]["data"]["metrics"]["data/reports/recombination.json"]["data"])


def test_baseline_rows_are_the_parents_agreement(exp_show):
    report = exp_show[1]["data"]["metrics"]["data/reports/recombination.json"]["data"]
    parent_a, parent_b = baseline_rows(report)
    assert parent_a["experiment"] == "parent_A (baseline)" and parent_b["experiment"] == "parent_B (baseline)"
    assert (parent_a["agreement_a"], parent_a["agreement_b"]) == (1.0, PARENTS_AGREEMENT)
    assert (parent_b["agreement_a"], parent_b["agreement_b"]) == (PARENTS_AGREEMENT, 1.0)
    for row in (parent_a, parent_b):
        assert row["primary"] == PARENTS_AGREEMENT
        assert row["primary_over_bound"] == pytest.approx(PARENTS_AGREEMENT / BOUND)
        assert "rank" not in row and row["mode"] is None
    assert (parent_a["online_return"], parent_b["online_return"]) == (500.0, 498.5)


def test_a_workspace_with_its_own_child_is_a_row_and_one_equal_to_the_commit_is_not(exp_show):
    own = copy.deepcopy(exp_show)
    own[0]["data"]["params"]["params.yaml"]["data"]["crossover"]["alpha"] = 0.6
    assert "workspace" in [r["experiment"] for r in rows_from_exp_show(own)[0]]

    same_as_commit = copy.deepcopy(exp_show)
    same_as_commit[0]["data"] = copy.deepcopy(exp_show[1]["data"])
    assert [r["experiment"] for r in rows_from_exp_show(same_as_commit)[0]].count("main") == 1
    assert "workspace" not in [r["experiment"] for r in rows_from_exp_show(same_as_commit)[0]]


def test_running_and_errored_entries_are_skipped(exp_show):
    experiments = exp_show[1]["experiments"]
    by_name = {e["name"]: e for e in experiments}
    by_name["random-s1"]["executor"] = {"state": "running"}
    by_name["slerp-quantized"]["revs"][0]["error"] = {"msg": "Experiment run failed", "type": ""}
    exp_show[1]["error"] = {"msg": "bad commit", "type": ""}
    names = [r["experiment"] for r in rows_from_exp_show(exp_show)[0]]
    # the errored commit is gone, so the workspace (weighted-07 applied) is still a duplicate of the experiment
    assert sorted(names) == ["layer-short", "weighted-07"]


@pytest.mark.parametrize("data", [{"rev": "workspace"}, "text", None, [1, 2], [{"name": "x"}]])
def test_garbage_is_one_line_naming_the_format(data):
    assert "not `dvc exp show --json` output" in refused(rows_from_exp_show, data)


def test_no_finished_experiment_is_one_line(exp_show):
    for entry in [exp_show[0], exp_show[1], *(r for e in exp_show[1]["experiments"] for r in e["revs"])]:
        entry["data"]["metrics"] = {}
    assert refused(rows_from_exp_show, exp_show).startswith("no finished experiment with data/reports/recombination")
    assert "no finished experiment" in refused(rows_from_exp_show, [])


def test_a_report_without_the_child_names_the_missing_key():
    message = refused(row_from_report, "exp-1", {"parents": "students", "mode": "layer", "alpha": 0.5, "seed": 0},
                      "short", {"children": {"child_raw": {}}})
    assert message == "exp-1: recombination report has no children.child"


# ----------------------------------------------------------------------------- ranking


def test_fixture_ranks_by_primary_then_online_return(exp_show):
    ranked = rank(rows_from_exp_show(exp_show)[0], 0.0)
    assert [r["experiment"] for r in ranked] == RANKED  # weighted-07 and random-s1 tie on primary: 500 beats 480
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5]


def test_tie_breaks_return_then_none_last_then_primary_over_bound_then_name():
    rows = [child("e", 0.7, None), child("d", 0.7, 400.0), child("c", 0.7, 500.0, over_bound=0.9),
            child("b", 0.7, 500.0, over_bound=0.95), child("a", 0.7, 500.0, over_bound=0.9), child("z", 0.8, 10.0)]
    expected = ["z", "b", "a", "c", "d", "e"]
    assert [r["experiment"] for r in rank(rows, 0.0)] == expected
    assert [r["experiment"] for r in rank(rows[::-1], 0.0)] == expected


def test_degenerate_flag_off_at_zero_and_strictly_below_the_threshold():
    rows = [child("low", 0.3), child("edge", 0.5), child("high", 0.8)]
    assert not any(r["degenerate"] for r in rank(rows, 0.0))
    assert {r["experiment"]: r["degenerate"] for r in rank(rows, 0.5)} == {"high": False, "edge": False, "low": True}


def test_rank_does_not_change_its_input_and_reranks_cleanly():
    rows = [child("a", 0.5), child("b", 0.6)]
    once = rank(rows, 0.55)
    assert "rank" not in rows[0] and "degenerate" not in rows[0]
    assert [(r["experiment"], r["rank"], r["degenerate"]) for r in rank(once, 0.0)] == [("b", 1, False),
                                                                                      ("a", 2, False)]


# ----------------------------------------------------------------------------- rendering


def test_markdown_lists_ranked_rows_then_baselines(exp_show):
    rows, baselines = rows_from_exp_show(exp_show)
    lines = markdown(rank(rows, 0.5), baselines).splitlines()
    assert lines[0] == ("| rank | experiment | recipe | regime | primary | agreement A | agreement B | primary/U "
                        "| online return | degenerate |")
    assert lines[2] == ("| 1 | weighted-07 | weighted α=0.7 on students | tuned | 0.7400 | 0.7900 | 0.7400 | 0.9818 "
                        "| 500.0 | no |")
    assert lines[3].startswith("| 2 | random-s1 | random α=0.5 seed=1 on students | short |")
    assert lines[6] == "| 5 | layer-short | layer on students | short | 0.3500 | 0.9200 | 0.3500 | 0.4643 | 9.4 | yes |"
    assert lines[7] == "| — | parent_A (baseline) | — | — | 0.5075 | 1.0000 | 0.5075 | 0.6733 | 500.0 | — |"
    assert lines[8].startswith("| — | parent_B (baseline) |") and len(lines) == 9


def test_markdown_names_the_parents_only_when_rows_differ_in_them():
    rows = rank([child("w", 0.7, None), {**child("r", 0.6), "mode": "random", "seed": 2},
                 {**child("l", 0.5), "mode": "layer"}], 0.0)
    text = markdown(rows, baseline_rows({"parents_agreement": 0.5, "bound": 0.75, "greedy_return": {}}))
    assert "| 1 | w | weighted α=0.5 | short | 0.7000 | 0.7000 | 0.7000 | 0.9287 | — | no |" in text
    assert "| random α=0.5 seed=2 |" in text and "| layer |" in text and " on students" not in text


def test_recommendation_names_the_winner_its_figures_and_how_to_apply(exp_show):
    rows, baselines = rows_from_exp_show(exp_show)
    text = recommendation(rank(rows, 0.0), baselines, "  dvc exp apply weighted-07")
    assert text.startswith("Recommended: weighted α=0.7 on students, fine-tune regime tuned (experiment weighted-07).")
    assert "agreement A 0.7900, agreement B 0.7400" in text and "primary/U: 0.9818; online return: 500.0" in text
    assert ("runner-up random-s1 (random α=0.5 seed=1 on students, short): primary +0.0000, "
            "online return 500.0 vs 480.0") in text
    assert "agree with each other on 0.5075; the child agrees more with both: yes (A +0.2825, B +0.2325)" in text
    assert text.endswith("How to apply:\n  dvc exp apply weighted-07\n") and "degenerate" not in text


def test_recommendation_of_a_lone_degenerate_child_says_so():
    baselines = baseline_rows({"parents_agreement": 0.5, "bound": 0.75, "greedy_return": {}})
    text = recommendation(rank([child("only", 0.45, None)], 0.5), baselines, "apply it")
    assert "no runner-up" in text and "online return: —" in text
    assert "agrees more with both: NO (A -0.0500, B -0.0500)" in text and "flagged degenerate" in text


# ----------------------------------------------------------------------------- the command


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        cli.main(["leaderboard", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_three_reports_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: threshold 0
    code, out, err = run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "board")
    assert (code, err) == (0, "")
    assert out == (tmp_path / "board" / "leaderboard.md").read_text()
    saved = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert [r["experiment"] for r in saved["rows"]] == RANKED and len(saved["baselines"]) == 2
    assert not any(r["degenerate"] for r in saved["rows"])
    advice = (tmp_path / "board" / "recommendation.txt").read_text()
    assert "(experiment weighted-07)" in advice
    assert "dvc exp apply weighted-07\n  dvc repro" in advice and 'git commit -am "Crossover weighted' in advice


def test_cli_threshold_from_params_yaml_and_the_flag_overrides_it(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["search"]["degenerate_threshold"] = 0.5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "a")[0] == 0
    flagged = [r["experiment"] for r in json.loads(Path("a/leaderboard.json").read_text())["rows"] if r["degenerate"]]
    assert flagged == ["layer-short"]
    assert run_cli(capsys, "--exp-show", str(FIXTURE), "--out", "b", "--degenerate-threshold", "0")[0] == 0
    assert not any(r["degenerate"] for r in json.loads(Path("b/leaderboard.json").read_text())["rows"])


def test_cli_runs_dvc_exp_show_without_a_file_and_reads_stdin_with_dash(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[1:])
        return subprocess.CompletedProcess(cmd, 0, stdout=FIXTURE.read_text(), stderr="")

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert run_cli(capsys, "--out", "a")[0] == 0
    assert calls == [["-m", "dvc", "exp", "show", "--json"]]
    monkeypatch.setattr(cli.sys, "stdin", io.StringIO(FIXTURE.read_text()))
    code, out, _ = run_cli(capsys, "--exp-show", "-", "--out", "b")
    assert code == 0 and out.splitlines()[2].startswith("| 1 | weighted-07 |")


@pytest.mark.parametrize("args, message", [
    (["--exp-show", "garbage.json"], "error: garbage.json: not valid JSON (Expecting value at line 1)"),
    (["--exp-show", "missing.json"], "error: missing.json: cannot read (No such file or directory)"),
    (["--exp-show", str(FIXTURE), "--degenerate-threshold", "high"],
     "error: --degenerate-threshold: must be a number in [0, 1] (got 'high')"),
    (["--exp-show", str(FIXTURE), "--degenerate-threshold", "1.5"],
     "error: --degenerate-threshold: must be in [0, 1], 0 = off (got '1.5')"),
])
def test_cli_user_mistakes_are_one_line_and_exit_1(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.json").write_text("not json\n")
    code, out, err = run_cli(capsys, *args, "--out", "board")
    assert (code, out, err) == (1, "", message + "\n")
    assert not (tmp_path / "board").exists()


def test_cli_reports_a_failing_dvc_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 253, stdout="", stderr="ERROR: you are not inside of a DVC repository\n"))
    code, _, err = run_cli(capsys, "--out", "board")
    assert (code, err) == (1, "error: dvc exp show --json failed (exit 253): ERROR: you are not inside of a DVC "
                              "repository\n")


def test_apply_hint_of_the_workspace_does_not_ask_for_dvc_exp_apply():
    assert "dvc exp apply" not in cli.how_to_apply(child("workspace", 0.7))
    assert cli.how_to_apply(child("exp-1", 0.7)).startswith("  dvc exp apply exp-1\n  dvc repro")


def test_the_recommended_child_must_also_act_when_returns_were_measured():
    rows = rank([
        {"experiment": "agrees", "parents": "students", "mode": "weighted", "alpha": 0.5, "seed": 0, "regime": "short",
         "primary": 0.74, "agreement_a": 0.76, "agreement_b": 0.74, "primary_over_bound": 0.98, "online_return": 159.0},
        {"experiment": "acts", "parents": "students", "mode": "aligned", "alpha": 0.5, "seed": 0, "regime": "tuned",
         "primary": 0.72, "agreement_a": 0.77, "agreement_b": 0.72, "primary_over_bound": 0.95, "online_return": 500.0},
    ], 0.0)
    baselines = baseline_rows({"parents_agreement": 0.5, "bound": 0.75, "greedy_return": {}})
    assert winner(rows, 475.0)["experiment"] == "acts" and winner(rows, None)["experiment"] == "agrees"
    text = recommendation(rows, baselines, "apply it", 475.0)
    assert text.startswith("Recommended: aligned α=0.5 on students, fine-tune regime tuned (experiment acts).")
    assert "rank 1 agrees: 159.0" in text
    assert "warning: no child reaches the online return bar 600" in recommendation(rows, baselines, "x", 600.0)
