"""Generalization: shifted CartPoles against gymnasium, hand-computed agreement figures, the gap gate, the stage."""

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from recomb.artifacts import Outputs
from recomb.config import load_params
from recomb.errors import RecombError
from recomb.evaluation import generalization as gen
from recomb.networks import Architecture, seeded_qnetwork
from recomb.quantization.quantize import ptq
from recomb.stats import UncertaintyConfig
from recomb.training import envs, tasks
from stages import inputs
from stages.common import with_task_values
from test_pipeline import one_line_error

torch.set_num_threads(1)
UNC = UncertaintyConfig(0.95, 200, 0)
SECTION = {
    "states": 0, "sample_seed": 0, "noise_std": [0.5], "noise_seed": 0, "input_scaling": [2.0], "shifted_states": "",
    "gap_figure": "primary_over_bound", "max_drop_pp": 5.0, "report_only": False, "eval_episodes": 5,
    "eval_seed": 20000, "workers": 1,
    "physics": {"CartPole-v1": {"pole_length": [2.0]}},
}


def config(**overrides) -> gen.GeneralizeConfig:
    return gen.GeneralizeConfig.from_mapping({**SECTION, **overrides}, "params.yaml: generalize")


def wobbly(x):
    """Pushes by pole angle and angular velocity, elementwise (no matmul, so no batch-size dependence)."""
    return torch.stack([torch.zeros(len(x)), x[:, 2] + 0.1 * x[:, 3]], 1)


def by_angle(x):
    """Pushes by pole angle only: falls within 30-60 steps unshifted, so every shift below changes the returns."""
    return torch.stack([torch.zeros(len(x)), x[:, 2]], 1)


def always_left(x):
    return torch.tensor([1.0, 0.0]).expand(x.shape[0], 2)


# ----------------------------------------------------------------------------- shifted CartPoles


@pytest.mark.parametrize("shift", [{"pole_length": 2.0}, {"gravity": 4.0, "force_magnitude": 0.5},
                                   {"cart_mass": 4.0, "pole_mass": 0.25}])
def test_physics_shift_matches_gymnasium_with_those_constants(shift):
    ours = envs.condition_returns(by_angle, [envs.Condition(envs.NOMINAL.scaled(**shift))], 6, seed=50)[0]
    env = gym.make("CartPole-v1")
    plant = env.unwrapped
    names = {"gravity": "gravity", "cart_mass": "masscart", "pole_mass": "masspole", "pole_length": "length",
             "force_magnitude": "force_mag"}
    for key, factor in shift.items():
        setattr(plant, names[key], getattr(plant, names[key]) * factor)
    plant.total_mass = plant.masspole + plant.masscart
    plant.polemass_length = plant.masspole * plant.length
    theirs = []
    for i in range(6):
        obs, _ = env.reset(seed=50 + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(by_angle(torch.from_numpy(obs[None])).argmax(1)))
            total, done = total + reward, terminated or truncated
        theirs.append(total)
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, envs.greedy_returns(by_angle, 6, seed=50))  # the shift changed something


def test_observation_noise_is_seen_by_the_policy_only():
    """Always-left ignores what it sees, so its episodes are the unshifted ones; what it saw differs from the
    true state by N(0, 0.5²) in x only."""
    seen = {}

    def recording(name):
        def policy(x):
            seen.setdefault(name, []).append(x.clone())
            return always_left(x)
        return policy

    noisy = envs.Condition(observation_noise=(0.5, 0.0, 0.0, 0.0))
    returns = envs.condition_returns(recording("noisy"), [noisy], 300, seed=0, noise_seed=3)[0]
    np.testing.assert_array_equal(returns, envs.condition_returns(recording("true"), [envs.Condition()], 300, 0)[0])
    diff = torch.cat(seen["noisy"]) - torch.cat(seen["true"])
    assert len(diff) > 2000 and torch.all(diff[:, 1:] == 0)
    assert abs(diff[:, 0].std().item() - 0.5) < 0.025 and abs(diff[:, 0].mean().item()) < 0.03


def test_a_condition_returns_the_same_alone_or_batched_with_others():
    noisy = envs.Condition(observation_noise=(0.0, 0.0, 0.05, 0.2))
    alone = envs.condition_returns(wobbly, [noisy], 20, seed=7, noise_seed=1)[0]
    batched = envs.condition_returns(wobbly, [envs.Condition(), envs.Condition(envs.NOMINAL.scaled(gravity=2.0)),
                                              noisy], 20, seed=7, noise_seed=1)
    np.testing.assert_array_equal(batched[2], alone)
    np.testing.assert_array_equal(batched[0], envs.greedy_returns(wobbly, 20, seed=7))
    assert not np.array_equal(alone, batched[0])


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize("overrides, message", [
    ({"physics": {"CartPole-v1": {"pole_len": [2.0]}}},
     "params.yaml: generalize.physics.CartPole-v1.pole_len: CartPole-v1 has no such shift (it has: gravity, "
     "cart_mass, pole_mass, pole_length, force_magnitude)"),
    ({"physics": {"CartPole-v1": {"gravity": [0.0]}}},
     "params.yaml: generalize.physics.CartPole-v1.gravity: a multiplier must be > 0 (got 0.0)"),
    ({"physics": {"CartPole-v1": {"gravity": [2, 2.0]}}},
     "params.yaml: generalize.physics.CartPole-v1.gravity: levels must be distinct (got [2, 2.0])"),
    ({"physics": {"CartPole-v1": {"gravity": 2.0}}},
     "params.yaml: generalize.physics.CartPole-v1.gravity: expected a list of numbers (got 2.0)"),
    ({"physics": {"LunarLander-v3": {"gravity": [-12.0]}}},
     "params.yaml: generalize.physics.LunarLander-v3.gravity: must be in (-12, 0) (got -12.0)"),
    ({"physics": {"LunarLander-v3": {"wind_power": [25.0]}}},
     "params.yaml: generalize.physics.LunarLander-v3.wind_power: must be in [0, 20] (got 25.0)"),
    ({"physics": {"LunarLander-v3": {"pole_length": [2.0]}}},
     "params.yaml: generalize.physics.LunarLander-v3.pole_length: LunarLander-v3 has no such shift (it has: "
     "gravity, wind_power, turbulence_power)"),
    ({"physics": {"Acrobot-v1": {"link_mass_1": [-1.0]}}},
     "params.yaml: generalize.physics.Acrobot-v1.link_mass_1: a multiplier must be > 0 (got -1.0)"),
    ({"physics": {"MountainCar-v0": {"gravity": [2.0]}}},
     "params.yaml: generalize.physics.MountainCar-v0.gravity: MountainCar-v0 has no such shift (it has: none)"),
    ({"noise_std": [0.5, 0.50]}, "params.yaml: generalize.noise_std: levels must be > 0 and distinct (got [0.5, 0.5])"),
    ({"shifted_states": "data/states/heldout.npy"},
     "params.yaml: generalize.shifted_states: must be '' or a file under data/user/ (the folder dvc.yaml tracks) "
     "(got 'data/states/heldout.npy')"),
    ({"gap_figure": "oracle"}, "params.yaml: generalize.gap_figure: must be one of primary, primary_over_bound "
                               "(got 'oracle')"),
])
def test_bad_params_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(RecombError) as err:
        config(**overrides)
    assert str(err.value) == message


def test_cartpoles_shifts_are_its_constants():
    assert list(tasks.task("CartPole-v1").shifts) == list(envs.PHYSICS_KEYS)


# ----------------------------------------------------------------------------- sets and figures


def test_sets_sample_train_and_shift_heldout():
    rng = np.random.default_rng(0)
    train = rng.uniform(10, 11, (1000, 4)).astype(np.float32)  # train rows are told apart by their range
    heldout = rng.standard_normal((4000, 4)).astype(np.float32) * np.float32([1, 2, 0.1, 3])
    shifted = rng.uniform(-1, 0, (90, 4)).astype(np.float32)
    sets = gen.state_sets(train, heldout, config(noise_std=[0.5, 2.0], input_scaling=[0.5]), shifted)
    assert list(sets) == ["in_distribution", "heldout", "gaussian_noise_0p5", "gaussian_noise_2", "input_scaling_0p5",
                          "shifted_file"]
    assert len(sets["in_distribution"]) == 1000 and (sets["in_distribution"] >= 10).all()  # all 1000 < 4000
    np.testing.assert_array_equal(sets["heldout"], heldout)
    np.testing.assert_array_equal(sets["input_scaling_0p5"], heldout * 0.5)
    for level in (0.5, 2.0):  # noise std in units of each feature's held-out std: 0.5 → (0.5, 1, 0.05, 1.5)
        ratio = (sets[f"gaussian_noise_{gen.level_key(level)}"] - heldout).std(axis=0) / heldout.std(axis=0)
        np.testing.assert_allclose(ratio, level, rtol=0.05)
    np.testing.assert_array_equal(sets["shifted_file"], shifted)

    capped = gen.state_sets(train, heldout, config(states=50), shifted)
    assert {len(s) for s in capped.values()} == {50}
    assert {r.tobytes() for r in capped["heldout"]} <= {r.tobytes() for r in heldout}
    assert {r.tobytes() for r in capped["shifted_file"]} <= {r.tobytes() for r in shifted}


# Eight states: parent A picks action 1 where x0 > 0, parent B where x1 > 0. They agree on 6 of 8 (a = 0.75,
# U = 0.875). A network always picking 1 agrees with A on 4, with B on 4; A or B picks 1 on 5 states (oracle).
SIGNS = np.array([[1, 1], [1, 1], [1, -1], [-1, -1], [-1, 1], [-1, -1], [1, 1], [-1, -1]], dtype=np.float32)
STATES = np.concatenate([SIGNS, np.zeros((8, 2), np.float32)], axis=1)


def by_sign(feature):
    return lambda x: torch.stack([torch.zeros(len(x)), x[:, feature]], 1)


def test_figures_of_each_network_on_a_set_by_hand():
    parent_a, parent_b = by_sign(0), by_sign(1)
    networks = {"parent_A": parent_a, "parent_B": parent_b, "always_1": lambda x: torch.tensor([0.0, 1.0]).expand(
        len(x), 2), "copy_of_A": by_sign(0)}
    found, returns = gen.evaluate(parent_a, parent_b, networks, {"in_distribution": STATES}, None, None, config(), UNC)
    assert returns is None
    s = found["in_distribution"]
    assert (s["n_states"], s["parents_agreement"]) == (8, 0.75)
    assert list(s["networks"]) == ["always_1", "copy_of_A"]  # a parent's own row would only restate a
    always = s["networks"]["always_1"]
    assert (always["agreement_a"], always["agreement_b"], always["oracle_agreement"], always["primary"]) == (
        0.5, 0.5, 0.625, 0.5)
    assert always["primary_over_bound"] == pytest.approx(0.5 / 0.875)
    copy = s["networks"]["copy_of_A"]
    assert (copy["agreement_a"], copy["agreement_b"], copy["oracle_agreement"]) == (1.0, 0.75, 1.0)
    assert copy["primary_over_bound"] == pytest.approx(0.75 / 0.875)
    assert always["primary_ci"]["low"] < 0.5 < always["primary_ci"]["high"]


AGREEMENTS = {"agreement_a": 0.5, "agreement_b": 0.5, "oracle_agreement": 0.5}  # what the metrics file also keeps


def sets_with_child(id_value: float, heldout_value: float, figure: str) -> dict:
    other = {**AGREEMENTS, "primary": 0.5, "primary_over_bound": 0.5}
    return {name: {"n_states": 10, "parents_agreement": 0.5,
                   "networks": {"child": {**AGREEMENTS, "primary": 0.8, "primary_over_bound": 0.9, figure: value},
                                                "student_A": dict(other)}}
            for name, value in (("in_distribution", id_value), ("heldout", heldout_value))}


@pytest.mark.parametrize("figure", ["primary", "primary_over_bound"])
def test_the_gap_gate_fails_a_drop_beyond_max_and_report_only_keeps_the_figure(figure):
    summary = gen.with_gaps(sets_with_child(0.95, 0.88, figure), config(gap_figure=figure))
    held = summary["sets"]["heldout"]
    assert held["networks"]["child"]["drop_pp"] == pytest.approx(7.0)
    assert held["networks"]["student_A"]["drop_pp"] == 0
    check = held["checks"][f"child_{figure}_drop_pp"]
    assert (check["max"], check["passed"], held["passed"], summary["overall_passed"]) == (5.0, False, False, False)
    assert summary["sets"]["in_distribution"]["checks"] == {}

    passing = gen.with_gaps(sets_with_child(0.95, 0.91, figure), config(gap_figure=figure))
    assert passing["overall_passed"] and passing["sets"]["heldout"]["checks"][f"child_{figure}_drop_pp"]["passed"]

    reported = gen.with_gaps(sets_with_child(0.95, 0.88, figure), config(gap_figure=figure, report_only=True))
    assert reported["overall_passed"] and reported["sets"]["heldout"]["passed"]
    assert not reported["sets"]["heldout"]["checks"][f"child_{figure}_drop_pp"]["passed"]
    assert "checks" not in gen.metrics(reported, None, None)["sets"]["heldout"]  # reported, never gating the pipeline


def test_stress_sets_are_compared_not_gated():
    sets = sets_with_child(0.95, 0.94, "primary_over_bound")
    sets["gaussian_noise_2"] = {"n_states": 10, "parents_agreement": 0.5, "networks": {
        "child": {**AGREEMENTS, "primary": 0.5, "primary_over_bound": 0.6},
        "student_A": {**AGREEMENTS, "primary": 0.5, "primary_over_bound": 0.5}}}
    summary = gen.with_gaps(sets, config())
    noisy = summary["sets"]["gaussian_noise_2"]
    assert noisy["networks"]["child"]["drop_pp"] == pytest.approx(35.0)  # 0.95 in distribution → 0.6
    assert noisy["checks"] == {} and noisy["passed"] is None and summary["overall_passed"]
    assert "passed" not in gen.metrics(summary, None, None)["sets"]["gaussian_noise_2"]


# ----------------------------------------------------------------------------- the stage


def write_artifacts(root) -> None:
    """A tiny CartPole-shaped pipeline's artifacts (random networks), what the stage reads."""
    out = Outputs()
    rng = np.random.default_rng(0)
    parent, small = Architecture(4, 2, 16, 0.0), Architecture(4, 2, 8, 0.0)
    for pair, seed in (("A", 0), ("B", 1)):
        out.add_checkpoint(root / f"data/parents/parent_{pair}.safetensors", seeded_qnetwork(parent, seed),
                           f"parent_{pair}", {"env": envs.ENV_ID})
        student = seeded_qnetwork(small, seed + 2)
        out.add_checkpoint(root / f"data/students/student_{pair}.safetensors", student, f"student_{pair}", {})
        out.add_checkpoint(root / f"data/quantized/student_{pair}_int8.safetensors", ptq(student, "dynamic"),
                           f"student_{pair}_int8", {})
    for path, seed in (("children/raw/child", 4), ("children/finetuned/child", 5), ("search/000_best/child", 6)):
        out.add_checkpoint(root / f"data/{path}.safetensors", seeded_qnetwork(small, seed), "child", {})
    out.add_json(root / "data/search/leaderboard.json", {"rows": [{"experiment": "000_best"}]})
    out.add_states(root / "data/states/train.npy", rng.normal(0, 0.1, (300, 4)).astype(np.float32))
    out.add_states(root / "data/states/heldout.npy", rng.normal(0, 0.1, (100, 4)).astype(np.float32))
    out.commit()
    np.save(root / "data/user/shifted.npy", rng.normal(0, 0.2, (80, 4)).astype(np.float32))
    np.save(root / "data/user/wide.npy", rng.normal(0, 0.2, (80, 5)).astype(np.float32))
    nan = rng.normal(0, 0.2, (80, 4)).astype(np.float32)
    nan[7, 2] = np.nan
    np.save(root / "data/user/nan.npy", nan)


def set_section(p, **overrides) -> None:
    """This file's `generalize` section (not params.yaml's) on a small budget."""
    params = p.params()
    params["generalize"] = {**SECTION, "states": 50, "workers": 2, **overrides}
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def numbers_only(node) -> bool:
    if isinstance(node, dict):
        return all("." not in key and numbers_only(value) for key, value in node.items())
    return isinstance(node, (bool, int, float))


def test_stage_refuses_bad_input_then_scores_every_network(project, monkeypatch):
    p = project
    write_artifacts(p.path)
    written = [p.path / "data/reports/generalization", p.path / "data/plots/generalization"]
    set_section(p, physics={"CartPole-v1": {"mass": [2.0]}})
    assert one_line_error(p.stage("generalize", check=False)) == (
        "params.yaml: generalize.physics.CartPole-v1.mass: CartPole-v1 has no such shift (it has: gravity, "
        "cart_mass, pole_mass, pole_length, force_magnitude)")
    monkeypatch.chdir(p.path)  # the bad files in this process: the same main(), without another interpreter start
    for name, message in (("wide", "data/user/wide.npy: states must have shape (N, 4) with N > 0, got (80, 5)"),
                          ("nan", "data/user/nan.npy: 1 of 80 states contain NaN or Inf (first at row 7)")):
        set_section(p, shifted_states=f"data/user/{name}.npy")
        with pytest.raises(RecombError) as err:
            inputs.main(with_task_values(load_params("params.yaml")))  # the stage that reads data/user/
        assert str(err.value) == message
    assert not any(path.exists() for path in written) and not (p.path / "data/inputs").exists()

    set_section(p, shifted_states="data/user/shifted.npy")
    p.stage("inputs")
    p.stage("generalize")
    summary = json.loads((written[0] / "generalization_summary.json").read_text())
    assert numbers_only(summary)
    assert set(summary["sets"]) == {"in_distribution", "heldout", "gaussian_noise_0p5", "input_scaling_2",
                                    "shifted_file"}
    assert {s["n_states"] for s in summary["sets"].values()} == {50}
    networks = {"student_A", "student_B", "student_int8_A", "student_int8_B", "child_raw", "child", "search_best"}
    assert all(set(s["networks"]) == networks for s in summary["sets"].values())
    assert summary["overall_passed"] == all(s["passed"] for s in summary["sets"].values() if "passed" in s)
    assert set(summary["returns"]) == {"parent_A", "parent_B", *networks}
    assert set(summary["returns"]["child"]) == {"nominal", "observation_noise", "pole_length"}
    assert set(summary["returns"]["child"]["pole_length"]) == {"2"}
    with open(written[1] / "returns.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["shift"], float(r["level"])) for r in rows] == [("observation_noise", 0.0), ("observation_noise", 0.5),
                                                               ("pole_length", 1.0), ("pole_length", 2.0)]
    assert float(rows[3]["child"]) == summary["returns"]["child"]["pole_length"]["2"]
    assert "# Generalization — " in (written[0] / "report.md").read_text()
    assert (written[1] / "robustness.png").read_bytes().startswith(b"\x89PNG")


def test_without_an_environment_the_report_and_figure_say_so():
    parent_a, parent_b = by_sign(0), by_sign(1)
    sets = {"in_distribution": STATES, "heldout": STATES[::-1].copy(), "gaussian_noise_0p5": STATES * 1.5,
            "input_scaling_2": STATES * 2}
    found, returns = gen.evaluate(parent_a, parent_b, {"parent_A": parent_a, "parent_B": parent_b, "child": by_sign(0)},
                                  sets, None, None, config(), UNC)
    summary = gen.with_gaps(found, config())
    text = gen.markdown(summary, config(), 0.95, None, returns)
    assert "No environment" in text and "| heldout | 8 |" in text
    assert "returns" not in gen.metrics(summary, returns, None)
    figure = gen.robustness_figure(summary, config(), returns, None, 0.95, "no environment")
    assert [ax.get_title() for ax in figure.axes if ax.axison] == ["held-out states: gaussian noise",
                                                                   "held-out states: input scaling"]


def test_the_child_is_drawn_over_an_identical_search_best():
    """The search's best child can be the pipeline's child itself: the child's line comes last in every panel."""
    parent_a, parent_b = by_sign(0), by_sign(1)
    sets = {"in_distribution": STATES, "heldout": STATES[::-1].copy(), "gaussian_noise_0p5": STATES * 1.5,
            "input_scaling_2": STATES * 2}
    networks = {"parent_A": parent_a, "parent_B": parent_b, "child": by_sign(0), "search_best": by_sign(0)}
    found, returns = gen.evaluate(parent_a, parent_b, networks, sets, None, None, config(), UNC)
    figure = gen.robustness_figure(gen.with_gaps(found, config()), config(), returns, None, 0.95,
                                   "identical children")
    for ax in (ax for ax in figure.axes if ax.axison):
        drawn = [line.get_label() for line in ax.get_lines() if line.get_label() in networks]
        assert drawn[-1] == "child" and "search_best" in drawn, drawn
