"""Every gate, on every task, fails a network that must fail it, at the bars `parents.env` selects.

tests/test_gates.py shows each gate discriminates on CartPole's Q scale; here the same kinds of network are
built at each task's dims and the return gates are played in the task itself, with params.yaml's thresholds
resolved for that task (a return bar of `task` is its preset's `pass_return`: 475, 200, −100). The robustness
gates also fail a student that ignores the perturbation (it keeps its clean answers: followed 0) and pass the
teacher itself (followed 1).
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import pytest
import torch
from torch import nn

from recomb.config import load_params
from recomb.errors import RecombError
from recomb.evaluation.validation import (ValidateDistillConfig, ValidateQuantizedConfig, ValidateRecombConfig,
                                          child_checks, online_returns, recombination_offline, robustness_slices,
                                          validate_quantized, validate_student)
from recomb.networks import Architecture
from recomb.quantization.quantize import ptq
from recomb.stats import UncertaintyConfig
from recomb.training.tasks import task
from scratch import ROOT
from stages.common import with_task_values
from test_gates import CartPoleLike, Disagreeing, Memoriser, SignsOnly, fresh

TASKS = ["CartPole-v1", "LunarLander-v3", "Acrobot-v1"]
RAW = load_params(ROOT / "params.yaml")


class Ignorer(nn.Module):
    """The teacher's answers for the clean states whenever it is shown a perturbed copy of them: a student that
    does not see the perturbation at all."""

    def __init__(self, teacher: nn.Module, clean: np.ndarray, perturbed: list[torch.Tensor]):
        super().__init__()
        self.teacher, self.clean, self.perturbed = teacher, torch.from_numpy(clean), perturbed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(self.clean if any(torch.equal(x, p) for p in self.perturbed) else x)


class Wavy(nn.Module):
    """Advantages sin(5 x·R) of a fixed random projection R: decision boundaries dense enough that a 0.1σ
    perturbation changes some actions, as it does a trained DQN's (a freshly initialised network, LayerNorm'd
    and nearly scale-free, changes hardly any)."""

    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        self.projection = torch.randn(obs_dim, n_actions, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(5 * x @ self.projection)


@lru_cache(maxsize=None)
def world(env_id: str) -> dict:
    """The task, its resolved thresholds and networks at its dims (a teacher at a DQN's Q scale and kin)."""
    params = copy.deepcopy(RAW)
    params["parents"]["env"] = env_id
    params = with_task_values(params)
    spec = task(env_id)
    teacher_arch = Architecture(spec.obs_dim, spec.n_actions, 64, 0.0)
    student_arch = Architecture(spec.obs_dim, spec.n_actions, 32, 0.0)
    teacher_net = fresh(teacher_arch, 0)
    heldout = np.random.default_rng(0).standard_normal((500, spec.obs_dim)).astype(np.float32)
    for section in ("validate_distillation", "validate_quantized"):
        params[section]["eval_episodes"] = 10  # the bars are what is tested; 10 episodes keep it quick
    distill = ValidateDistillConfig.from_params(params, "validate_distillation")
    perturbed = list(robustness_slices(heldout, distill.robustness).values())
    teacher = CartPoleLike(teacher_net, Wavy(spec.obs_dim, spec.n_actions))
    return {"task": spec, "heldout": heldout, "distill": distill, "teacher": teacher,
            "quant": ValidateQuantizedConfig.from_params(params, "validate_quantized"),
            "recomb": ValidateRecombConfig.from_params(params, "validate_recombination"),
            "unrelated": CartPoleLike(teacher_net, fresh(student_arch, 1)), "student_arch": student_arch,
            "ignorer": Ignorer(teacher, heldout, perturbed),
            "memoriser": Memoriser(teacher, CartPoleLike(teacher_net, fresh(student_arch, 1)), heldout)}


def distill_failures(w: dict) -> dict[str, tuple[nn.Module, bool]]:
    """gate → (a student that must fail it, whether it is played in the task)."""
    teacher = w["teacher"]
    return {
        "action_agreement": (w["unrelated"], False),
        "kl_divergence": (CartPoleLike(teacher.value_net, teacher.advantage_net, advantage_scale=10.0), False),
        "advantage_correlation": (SignsOnly(w["teacher"], fresh(w["student_arch"], 1)), False),
        "centered_cosine": (w["unrelated"], False),
        "robustness_gaussian_noise": (w["ignorer"], False),
        "robustness_input_scaling": (w["memoriser"], False),
        "student_greedy_return": (w["unrelated"], True),
    }


@pytest.mark.parametrize("env_id", TASKS)
def test_each_distillation_gate_fails_its_student_on_every_task(env_id):
    w = world(env_id)
    for gate_name, (student, played) in distill_failures(w).items():
        report = validate_student(w["teacher"], student, w["heldout"], w["task"] if played else None, w["distill"])
        assert report["checks"][gate_name]["passed"] is False, (env_id, gate_name, report["checks"][gate_name])
    teacher_bar = w["distill"].thresholds.min_greedy_return
    assert teacher_bar == {"CartPole-v1": 475.0, "LunarLander-v3": 200.0, "Acrobot-v1": -100.0}[env_id]


@pytest.mark.parametrize("env_id", TASKS)
def test_the_robustness_gates_pass_the_teacher_and_fail_one_that_ignores_the_perturbation(env_id):
    w = world(env_id)
    copied = validate_student(w["teacher"], w["teacher"], w["heldout"], None, w["distill"])
    assert copied["passed"], copied["checks"]
    assert all(r["followed"] == 1.0 for r in copied["robustness"].values()), copied["robustness"]
    ignored = validate_student(w["teacher"], w["ignorer"], w["heldout"], None, w["distill"])["robustness"]
    assert all(r["followed"] == pytest.approx(0.0, abs=1e-12) and r["teacher_changed"] > 0 for r in ignored.values())


@pytest.mark.parametrize("env_id", TASKS)
def test_each_quantization_gate_fails_its_int8_network_on_every_task(env_id):
    w = world(env_id)
    value, advantage = fresh(w["student_arch"], 2), fresh(w["student_arch"], 3)
    float_student = CartPoleLike(value, advantage)

    def int8(advantage_net: nn.Module, scale: float = 1.0) -> nn.Module:
        return CartPoleLike(ptq(value, "dynamic"), ptq(advantage_net, "dynamic"), scale)

    failures = {"action_agreement": (int8(fresh(w["student_arch"], 4)), None),
                "advantage_relative_mse": (int8(advantage, 2.0), None),
                "centered_cosine": (int8(fresh(w["student_arch"], 4)), None),
                "int8_greedy_return": (int8(fresh(w["student_arch"], 4)), w["task"])}
    for gate_name, (network, played) in failures.items():
        report = validate_quantized(w["teacher"], float_student, network, w["heldout"], played, w["quant"],
                                    float_return=None)
        assert report["checks"][gate_name]["passed"] is False, (env_id, gate_name)
    assert validate_quantized(w["teacher"], float_student, int8(advantage), w["heldout"], None, w["quant"],
                              float_return=None)["passed"]


def test_the_return_bar_gates_the_int8_students_a_task_ships_and_reports_the_others():
    """LunarLander ships QAT (PTQ lost the bar on a seed pair): a PTQ network that cannot play is reported, not
    failed; the same network as QAT fails. CartPole and Acrobot gate both."""
    w = world("LunarLander-v3")
    assert [w["quant"].gates_return_of(m) for m in ("ptq", "qat")] == [False, True]
    assert all(world(env)["quant"].gates_return_of(m) for env in ("CartPole-v1", "Acrobot-v1") for m in ("ptq", "qat"))
    value, advantage = fresh(w["student_arch"], 2), fresh(w["student_arch"], 3)
    cannot_play = CartPoleLike(ptq(value, "dynamic"), ptq(fresh(w["student_arch"], 4), "dynamic"))
    reports = {m: validate_quantized(w["teacher"], CartPoleLike(value, advantage), cannot_play, w["heldout"], w["task"],
                                     w["quant"], float_return=None, gate_return=w["quant"].gates_return_of(m))
               for m in ("ptq", "qat")}
    assert reports["ptq"]["greedy_return"]["int8"] == reports["qat"]["greedy_return"]["int8"] < 200
    assert "int8_greedy_return" not in reports["ptq"]["checks"]
    assert reports["qat"]["checks"]["int8_greedy_return"]["passed"] is False


def test_gating_qat_int8_students_that_are_not_written_is_one_line():
    params = copy.deepcopy(RAW)
    params["validate_quantized"]["return_gated"] = "qat"
    params["qat"]["convert"] = False
    with pytest.raises(RecombError, match=r"^params.yaml: validate_quantized.return_gated: qat gates the QAT int8 "
                                          r"students, which qat.convert: false does not write"):
        ValidateQuantizedConfig.validate(params)
    params["validate_quantized"]["return_gated"] = "both"  # PTQ's are written: both gates what there is
    assert ValidateQuantizedConfig.validate(params).gates_return_of("ptq")


@pytest.mark.parametrize("env_id", TASKS)
def test_the_recombination_gates_fail_a_copy_of_either_parent_and_a_child_that_cannot_play(env_id):
    """Parents agreeing on most states (Acrobot's agreed on 83 %): a copy of either gains nothing; a fresh child
    falls below the task's own return bar."""
    w = world(env_id)
    cfg, unc = w["recomb"], UncertaintyConfig(0.95, 200, 0)
    parent_b = Disagreeing(w["teacher"], 1.0)
    for copied in (w["teacher"], parent_b):
        report = recombination_offline(w["teacher"], parent_b, {"child": copied}, w["heldout"], cfg, unc)
        figures = report["children"]["child"]
        assert report["parents_agreement"] > 0.8 and figures["gain_over_copy"] == 0.0
        checks = child_checks(figures["gain_over_copy"], None, cfg.thresholds)
        assert checks["checks"]["child_gain_over_copy"]["passed"] is False
    played = online_returns({"child": fresh(w["student_arch"], 9)}, w["task"], 20, cfg.eval_seed, unc)["child"]
    checks = child_checks(1.0, played["mean"], cfg.thresholds)["checks"]
    assert checks["child_greedy_return"]["passed"] is False and checks["child_greedy_return"]["min"] == \
        w["distill"].thresholds.min_greedy_return
