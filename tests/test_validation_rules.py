"""What the distillation and quantization reports say, pinned on cases small enough to work out by hand.

The gates themselves are tested in test_gates.py and test_verdict_rules.py; here: the figures the reports
carry next to them (Q error, agreement with the teacher, returns, batch dependence, throughput), the
temperature the KL is read at, the perturbed states the robustness gates score, and which returns the
recombination verdict gates on.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from recomb.errors import RecombError
from recomb.evaluation.validation import (RecombThresholds, RobustnessConfig, ValidateDistillConfig,
                                          ValidateQuantizedConfig, batch_dependence, grid_checks, quantized_timing,
                                          robustness_slices, validate_quantized, validate_student)
from recomb.training.envs import ENV_ID
from recomb.training.tasks import task

CARTPOLE = task(ENV_ID)


def linear(weight, bias) -> torch.nn.Linear:
    """A fixed linear Q 'network': Q(x) = x @ weight.T + bias, so every figure can be worked out by hand."""
    weight = torch.tensor(weight, dtype=torch.float32)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer.eval()


def distill_config(kl_temperature: float = 1.0, eval_episodes: int = 3) -> ValidateDistillConfig:
    return ValidateDistillConfig.from_mapping(
        {"top_k": 1, "kl_temperature": kl_temperature, "eval_episodes": eval_episodes, "eval_seed": 20000,
         "latency_repeats": 10, "robustness": {"noise_std": 0.0, "scale_factor": 1.0, "seed": 0},
         "thresholds": {"min_action_agreement": 0.5, "max_kl_divergence": 10.0, "min_advantage_correlation": -1.0,
                        "min_centered_cosine": -1.0, "max_latency_ratio": 2.0, "min_robustness_followed": 0.5,
                        "min_greedy_return": None}},
        "validate_distillation")


def quant_config(kl_temperature: float = 1.0, throughput_batch_size: int = 8) -> ValidateQuantizedConfig:
    return ValidateQuantizedConfig.from_mapping(
        {"top_k": 1, "kl_temperature": kl_temperature, "eval_episodes": 3, "eval_seed": 20000,
         "latency_repeats": 10, "throughput_batch_size": throughput_batch_size, "throughput_repeats": 1,
         "batch_invariance_states": 2, "return_gated": "both",
         "thresholds": {"min_action_agreement": 0.4, "max_advantage_relative_mse": 10.0, "min_centered_cosine": -1.0,
                        "max_latency_ratio": 1000.0, "min_greedy_return": None}},
        "validate_quantized")


# ----------------------------------------------------------------------------- KL at the configured temperature

# Two states x = 0 and x = 1. Reference Q: (0, 0) and (1, 0). Other Q: (2 ln 3, 0) and (1, 0).
# At T = 2, state 0: p = (1/2, 1/2), q = softmax(ln 3, 0) = (3/4, 1/4): KL(p ‖ q) = ½ ln(4/3); state 1: KL = 0.
# Mean KL = ¼ ln(4/3) ≈ 0.0719. At T = 1 state 0 would give q = (9/10, 1/10) and a mean KL ≈ 0.2939.
TWO_STATES = np.array([[0.0], [1.0]], dtype=np.float32)
REFERENCE = linear([[1.0], [0.0]], [0.0, 0.0])
OTHER = linear([[1.0 - 2 * math.log(3)], [0.0]], [2 * math.log(3), 0.0])
KL_AT_T2 = 0.25 * math.log(4 / 3)


def test_distillation_and_quantization_kl_is_read_at_the_configured_temperature():
    """A kl_temperature of 2 softens both distributions: the reported KL (and its gate's value) is the T = 2 one."""
    distilled = validate_student(REFERENCE, OTHER, TWO_STATES, None, distill_config(kl_temperature=2.0))
    assert distilled["fidelity"]["kl_divergence"] == pytest.approx(KL_AT_T2, rel=1e-5)
    assert distilled["checks"]["kl_divergence"]["value"] == pytest.approx(KL_AT_T2, rel=1e-5)
    quantized = validate_quantized(REFERENCE, REFERENCE, OTHER, TWO_STATES, None, quant_config(kl_temperature=2.0),
                                   float_return=None)
    assert quantized["int8_vs_float"]["kl_divergence"] == pytest.approx(KL_AT_T2, rel=1e-5)


# ----------------------------------------------------------------------------- the quantization report's figures

# Two states x = 1 and x = −1. Float student Q(x) = (x, −x): picks action 0, then 1.
# Int8 student Q(x) = (x, 3 − x): (1, 2) and (−1, 4), picks action 1 on both.
# |Q_int8 − Q_float| = 0, 3, 0, 3: mean 1.5. The float Q values 1, −1, −1, 1 have std 2/√3 (n − 1),
# so the relative Q error is 1.5 · √3 / 2 ≈ 1.299. The teacher always picks action 0: it agrees with
# the float student on 1 state of 2 and with the int8 student on none.
PLUS_MINUS = np.array([[1.0], [-1.0]], dtype=np.float32)
FLOAT_STUDENT = linear([[1.0], [-1.0]], [0.0, 0.0])
INT8_STUDENT = linear([[1.0], [-1.0]], [0.0, 3.0])
ALWAYS_ACTION_0 = linear([[0.0], [0.0]], [1.0, 0.0])


def test_quantized_report_carries_q_error_teacher_agreement_returns_and_batch_dependence():
    """Every section of the quantized report under its documented name, with the hand-computed figures."""
    report = validate_quantized(ALWAYS_ACTION_0, FLOAT_STUDENT, INT8_STUDENT, PLUS_MINUS, None, quant_config(),
                                float_return=123.0)
    assert set(report) == {"int8_vs_float", "teacher_agreement", "greedy_return", "batch_dependence_max_abs",
                           "checks", "passed"}
    fidelity = report["int8_vs_float"]
    assert fidelity["action_agreement"] == 0.5
    assert fidelity["mean_abs_q_error"] == pytest.approx(1.5)
    assert fidelity["relative_q_error"] == pytest.approx(1.5 * math.sqrt(3) / 2)
    assert report["teacher_agreement"] == {"float": 0.5, "int8": 0.0}
    assert report["greedy_return"] == {"float": 123.0, "int8": None}  # the caller's float return, no env: no int8 run
    assert report["batch_dependence_max_abs"] == 0.0  # a per-state network scores alike batched or alone
    assert report["checks"]["action_agreement"] == {"value": 0.5, "min": 0.4, "passed": True}


class BatchMeanShift(torch.nn.Module):
    """Q = x + the batch's mean x: a network whose output depends on what it is batched with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x.mean(0, keepdim=True)


def test_batch_dependence_is_the_largest_q_change_between_batched_and_one_by_one():
    """States 1 and −1: batched the mean is 0 (Q = 1, −1), alone each is its own mean (Q = 2, −2): |ΔQ| max 1."""
    states = torch.from_numpy(PLUS_MINUS)
    assert batch_dependence(BatchMeanShift(), states) == pytest.approx(1.0)
    assert batch_dependence(FLOAT_STUDENT, states) == 0.0


class Slow(torch.nn.Module):
    """Another network that sleeps 2 ms in every forward."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.002)
        return self.net(x)


def test_quantized_timing_reports_latency_and_throughput_of_each_network_under_its_own_name():
    """A slow int8 network shows up as the int8 one: higher batch-1 latency, lower throughput, ratio over 1."""
    report = quantized_timing(FLOAT_STUDENT, Slow(INT8_STUDENT), PLUS_MINUS, quant_config(throughput_batch_size=8))
    latency, per_second = report["batch1_latency"], report["throughput_states_per_s_batch8"]
    assert set(latency) == set(per_second) == {"float", "int8"}
    assert latency["int8"]["median_ms"] > latency["float"]["median_ms"]
    assert 0 < per_second["int8"] < per_second["float"]
    ratio = report["checks"]["latency_ratio"]["value"]
    assert ratio == pytest.approx(latency["int8"]["median_ms"] / latency["float"]["median_ms"]) and ratio > 1


# ----------------------------------------------------------------------------- returns in the distillation report

# CartPole: push right when the pole leans or turns right (θ + θ̇ > 0) balances for long; always pushing
# left drops the pole within a few steps.
BALANCER = linear([[0.0, 0.0, -1.0, -1.0], [0.0, 0.0, 1.0, 1.0]], [0.0, 0.0])
PUSH_LEFT = linear([[0.0] * 4, [0.0] * 4], [1.0, 0.0])


def test_distillation_report_gives_the_teachers_and_the_students_own_greedy_returns():
    """With an environment both networks are played on the same episodes; each keeps its own mean return."""
    cfg = distill_config(eval_episodes=2)
    heldout = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    report = validate_student(BALANCER, PUSH_LEFT, heldout, CARTPOLE, cfg)
    expected = {name: float(CARTPOLE.greedy_returns(net, 2, cfg.eval_seed).mean())
                for name, net in (("teacher", BALANCER), ("student", PUSH_LEFT))}
    assert report["greedy_return"] == expected
    assert expected["teacher"] > 5 * expected["student"]
    assert set(report["robustness"]) == {"gaussian_noise", "input_scaling"}


def test_a_network_that_does_not_fit_the_environment_is_refused_by_a_line_naming_it():
    """A 3-action student on 2-action CartPole: one error naming 'the evaluated network', not a crash mid-episode."""
    three_actions = linear([[0.0] * 4] * 3, [1.0, 0.0, 0.0])
    heldout = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(RecombError, match=r"^the evaluated network: does not fit CartPole"):
        validate_quantized(three_actions, three_actions, three_actions, heldout, CARTPOLE, quant_config(),
                           float_return=None)


# ----------------------------------------------------------------------------- the robustness slices

def test_gaussian_slice_adds_the_seeds_draws_scaled_by_noise_std_and_each_features_spread():
    """Feature 0 never varies (std 0): it gets no noise. Feature 1 takes 0 and 2 (std 1): noise_std 0.5 adds
    0.5 × the seed's standard normal draws. The same seed gives the same slice; input scaling multiplies."""
    states = np.array([[3.0, 0.0], [3.0, 2.0]], dtype=np.float32)
    cfg = RobustnessConfig.from_mapping({"noise_std": 0.5, "scale_factor": 1.5, "seed": 7}, "robustness")
    slices = robustness_slices(states, cfg)
    draws = np.random.default_rng(7).standard_normal(states.shape)
    noisy = slices["gaussian_noise"].numpy()
    assert noisy[:, 0].tolist() == [3.0, 3.0]
    assert noisy[:, 1] == pytest.approx(states[:, 1] + 0.5 * draws[:, 1], abs=1e-6)
    assert (robustness_slices(states, cfg)["gaussian_noise"].numpy() == noisy).all()
    assert slices["input_scaling"].numpy().tolist() == [[4.5, 0.0], [4.5, 3.0]]


# ----------------------------------------------------------------------------- the recombination verdict's returns

def test_grid_checks_gate_the_recommended_and_each_generations_best_child_on_its_return():
    """The search's recommended child and a generation's best child below the return bar fail the return gate;
    one above it passes, each next to its gain-over-copy gate (read from the gain, not primary / U)."""
    t = RecombThresholds.from_mapping({"min_gain_over_copy": 0.5, "min_child_return": 400.0}, "thresholds")
    search, multigen = grid_checks(
        {"best": {"gain_over_copy": 0.7, "primary_over_bound": 0.2, "online_return": 120.0}},
        {"generations": [{"generation": 1, "best_gain_over_copy": 0.3, "best_primary_over_bound": 0.99,
                          "best_online_return": 450.0}]}, t)
    assert search == {"checks": {"child_gain_over_copy": {"value": 0.7, "min": 0.5, "passed": True},
                                 "child_greedy_return": {"value": 120.0, "min": 400.0, "passed": False}}}
    assert multigen == {"checks": {"generation_1_child_gain_over_copy": {"value": 0.3, "min": 0.5, "passed": False},
                                   "generation_1_child_greedy_return": {"value": 450.0, "min": 400.0, "passed": True}}}
    search, multigen = grid_checks(  # no task: no return, and the return gates are named as not run
        {"best": {"gain_over_copy": 0.7, "online_return": None}},
        {"generations": [{"generation": g, "best_gain_over_copy": 0.3, "best_online_return": None} for g in (0, 1)]}, t)
    assert search["checks_not_run"] == {"child_greedy_return": 400.0} and list(search["checks"]) == [
        "child_gain_over_copy"]
    assert multigen["checks_not_run"] == {"generation_0_child_greedy_return": 400.0,
                                          "generation_1_child_greedy_return": 400.0}
