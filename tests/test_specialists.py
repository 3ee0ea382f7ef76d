"""Specialist parents, competence-aware teaching and the skills map (the specialists issue)."""

import copy

import numpy as np
import pytest
import torch

from recomb.config import load_params
from recomb.errors import RecombError
from recomb.evaluation.skills import parent_variants, skills_map
from recomb.recombination.multigen import MultigenConfig
from recomb.stats import UncertaintyConfig
from recomb.training import tasks
from recomb.training.competence import A_BETTER, B_BETTER, TIE, Competence
from recomb.training.finetune import make_targets
from recomb.training.parents import ParentsConfig, rollout_plan
from scratch import ROOT
from stages.common import with_task_values
from test_finetune import config, parent_q

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))
UNC = UncertaintyConfig(0.95, 500, 0)


def params_with(**variants) -> dict:
    params = copy.deepcopy(PARAMS)
    params["parents"]["dqn"]["variants"].update(variants)
    return params


@pytest.mark.parametrize("env_id, variants, message", [
    ("CartPole-v1", {"a": {"pole_lenght": 2.0}},
     "params.yaml: parents.dqn.variants.a.pole_lenght: CartPole-v1 has no such shift (it has: gravity, "),
    ("CartPole-v1", {"b": {"gravity": 0.0}}, "params.yaml: parents.dqn.variants.b.gravity: a multiplier must be > 0"),
    ("CartPole-v1", {"also": [{}, {"gravity": -2}]},
     "params.yaml: parents.dqn.variants.also[1].gravity: a multiplier must be > 0 (got -2)"),
    ("Acrobot-v1", {"a": {"wind_power": 5.0}}, "params.yaml: parents.dqn.variants.a.wind_power: Acrobot-v1 has no "
                                               "such shift"),
    ("LunarLander-v3", {"a": {"gravity": 3.0}}, "params.yaml: parents.dqn.variants.a.gravity: must be in (-12, 0)"),
    ("CartPole-v1", {"a": {"gravity": "four"}}, "params.yaml: parents.dqn.variants.a.gravity: expected a number"),
])
def test_a_variant_the_task_cannot_play_is_one_line_naming_the_key(env_id, variants, message):
    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    params["parents"]["env"] = env_id
    params["parents"]["dqn"]["variants"].update(variants)
    params = with_task_values(params)
    with pytest.raises(RecombError) as caught:
        ParentsConfig.from_params(params, "parents")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_rollout_plan_plays_each_parent_where_asked():
    cartpole = tasks.task("CartPole-v1")
    cfg = ParentsConfig.from_params(params_with(a={"gravity": 4.0}, b={"pole_length": 2.0}, rollouts="own"), "parents")
    conditions, plan = rollout_plan(cfg.dqn.variants, cartpole)
    assert conditions == [(("gravity", 4.0),), (("pole_length", 2.0),)] and plan == [(0, 0), (1, 1)]
    crossed = ParentsConfig.from_params(params_with(a={"gravity": 4.0}, b={}, rollouts="crossed",
                                                    also=[{"gravity": 4.0}, {"cart_mass": 2.0}]), "parents")
    conditions, plan = rollout_plan(crossed.dqn.variants, cartpole)
    assert conditions == [(("gravity", 4.0),), (), (("cart_mass", 2.0),)]
    assert plan == [(0, 0), (1, 1), (0, 1), (1, 0), (0, 2), (1, 2)]  # A in gravity ×4 once, not twice
    nominal = ParentsConfig.from_params(PARAMS, "parents")
    assert rollout_plan(nominal.dqn.variants, cartpole) == ([()], [(0, 0), (1, 0)])  # today's buffer


def test_the_competent_parent_passes_where_the_other_fails_and_the_generalist_takes_the_rest():
    rng = np.random.default_rng(0)
    full = np.full(100, 500.0)
    noisy = lambda mean: np.clip(mean + rng.normal(0, 20, 100), 0, 500)  # noqa: E731
    # conditions: nominal (both pass), gravity ×4 (only A passes), pole ×3 (only B), cart ×4 (both pass)
    low = noisy(100)
    returns = np.stack([np.stack([full, full, low, full]), np.stack([full, low, full, full])])
    names = ["nominal", "gravity ×4", "pole_length ×3", "cart_mass ×4"]
    settings = [(), (("gravity", 4.0),), (("pole_length", 3.0),), (("cart_mass", 4.0),)]
    competence = Competence(settings, names, returns, 10000, 475.0)
    assert competence.generalist(UNC) == TIE  # 3 passes each, the same mean return
    assert competence.verdicts(UNC).tolist() == [TIE, A_BETTER, B_BETTER, TIE]
    returns[1, 0] = noisy(300)  # B fails nominal: A passes more, and teaches wherever neither alone passes
    competence = Competence(settings, names, returns, 10000, 475.0)
    assert competence.generalist(UNC) == A_BETTER
    assert competence.verdicts(UNC).tolist() == [A_BETTER, A_BETTER, B_BETTER, A_BETTER]
    again = Competence.from_json(competence.to_json(), "conditions.json")
    assert again.conditions == competence.conditions and np.array_equal(again.returns, returns)
    assert again.pass_return == 475.0
    unmeasured = Competence([()], ["nominal"])
    assert unmeasured.verdicts(UNC).tolist() == [TIE]
    with pytest.raises(RecombError, match="conditions.json: not a conditions file"):
        Competence.from_json({"conditions": "x"}, "conditions.json")
    with pytest.raises(RecombError, match="conditions.json: returns without the task's bar"):
        Competence.from_json({**competence.to_json(), "pass_return": None}, "conditions.json")


def test_competent_targets_give_decided_disagreements_to_the_competent_parent():
    q_a, q_b = parent_q()
    disagree = q_a.argmax(-1) != q_b.argmax(-1)
    sides = torch.zeros(len(q_a), dtype=torch.int64)
    sides[: len(q_a) // 2] = -1  # B is the competent one on the first half's condition
    competent = make_targets(q_a, q_b, config(teacher_mode="competent"), 0.5, sides)
    picks = competent.q.argmax(-1)
    decided = disagree & (sides == -1)
    assert decided.any() and torch.equal(picks[decided], q_b.argmax(-1)[decided])
    free = disagree & (sides == 0)
    to_a = (picks == q_a.argmax(-1))[free].double().mean().item()
    assert abs(to_a - 0.5) <= 1 / free.sum().item()  # the rest: the balanced split
    assert competent.balance["disagreements_by_competence"] == pytest.approx(
        decided.double().sum().item() / disagree.sum().item())
    # nothing decided: exactly the balanced targets
    balanced = make_targets(q_a, q_b, config(teacher_mode="balanced"))
    tie = make_targets(q_a, q_b, config(teacher_mode="competent"), 0.5, torch.zeros_like(sides))
    assert torch.equal(tie.q, balanced.q) and torch.equal(tie.soft(1.0), balanced.soft(1.0))


def test_promoted_teachers_cannot_teach_by_competence():
    params = copy.deepcopy(PARAMS)
    params["finetune"]["teacher_mode"] = "competent"
    params["multigen"]["teachers"] = "promoted"
    with pytest.raises(RecombError, match="params.yaml: multigen.teachers: must be original with finetune.teacher_mode"):
        MultigenConfig.validate(params)
    params["multigen"]["teachers"] = "original"
    MultigenConfig.validate(params)


def _interval(mean: float) -> dict:
    return {"mean": mean, "std": 0.0, "low": mean, "high": mean}


def _returns(nominal: float, variant: float, gravity: dict[float, float]) -> dict:
    return {"nominal": _interval(nominal), "variants": {"A's variant: pole_length ×2": _interval(variant)},
            "shifts": {"gravity": {level: _interval(v) for level, v in {1.0: nominal, **gravity}.items()}}}


def test_the_skills_map_fails_a_copied_parent_on_coverage_and_retention():
    cartpole = tasks.task("CartPole-v1")
    returns = {"parent_A": _returns(500, 500, {4.0: 100}), "parent_B": _returns(500, 120, {4.0: 490}),
               "child": _returns(500, 480, {4.0: 470})}
    returns["copy_of_A"] = returns["parent_A"]
    skills = skills_map(returns, cartpole, 475.0, {"A's variant: pole_length ×2": None})
    assert [c["condition"] for c in skills["conditions"]] == ["nominal", "A's variant: pole_length ×2", "gravity ×4"]
    assert skills["parents_passed"] == 3
    child, copied = skills["networks"]["child"], skills["networks"]["copy_of_A"]
    assert child["union_coverage"] == pytest.approx(2 / 3)  # 470 < 475 in gravity ×4
    assert child["min_retention"] == pytest.approx(470 / 490)
    assert copied["union_coverage"] == pytest.approx(2 / 3) and copied["min_retention"] == pytest.approx(100 / 490)


def test_a_parent_variant_among_the_physics_shifts_is_listed_once():
    cartpole = tasks.task("CartPole-v1")
    conditions, spots = parent_variants(cartpole, [{"pole_length": 2.0}, {}])
    assert list(spots.items()) == [("A's variant: pole_length ×2", ("pole_length", 2.0))]
    assert conditions["A's variant: pole_length ×2"] == cartpole.shifted("pole_length", 2.0)
    both, spots = parent_variants(cartpole, [{"gravity": 2.0, "cart_mass": 2.0}, {"cart_mass": 2.0, "gravity": 2.0}])
    assert list(spots) == ["A and B's variant: cart_mass ×2, gravity ×2"] and list(spots.values()) == [None]


def test_the_readmes_specialist_experiment_parses_through_dvc_and_validates(tmp_path):
    """The `-S` values the README gives, applied by DVC's own parser (what `dvc exp run -S` calls)."""
    from dvc.utils.hydra import apply_overrides

    readme = (ROOT / "README.md").read_text()
    command = readme[readme.index("dvc exp run -S '+parents.dqn.variants.a"):]
    command = command[:command.index("```")].replace("\\\n", " ")
    overrides = [part.strip().strip("'") for part in command.split("-S")[1:]]
    assert len(overrides) == 4
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(path, overrides)
    params = with_task_values(load_params(path))
    cfg = ParentsConfig.from_params(params, "parents")
    assert cfg.dqn.variants.settings(tasks.task("CartPole-v1"))[:2] == ((("force_magnitude", 0.25),),
                                                                        (("pole_length", 3.0),))
    assert cfg.dqn.variants.rollouts == "crossed" and params["finetune"]["teacher_mode"] == "competent"


def test_a_gymnasium_batch_of_two_variants_gives_each_copy_its_own():
    """LunarLander copies taking turns between nominal and low gravity with wind: make arguments per copy, and a
    shift's companions (wind's `turbulence_power: 0`) never undo the variant's own turbulence."""
    lander = tasks.task("LunarLander-v3")
    windy = lander.setting({"gravity": -5.0, "wind_power": 10.0, "turbulence_power": 1.0}, "variant")
    batch = lander.batch(4, 0, ((), windy))
    try:
        copies = [copy.unwrapped for copy in batch.env.envs]
        assert [c.gravity for c in copies] == [-10.0, -5.0, -10.0, -5.0]
        assert [c.enable_wind for c in copies] == [False, True, False, True]
        assert (copies[1].wind_power, copies[1].turbulence_power) == (10.0, 1.0)
        final, rewards, terminated, truncated, obs = batch.step(np.zeros(4, dtype=np.int64))
        assert obs.shape == (4, 8)
    finally:
        batch.env.close()


def test_condition_labels_are_refused_in_one_line_when_wrong(tmp_path):
    from recomb.artifacts import Outputs, load_labels

    path = tmp_path / "train_condition.npy"
    out = Outputs()
    out.add_labels(path, np.array([0, 1, 1, 0]))
    out.commit()
    assert load_labels(path, 4, 2).tolist() == [0, 1, 1, 0]
    with pytest.raises(RecombError, match=r"train_condition.npy: expected 5 int64 labels, one per state"):
        load_labels(path, 5, 2)
    with pytest.raises(RecombError, match=r"train_condition.npy: labels must lie in \[0, 1\) \(got 0..1\)"):
        load_labels(path, 4, 1)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(RecombError, match="train_condition.npy: truncated or corrupt"):
        load_labels(path, 4, 2)
    np.save(path, np.zeros(4, dtype=np.float32))
    with pytest.raises(RecombError, match="expected 4 int64 labels, one per state, got float32"):
        load_labels(path, 4, 2)
