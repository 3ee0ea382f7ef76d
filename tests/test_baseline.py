"""The compute-matched DQN baseline: its budget, its params' one-line refusals, and a tiny run of the stage."""

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_recomb
from recomb.artifacts import Outputs
from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork
from recomb.training import envs, tasks
from recomb.training.baseline import BaselineConfig, budget_steps, matched_parts
from stages import baseline, common, paths

ROOT = Path(__file__).resolve().parents[1]
PARAMS = common.with_task_values(common.load_params(ROOT / "params.yaml"))
SIDECAR = {"seed": 4, "greedy_return": 500.0, "best_step": 19456}  # a dqn parent's metrics, env_steps aside


def config(budget) -> BaselineConfig:
    return BaselineConfig.from_params({"baseline": {"seed": 100, "budget": budget}}, "baseline")


def test_matched_is_both_parents_env_steps_plus_one_step_per_buffer_state_and_a_number_is_itself():
    parts = matched_parts({"A": {**SIDECAR, "env_steps": 19456}, "B": {**SIDECAR, "env_steps": 12288}}, 10000)
    assert parts == {"parent_A": 19456, "parent_B": 12288, "buffer_states": 10000}
    assert budget_steps(config("matched"), parts) == 41744
    assert budget_steps(config(5000), parts) == 5000


@pytest.mark.parametrize("metrics", [{**SIDECAR}, None, {**SIDECAR, "env_steps": -8}, {**SIDECAR, "env_steps": 1.5}])
def test_a_parent_without_env_steps_cannot_be_matched(metrics):
    with pytest.raises(RecombError) as err:
        matched_parts({"A": {**SIDECAR, "env_steps": 800}, "B": metrics}, 400)
    assert str(err.value).startswith("parent B: its sidecar records no metrics.env_steps") and "\n" not in str(err.value)


@pytest.mark.parametrize("budget", [0, -1000, "lots", "Matched", 1.5, True])
def test_a_bad_budget_is_one_line_naming_the_key(budget):
    with pytest.raises(RecombError) as err:
        config(budget)
    assert str(err.value).startswith("params.yaml: baseline.budget: must be ") and "\n" not in str(err.value)


def test_recomb_params_refuses_a_bad_budget_before_any_stage_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "params.yaml").read_text()
    assert text.count("  budget: matched") == 1
    (tmp_path / "params.yaml").write_text(text.replace("  budget: matched", "  budget: 0"))
    assert run_recomb(capsys, "params") == (1, "", "error: params.yaml: baseline.budget: must be matched or a number "
                                                   "of environment steps ≥ 1 (got 0)\n")


def test_parents_it_cannot_count_get_no_baseline_and_a_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = copy.deepcopy(PARAMS)
    params["parents"]["source"] = "synthetic"
    baseline.main(params)
    assert "parents.source is synthetic" in json.loads(Path(paths.BASELINE_SKIPPED).read_text())["reason"]
    assert not Path(paths.BASELINE).exists() and Path(paths.BASELINE_CURVE).read_text() == "step,mean_return\n"


def test_a_tiny_matched_baseline_misses_the_bar_without_failing_and_plays_both_variants(tmp_path, monkeypatch):
    """Two parents of 800 env steps and a 400-state buffer: 2000 steps, far too few for CartPole's 475; the copies
    of its training batch alternate between A's nominal physics and B's longer pole."""
    monkeypatch.chdir(tmp_path)
    params = copy.deepcopy(PARAMS)
    params["parents"]["dqn"]["variants"].update(a={}, b={"pole_length": 2.0})
    params["parents"]["dqn"]["buffer"]["n_states"] = 400
    params["parents"]["presets"]["CartPole-v1"].update(learning_starts=500, eval_interval=1000, eval_episodes=4)
    out = Outputs()
    for seed, pair in enumerate(paths.PAIRS):
        out.add_checkpoint(paths.PARENTS.format(pair), seeded_qnetwork(Architecture(4, 2, 64, 0.1), seed).eval(),
                           f"parent_{pair}", {"metrics": {**SIDECAR, "seed": seed, "env_steps": 800}})
    out.commit()
    batches = []
    original = tasks.CartPoleTask.batch

    def watched(self, num_envs, seed, settings=((),)):
        batches.append(original(self, num_envs, seed, settings))
        return batches[-1]

    monkeypatch.setattr(tasks.CartPoleTask, "batch", watched)
    baseline.main(params)
    meta = json.loads((tmp_path / "data/baseline/dqn.json").read_text())
    assert meta["role"] == "baseline" and meta["budget_mode"] == "matched"
    assert meta["matched_parts"] == {"parent_A": 800, "parent_B": 800, "buffer_states": 400}
    assert meta["budget"] == meta["env_steps"] == 2000
    assert meta["variants"] == [{}, {"pole_length": 2.0}]
    assert meta["best_return"] < 475.0 and meta["pass_return_reached"] is False
    assert [row["step"] for row in meta["history"]] == [1000, 2000]
    with open(tmp_path / paths.BASELINE_CURVE) as f:
        assert [float(row["mean_return"]) for row in csv.DictReader(f)] == [r["mean_return"] for r in meta["history"]]
    assert (tmp_path / paths.BASELINE).is_file()
    (training,) = batches  # the one training batch (evaluations run the conditions' own batches)
    np.testing.assert_array_equal(training.physics.pole_length / envs.NOMINAL.pole_length,
                                  np.tile([1.0, 2.0], 4))
    assert np.all(training.physics.gravity == envs.NOMINAL.gravity)
