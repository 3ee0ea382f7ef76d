"""`recomb leaderboard` compares like with like: experiments whose parents, task, students or scoring differ
are ranked in separate groups, each against its own parents and its own task's return bar.

The rows are the real `dvc exp show` rows of tests/data (helpers of tests/test_leaderboard.py), given the
context params a mixed grid has: two experiments moved to Acrobot-v1 (other parents, another bar).
"""

import json
from pathlib import Path

import pytest
import yaml

from recomb.errors import RecombError
from recomb.evaluation.leaderboard import (context_keys, context_params, differing_keys, groups_from_exp_show,
                                           rows_from_exp_show)
from scratch import ROOT
from test_leaderboard import by_rev, exp_show, names, run_cli, to_csv, with_report  # noqa: F401

ACROBOT = ("random-s1", "layer-short")  # moved to another task; the other revisions stay on CartPole
KEYS = ["parents.env", "parents.dqn.seed", "distill.epochs"]


def mixed(rows: list[dict]) -> list[dict]:
    """The fixture as a mixed grid: every revision names its task, parents seed and distillation budget;
    ACROBOT's rows play Acrobot-v1 (their parents agree on 0.8 of states, and return about -80)."""
    for row in rows:
        acrobot = (row["Experiment"] or row["rev"]) in ACROBOT
        row.update({"parents.env": "Acrobot-v1" if acrobot else "CartPole-v1", "parents.dqn.seed": 4.0,
                    "distill.epochs": 25.0})
        if acrobot and row in with_report(rows):
            for column in [c for c in row if ".parent_" in c and c.endswith(".primary")]:
                row[column] = 0.8
            for column in [c for c in row if c.startswith("greedy_return_interval.parent_") and c.endswith(".mean")]:
                row[column] = -80.0
    return rows


def test_experiments_that_differ_in_a_context_param_are_ranked_apart(exp_show):
    rows = mixed(exp_show)
    workspace = by_rev(rows)["workspace"]  # DVC names a param column after its file when a metric shares the name
    workspace["params.yaml:parents.env"] = workspace.pop("parents.env")
    groups = groups_from_exp_show(rows, KEYS)
    assert [g.context["parents.env"] for g in groups] == ["CartPole-v1", "Acrobot-v1"]
    assert sorted(names(groups[1].rows)) == sorted(ACROBOT)
    assert not set(ACROBOT) & set(names(groups[0].rows))
    assert sorted(names(groups[0].rows) + names(groups[1].rows)) == sorted(names(rows_from_exp_show(exp_show)[0]))
    assert [b["primary"] for b in groups[1].baselines] == [0.8, 0.8]  # its own parents, not CartPole's
    assert [b["primary"] for b in groups[0].baselines] == [0.5075, 0.5075]
    assert differing_keys(groups) == ["parents.env"]  # the seed and the budget are the same everywhere


def test_without_context_params_every_experiment_is_one_group(exp_show):
    [group] = groups_from_exp_show(mixed(exp_show), [])
    rows, baselines, confidence = rows_from_exp_show(exp_show)
    assert (group.rows, group.baselines, group.confidence) == (rows, baselines, confidence)
    assert differing_keys([group]) == []


def test_the_context_is_what_dvc_yaml_reads_up_to_the_childs_report_but_the_recipe():
    """The parents, students, int8 students and scoring are context; crossover, finetune and regimes the recipe;
    the analyses downstream of the child are neither."""
    prefixes = context_params(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    for expected in ("parents", "parents.env", "distill", "ptq", "qat", "selection", "uncertainty",
                     "validate_recombination", "runtime"):
        assert expected in prefixes, expected
    assert not [p for p in prefixes if p.split(".")[0] in ("crossover", "finetune", "regimes", "search", "multigen",
                                                           "analyze", "compare_operators", "ablation")]
    keys = context_keys(yaml.safe_load((ROOT / "params.yaml").read_text()), prefixes)
    assert {"parents.env", "parents.dqn.seed", "distill.lr", "uncertainty.confidence"} <= set(keys)
    assert not [k for k in keys if k.startswith(("crossover.", "finetune.", "search."))]


def test_a_toy_pipeline_reads_its_context_through_deps_and_interpolated_params():
    """Upstream through a file inside an output folder (written with or without its slash), a metrics file and
    a plot; an interpolated entry stands for its fixed part; the recipe and what runs downstream are left out."""
    stages = {"prepare": {"params": ["data.${data.kind}"], "outs": ["out/X/"]},
              "train": {"deps": ["out/X/rows.npy"], "params": ["train"], "outs": ["out/model"]},
              "evaluate": {"deps": ["out/model/weights.bin"], "params": ["evaluate.k"],
                           "metrics": [{"out/eval.json": {"cache": False}}]},
              "curves": {"params": ["curves"], "plots": ["out/curve.csv"]},
              "score": {"deps": ["out/eval.json", "out/curve.csv"], "params": ["crossover.alpha", "score"]},
              "plot": {"deps": ["out/score.json"], "params": ["plot"]}}
    assert context_params(stages, "score") == ["curves", "data", "evaluate.k", "score", "train"]
    assert context_params({"alone": {"params": ["p"], "plots": ["a.csv"]},
                           "reader": {"deps": ["a.csv"], "params": ["r"]}}, "reader") == ["p", "r"]
    assert context_params({"beside": {"params": ["b"], "outs": ["data/X/"]},  # a sibling, not an input
                           "reader": {"deps": ["data/other.csv"], "params": ["r"]}}, "reader") == ["r"]


def test_rows_without_a_child_name_their_source():
    with pytest.raises(RecombError) as err:
        groups_from_exp_show([], [])
    assert str(err.value).startswith("dvc exp show: no finished experiment with a recombination report")


def test_no_groups_differ_in_nothing():
    assert differing_keys([]) == []


def test_the_cli_writes_one_ranking_per_group_with_its_own_bar_and_says_what_differs(tmp_path, exp_show, monkeypatch,
                                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "exp.csv").write_text(to_csv(mixed(exp_show)))
    code, out, err = run_cli(capsys, "--exp-show", "exp.csv", "--out", "board")
    assert (code, err) == (0, "")
    assert out.startswith("Experiments differ in parents.env: each group is ranked on its own")
    assert "## Experiments with parents.env=CartPole-v1" in out and "## Experiments with parents.env=Acrobot-v1" in out
    saved = json.loads(Path("board/leaderboard.json").read_text())["groups"]
    assert [(g["context"], g["return_bar"]) for g in saved] == [
        ({"parents.env": "CartPole-v1"}, 475.0), ({"parents.env": "Acrobot-v1"}, -100.0)]
    acrobot = {r["experiment"]: r for r in saved[1]["rows"]}
    assert acrobot["layer-short"]["val_return"] == 12.0  # above Acrobot's bar of -100: it acts there
    advice = Path("board/recommendation.txt").read_text()
    assert advice.count("Recommended:") == 2
    assert 'regime tuned (parents.env=CartPole-v1)"' in advice
    assert "(parents.env=Acrobot-v1)\"" in advice and "the parents agree with each other on 0.8000" in advice


def test_a_damaged_dvc_yaml_is_one_line(tmp_path, exp_show, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.csv").write_text(to_csv(exp_show))
    for damage, message in ((b"stages: [unclosed\n", "dvc.yaml: not valid YAML at line 2"),
                            (bytes(range(128, 256)), "dvc.yaml: not a text file (not UTF-8)")):
        (tmp_path / "dvc.yaml").write_bytes(damage)
        assert run_cli(capsys, "--exp-show", "exp.csv", "--out", "board") == (1, "", f"error: {message}\n")
    assert not (tmp_path / "board").exists()
