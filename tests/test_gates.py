"""Every gate of the distillation, quantization and recombination reports fails a network that must fail it.

The networks live at CartPole's Q scale: every action is worth about 100 and the
values vary from state to state far more than the actions differ. There raw cosine
and raw relative MSE pass a network whose advantages have nothing to do with the
teacher's, so the gates use the advantages. Each test feeds one bad network, built
to fail one gate, and asserts that gate fails, with the default thresholds of
params.yaml; the positive controls show that the same gates pass a faithful copy,
so a failure is discrimination, not a broken gate.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pytest
import torch
from torch import nn

from recomb.config import load_params
from stages.common import with_task_values
from recomb.training.envs import ENV_ID, N_ACTIONS, OBS_DIM
from recomb.training.tasks import Task, task
from recomb.networks import Architecture, seeded_qnetwork
from recomb.quantization.quantize import ptq
from recomb.stats import UncertaintyConfig
from recomb.evaluation.validation import (ValidateDistillConfig, ValidateQuantizedConfig, ValidateRecombConfig, child_checks,
                               gate, grid_checks, latency_report, online_returns, quantized_timing,
                               recombination_offline, validate_quantized, validate_student)
from stages.common import warn_failed
from scratch import ROOT

CARTPOLE = task(ENV_ID)

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))  # return gates at the CartPole bar, as stages see them
DISTILL = ValidateDistillConfig.from_params(PARAMS, "validate_distillation")
QUANT = ValidateQuantizedConfig.from_params(PARAMS, "validate_quantized")
TEACHER = Architecture(OBS_DIM, N_ACTIONS, 64, 0.0)
STUDENT = Architecture(OBS_DIM, N_ACTIONS, 32, 0.0)
HELDOUT = np.random.default_rng(0).standard_normal((500, OBS_DIM)).astype(np.float32)


class CartPoleLike(nn.Module):
    """Q = 100 + a state value from one network + advantages from another, as a DQN's on CartPole.

    The state value (20 × the value network's mean output) varies over states about
    15 times more than the advantages (the advantage network's centred outputs, times
    `advantage_scale`), so raw-Q figures are dominated by what all actions share.
    """

    def __init__(self, value_net: nn.Module, advantage_net: nn.Module, advantage_scale: float = 1.0):
        super().__init__()
        self.value_net, self.advantage_net, self.advantage_scale = value_net, advantage_net, advantage_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage_net(x)
        advantage = advantage - advantage.mean(-1, keepdim=True)
        return 100.0 + 20.0 * self.value_net(x).mean(-1, keepdim=True) + self.advantage_scale * advantage


class SignsOnly(nn.Module):
    """The teacher's preferred actions, gap sizes from another network: right choices, unrelated confidence."""

    def __init__(self, teacher: CartPoleLike, sizes: nn.Module):
        super().__init__()
        self.teacher, self.sizes = teacher, sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.teacher(x)
        base, advantage = q.mean(-1, keepdim=True), q - q.mean(-1, keepdim=True)
        other = self.sizes(x)
        return base + advantage.sign() * (other - other.mean(-1, keepdim=True)).abs()


class Memoriser(nn.Module):
    """Exactly the teacher on the held-out states, another network anywhere else."""

    def __init__(self, teacher: nn.Module, elsewhere: nn.Module, seen: np.ndarray):
        super().__init__()
        self.teacher, self.elsewhere, self.seen = teacher, elsewhere, torch.from_numpy(seen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        is_seen = (x.unsqueeze(1) == self.seen.unsqueeze(0)).all(-1).any(-1, keepdim=True)
        return torch.where(is_seen, self.teacher(x), self.elsewhere(x))


class Slow(nn.Module):
    """A network that sleeps 5 ms in every forward: far slower than a 64-wide MLP."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.005)
        return self.net(x)


def fresh(arch: Architecture, seed: int) -> nn.Module:
    return seeded_qnetwork(arch, seed).eval()


TEACHER_NET = fresh(TEACHER, 0)
TEACHER_Q = CartPoleLike(TEACHER_NET, TEACHER_NET)
UNRELATED_ADVANTAGES = CartPoleLike(TEACHER_NET, fresh(STUDENT, 1))  # the teacher's state values, fresh advantages

DISTILL_FAILURES = {  # gate → (student that must fail it, environment)
    "action_agreement": (UNRELATED_ADVANTAGES, None),
    "kl_divergence": (CartPoleLike(TEACHER_NET, TEACHER_NET, advantage_scale=10.0), None),  # right actions, 10× too sure
    "advantage_correlation": (SignsOnly(TEACHER_Q, fresh(STUDENT, 1)), None),  # right actions, unrelated gap sizes
    "centered_cosine": (UNRELATED_ADVANTAGES, None),
    "robustness_gaussian_noise": (Memoriser(TEACHER_Q, UNRELATED_ADVANTAGES, HELDOUT), None),
    "robustness_input_scaling": (Memoriser(TEACHER_Q, UNRELATED_ADVANTAGES, HELDOUT), None),
    "student_greedy_return": (UNRELATED_ADVANTAGES, CARTPOLE),
}


@pytest.mark.parametrize("gate_name", sorted(DISTILL_FAILURES))
def test_each_distillation_gate_fails_a_student_built_to_fail_it(gate_name):
    student, env = DISTILL_FAILURES[gate_name]
    report = validate_student(TEACHER_Q, student, HELDOUT, env, DISTILL)
    assert report["checks"][gate_name]["passed"] is False
    assert report["passed"] is False


def test_raw_q_figures_would_pass_a_student_whose_advantages_are_unrelated():
    fidelity = validate_student(TEACHER_Q, UNRELATED_ADVANTAGES, HELDOUT, None, DISTILL)["fidelity"]
    assert fidelity["cosine"] > 0.999  # the former gate: cosine ≥ 0.9
    assert fidelity["relative_mse"] < 0.01  # the former gate: relative MSE ≤ 0.1
    assert abs(fidelity["centered_cosine"]) < 0.1 and abs(fidelity["advantage_correlation"]) < 0.2
    assert fidelity["advantage_relative_mse"] > 1.0


def test_advantage_correlation_alone_fails_a_student_with_the_right_actions_but_unrelated_gaps():
    student, _ = DISTILL_FAILURES["advantage_correlation"]
    checks = validate_student(TEACHER_Q, student, HELDOUT, None, DISTILL)["checks"]
    assert [name for name, check in checks.items() if not check["passed"]] == ["advantage_correlation"]


@pytest.mark.parametrize("advantage_scale", [1.0, 1.1, 2.0])  # 2×: a hard-target student's wider gaps still pass
def test_distillation_gates_pass_the_teacher_and_a_near_copy(advantage_scale):
    student = CartPoleLike(TEACHER_NET, TEACHER_NET, advantage_scale)
    report = validate_student(TEACHER_Q, student, HELDOUT, None, DISTILL)
    assert report["passed"], report["checks"]


def test_latency_gate_fails_a_slow_student():
    report = latency_report(TEACHER_Q, Slow(UNRELATED_ADVANTAGES), HELDOUT, repeats=20,
                            max_ratio=DISTILL.thresholds.max_latency_ratio)
    assert report["checks"]["latency_ratio"]["passed"] is False
    assert report["checks"]["latency_ratio"]["value"] == report["student"]["median_ms"] / report["teacher"]["median_ms"]


FLOAT_VALUE, FLOAT_ADVANTAGE = fresh(STUDENT, 2), fresh(STUDENT, 3)
FLOAT_STUDENT = CartPoleLike(FLOAT_VALUE, FLOAT_ADVANTAGE)


def int8_student(advantage_net: nn.Module, advantage_scale: float = 1.0) -> CartPoleLike:
    return CartPoleLike(ptq(FLOAT_VALUE, "dynamic"), ptq(advantage_net, "dynamic"), advantage_scale)


QUANT_FAILURES = {  # gate → (int8 network that must fail it, environment)
    "action_agreement": (int8_student(fresh(STUDENT, 4)), None),
    "advantage_relative_mse": (int8_student(FLOAT_ADVANTAGE, advantage_scale=2.0), None),  # right actions, gaps 2×
    "centered_cosine": (int8_student(fresh(STUDENT, 4)), None),
    "int8_greedy_return": (int8_student(fresh(STUDENT, 4)), CARTPOLE),
}


@pytest.mark.parametrize("gate_name", sorted(QUANT_FAILURES))
def test_each_quantization_gate_fails_an_int8_network_built_to_fail_it(gate_name):
    int8, env = QUANT_FAILURES[gate_name]
    report = validate_quantized(TEACHER_Q, FLOAT_STUDENT, int8, HELDOUT, env, QUANT, float_return=None)
    assert report["checks"][gate_name]["passed"] is False
    assert report["passed"] is False


def test_quantization_gates_pass_the_int8_float_student():
    report = validate_quantized(TEACHER_Q, FLOAT_STUDENT, int8_student(FLOAT_ADVANTAGE), HELDOUT, None, QUANT,
                                float_return=None)
    assert report["passed"], report["checks"]


def test_quantization_latency_gate_fails_a_slow_int8_network():
    cfg = dataclasses.replace(QUANT, latency_repeats=20, throughput_repeats=1)
    report = quantized_timing(FLOAT_STUDENT, Slow(int8_student(FLOAT_ADVANTAGE)), HELDOUT, cfg)
    assert report["checks"]["latency_ratio"]["passed"] is False


def test_warn_failed_logs_one_warning_per_failed_gate(caplog):
    checks = gate([("agreement", 0.5, ">=", 0.8), ("kl", 0.01, "<=", 0.1), ("error", 2.0, "<=", 0.25)])
    with caplog.at_level(logging.INFO, logger="recomb"):
        warn_failed("distillation pair A", checks)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "distillation pair A: gate agreement failed: 0.5 (rule >= 0.8)"),
        ("WARNING", "distillation pair A: gate error failed: 2 (rule <= 0.25)"),
    ]


RECOMB = ValidateRecombConfig.from_params(PARAMS, "validate_recombination")
UNCERTAINTY = UncertaintyConfig.from_mapping({**PARAMS["uncertainty"], "resamples": 200}, "uncertainty")
PARENT_B_Q = CartPoleLike(TEACHER_NET, fresh(TEACHER, 5))


class Disagreeing(nn.Module):
    """Parent A's Q-values with the actions swapped on the states whose first feature exceeds `cut`: a second
    parent that agrees with A everywhere else (the share of states set by `cut`)."""

    def __init__(self, parent: nn.Module, cut: float):
        super().__init__()
        self.parent, self.cut = parent, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.parent(x)
        return torch.where(x[:, :1] > self.cut, q.flip(-1), q)


class Alternating(nn.Module):
    """Parent A's action on every other state, parent B's on the rest: half of their disagreements each."""

    def __init__(self, parent_a: nn.Module, parent_b: nn.Module):
        super().__init__()
        self.parent_a, self.parent_b = parent_a, parent_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        take_a = (torch.arange(len(x)) % 2 == 0).unsqueeze(-1)
        return torch.where(take_a, self.parent_a(x), self.parent_b(x))


HIGH_AGREEMENT_B = Disagreeing(TEACHER_Q, 1.0)  # agrees with TEACHER_Q on the ~84 % of states with feature 0 ≤ 1


def recombination_figures(child: nn.Module, parent_b: nn.Module = PARENT_B_Q) -> tuple[dict, dict]:
    """(the child's held-out figures, the whole report) against parents TEACHER_Q and `parent_b`."""
    report = recombination_offline(TEACHER_Q, parent_b, {"child": child}, HELDOUT, RECOMB, UNCERTAINTY)
    return report["children"]["child"], report


def recombination_checks(child: nn.Module, env: Task | None) -> dict:
    """The gates validate_recombination puts on `child`, against parents TEACHER_Q and PARENT_B_Q."""
    returns = online_returns({"child": child}, env, 20, RECOMB.eval_seed, UNCERTAINTY)["child"]
    return child_checks(recombination_figures(child)[0]["gain_over_copy"],
                        None if returns is None else returns["mean"], RECOMB.thresholds)["checks"]


def test_the_recombination_gates_fail_a_child_that_copies_one_parent_and_one_that_drops_the_pole():
    copy_of_a = recombination_checks(TEACHER_Q, None)
    assert copy_of_a["child_gain_over_copy"]["passed"] is False  # agrees with B only where A does
    assert "child_greedy_return" not in copy_of_a  # no task: not run, and listed as such (below)
    fresh_child = recombination_checks(fresh(STUDENT, 9), CARTPOLE)
    assert fresh_child["child_greedy_return"]["passed"] is False


@pytest.mark.parametrize("copied", ["A", "B"])
def test_every_recombination_gate_fails_a_copy_of_either_parent_of_a_high_agreement_pair(copied):
    """Parents agreeing on ~84 % of states (Acrobot's pair agreed on 83 %): a copy of either scores a / U ≈ 0.92,
    over the old primary / U bar of 0.9, and gain 0 — so the pipeline's, the search's and each generation's gain
    gate fail it, while the return gate cannot tell (a copied parent acts as well as the parent)."""
    copy = TEACHER_Q if copied == "A" else HIGH_AGREEMENT_B
    figures, report = recombination_figures(copy, HIGH_AGREEMENT_B)
    assert 0.8 < report["parents_agreement"] < 0.9 and figures["primary_over_bound"] > 0.9
    assert figures["gain_over_copy"] == 0.0 and figures["gain_over_copy_ci"] == {"low": 0.0, "high": 0.0}
    checks = child_checks(figures["gain_over_copy"], 500.0, RECOMB.thresholds)["checks"]
    assert checks["child_gain_over_copy"]["passed"] is False and checks["child_greedy_return"]["passed"] is True
    search, multigen = grid_checks(
        {"best": {"gain_over_copy": figures["gain_over_copy"], "online_return": 500.0}},
        {"generations": [{"generation": g, "best_gain_over_copy": figures["gain_over_copy"],
                          "best_online_return": 500.0} for g in (0, 1)]}, RECOMB.thresholds)
    assert search["checks"]["child_gain_over_copy"]["passed"] is False and "checks_not_run" not in search
    assert [multigen["checks"][f"generation_{g}_child_gain_over_copy"]["passed"] for g in (0, 1)] == [False, False]


@pytest.mark.parametrize("parent_b", [PARENT_B_Q, HIGH_AGREEMENT_B], ids=["unrelated", "high_agreement"])
def test_a_child_that_sides_with_each_parent_where_they_disagree_gains_nearly_everything(parent_b):
    figures, _ = recombination_figures(Alternating(TEACHER_Q, parent_b), parent_b)
    gated = child_checks(figures["gain_over_copy"], None, RECOMB.thresholds)
    assert figures["gain_over_copy"] > 0.8 and gated["checks"]["child_gain_over_copy"]["passed"]
    assert gated["checks_not_run"] == {"child_greedy_return": RECOMB.thresholds.min_child_return}  # no task
