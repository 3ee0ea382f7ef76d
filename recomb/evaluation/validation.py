"""Validation: compare networks on held-out states, online in the environment, and gate on thresholds.

Reports are split in two on purpose. Everything that is a deterministic function
of the inputs (agreement, KL, returns, the `passed` flag over them) goes into the
quality report that DVC hashes; wall-clock figures (latency) vary run to run and
go into a separate timing report that DVC does not hash, so two cold runs give
the same `dvc.lock`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..training.tasks import Task

from .. import metrics
from ..config import Section
from ..errors import RecombError
from ..stats import UncertaintyConfig, agreement_intervals, mean_interval, primary_interval
from ..selection import SelectionConfig

OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class RobustnessConfig(Section):
    noise_std: float
    scale_factor: float
    seed: int

    def check(self) -> None:
        self.require(self.noise_std >= 0, "noise_std", "must be ≥ 0")
        self.require(self.scale_factor > 0, "scale_factor", "must be > 0")


@dataclass(frozen=True)
class DistillThresholds(Section):
    min_action_agreement: float
    max_kl_divergence: float
    min_advantage_correlation: float
    min_centered_cosine: float
    max_latency_ratio: float
    min_robustness_followed: float  # of the teacher's action changes under each perturbation (`robustness`)
    min_greedy_return: float | Literal["task"] | None  # task: the parents' task's bar (stages.common.with_task_values)


@dataclass(frozen=True)
class ValidateDistillConfig(Section):
    sections = ("validate_distillation",)

    top_k: int
    kl_temperature: float
    eval_episodes: int
    eval_seed: int
    latency_repeats: int
    robustness: RobustnessConfig
    thresholds: DistillThresholds

    def check(self) -> None:
        self.require(self.top_k >= 1, "top_k", "must be ≥ 1")
        self.require(self.kl_temperature > 0, "kl_temperature", "must be > 0")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")
        self.require(self.latency_repeats >= 10, "latency_repeats", "must be ≥ 10")


BOUND_KEY = {">=": "min", "<=": "max"}


def gate(checks: list[tuple[str, float, str, float]]) -> dict[str, dict]:
    """Each (name, value, op, threshold) → {value, min or max: threshold, passed}.

    Numbers and booleans only (DVC's metrics columns); the key says the rule, and
    `reports.rule` writes it out for people.
    """
    return {
        name: {"value": value, BOUND_KEY[op]: threshold, "passed": bool(OPS[op](value, threshold))}
        for name, value, op, threshold in checks if value is not None
    }


def not_run(checks: list[tuple[str, float | None, str, float]]) -> dict:
    """`{"checks_not_run": {name: threshold}}` for the gates with no value (no task to play a return in), so the
    verdict lists them instead of counting fewer gates as a pass; empty when every gate ran."""
    missing = {name: threshold for name, value, _, threshold in checks if value is None}
    return {"checks_not_run": missing} if missing else {}


def all_passed(gated: dict[str, dict]) -> bool:
    return all(check["passed"] for check in gated.values())


def q_values(model, states: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(states)


def robustness_slices(states: np.ndarray, cfg: RobustnessConfig) -> dict[str, torch.Tensor]:
    """Perturbed copies of the states: Gaussian noise scaled per feature, and a global input scaling."""
    rng = np.random.default_rng(cfg.seed)
    feature_std = states.std(axis=0, keepdims=True)
    noisy = states + rng.standard_normal(states.shape).astype(np.float32) * cfg.noise_std * feature_std
    return {
        "gaussian_noise": torch.from_numpy(noisy.astype(np.float32)),
        "input_scaling": torch.from_numpy(states * np.float32(cfg.scale_factor)),
    }


def robustness(teacher, student, heldout: np.ndarray, teacher_q: torch.Tensor, clean: float,
               cfg: RobustnessConfig) -> dict[str, dict[str, float]]:
    """Per perturbation of the held-out states: the student's agreement with its teacher there, the share of
    states whose greedy action the perturbation changes for the teacher itself, and `followed`.

    followed = 1 − (agreement lost against the clean states) / (share of the teacher's actions changed): 1 when
    the student keeps its clean agreement, 0 when it loses as much as a network that kept its clean answers
    (ignoring the perturbation) would. Raw agreement cannot mean the same on every task: a 0.1σ noise changes
    a tenth of a CartPole teacher's actions and a third of a LunarLander one's. Where the teacher changes no
    action, the share counts as one state (a lost agreement then scores far below 0). `teacher_q` and `clean`:
    the teacher's Q-values on the held-out states and the student's agreement there, which the caller has."""
    found = {}
    for name, shifted in robustness_slices(heldout, cfg).items():
        teacher_shifted = q_values(teacher, shifted)
        agreement = metrics.action_agreement(teacher_shifted, q_values(student, shifted))
        changed = 1 - metrics.action_agreement(teacher_q, teacher_shifted)
        found[name] = {"agreement": agreement, "teacher_changed": changed,
                       "followed": 1 - (clean - agreement) / max(changed, 1 / len(heldout))}
    return found


def greedy_return(model, task: Task | None, cfg: ValidateDistillConfig) -> float | None:
    """Mean greedy return over the fixed evaluation episodes; None when there is no environment."""
    if task is None:
        return None
    task.check_network(model, "the evaluated network")
    return float(task.greedy_returns(model, cfg.eval_episodes, cfg.eval_seed).mean())


def validate_student(teacher, student, heldout: np.ndarray, task: Task | None, cfg: ValidateDistillConfig) -> dict:
    """The deterministic part of a distillation report for one teacher/student pair."""
    states = torch.from_numpy(heldout)
    teacher_q, student_q = q_values(teacher, states), q_values(student, states)
    fidelity = metrics.compare(teacher_q, student_q, cfg.top_k, cfg.kl_temperature)
    shifted = robustness(teacher, student, heldout, teacher_q, fidelity["action_agreement"], cfg.robustness)
    returns = {"teacher": greedy_return(teacher, task, cfg), "student": greedy_return(student, task, cfg)}
    t = cfg.thresholds
    checks = [
        ("action_agreement", fidelity["action_agreement"], ">=", t.min_action_agreement),
        ("kl_divergence", fidelity["kl_divergence"], "<=", t.max_kl_divergence),
        ("advantage_correlation", fidelity["advantage_correlation"], ">=", t.min_advantage_correlation),
        ("centered_cosine", fidelity["centered_cosine"], ">=", t.min_centered_cosine),
        *((f"robustness_{name}", found["followed"], ">=", t.min_robustness_followed) for name, found in shifted.items()),
    ]
    if isinstance(t.min_greedy_return, float):
        checks.append(("student_greedy_return", returns["student"], ">=", t.min_greedy_return))
    gated = gate(checks)
    return {
        "fidelity": fidelity,
        "robustness": shifted,
        "greedy_return": returns,
        "checks": gated,
        **not_run(checks),
        "passed": all_passed(gated),
    }


def latency_report(teacher, student, heldout: np.ndarray, repeats: int, max_ratio: float) -> dict:
    """Batch-1 latency of teacher and student and their ratio: the non-deterministic part."""
    timed = metrics.batch1_latency_ms({"teacher": teacher, "student": student}, torch.from_numpy(heldout), repeats)
    ratio = timed["student"]["median_ms"] / timed["teacher"]["median_ms"]
    return {**timed, "checks": gate([("latency_ratio", ratio, "<=", max_ratio)])}


@dataclass(frozen=True)
class QuantThresholds(Section):
    min_action_agreement: float
    max_advantage_relative_mse: float
    min_centered_cosine: float
    max_latency_ratio: float
    min_greedy_return: float | Literal["task"] | None  # task: the parents' task's bar


@dataclass(frozen=True)
class ValidateQuantizedConfig(Section):
    sections = ("validate_quantized",)

    top_k: int
    kl_temperature: float
    eval_episodes: int
    eval_seed: int
    latency_repeats: int
    throughput_batch_size: int
    throughput_repeats: int
    batch_invariance_states: int
    return_gated: Literal["ptq", "qat", "both"]  # the int8 students the return bar gates; the others': reported
    thresholds: QuantThresholds

    @classmethod
    def validate(cls, params: dict) -> ValidateQuantizedConfig:
        """The section, and its one rule across sections: the gated students must be written."""
        cfg = cls.from_params(params, "validate_quantized")
        if cfg.return_gated == "qat" and params.get("qat", {}).get("convert") is False:
            raise RecombError("params.yaml: validate_quantized.return_gated: qat gates the QAT int8 students, "
                              "which qat.convert: false does not write (ptq or both, or convert: true)")
        return cfg

    def gates_return_of(self, method: str) -> bool:
        """Whether the int8 students of `method` (ptq or qat) must reach the return bar."""
        return self.return_gated in (method, "both")

    def check(self) -> None:
        self.require(self.top_k >= 1, "top_k", "must be ≥ 1")
        self.require(self.kl_temperature > 0, "kl_temperature", "must be > 0")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")
        self.require(self.latency_repeats >= 10, "latency_repeats", "must be ≥ 10")
        self.require(self.throughput_batch_size >= 1, "throughput_batch_size", "must be ≥ 1")
        self.require(self.throughput_repeats >= 1, "throughput_repeats", "must be ≥ 1")
        self.require(self.batch_invariance_states >= 2, "batch_invariance_states", "must be ≥ 2")


def batch_dependence(model, states: torch.Tensor) -> float:
    """Largest |ΔQ| between scoring the states in one batch and one at a time."""
    with torch.inference_mode():
        together = model(states)
        alone = torch.cat([model(states[i:i + 1]) for i in range(len(states))])
    return (together - alone).abs().max().item()


def validate_quantized(teacher, float_student, int8_student, heldout: np.ndarray, task: Task | None,
                       cfg: ValidateQuantizedConfig, float_return: float | None, gate_return: bool = True) -> dict:
    """The deterministic part of the report for one int8 student against its float student.

    `relative_q_error` is mean |Q_int8 − Q_float| over the standard deviation of the
    float student's Q-values across held-out states and actions (its Q spread); it is
    reported but does not gate: on CartPole that spread is mostly how the value all
    actions share varies over states, so errors that reorder actions look negligible.
    The gates use the advantages instead (see `metrics.q_fidelity`).
    `float_return` is the float student's `greedy_return`, computed once by the caller
    for all its int8 versions. `gate_return` false reports the int8 return without gating it (the int8 students
    a task does not ship, `cfg.gates_return_of`).
    """
    states = torch.from_numpy(heldout)
    teacher_q, float_q, int8_q = (q_values(m, states) for m in (teacher, float_student, int8_student))
    fidelity = metrics.compare(float_q, int8_q, cfg.top_k, cfg.kl_temperature)
    q_error = (int8_q - float_q).abs().mean().item()
    fidelity["mean_abs_q_error"] = q_error
    fidelity["relative_q_error"] = q_error / float_q.double().std().item()
    teacher_agreement = {"float": metrics.action_agreement(teacher_q, float_q),
                         "int8": metrics.action_agreement(teacher_q, int8_q)}
    returns = {"float": float_return, "int8": greedy_return(int8_student, task, cfg)}
    t = cfg.thresholds
    checks = [
        ("action_agreement", fidelity["action_agreement"], ">=", t.min_action_agreement),
        ("advantage_relative_mse", fidelity["advantage_relative_mse"], "<=", t.max_advantage_relative_mse),
        ("centered_cosine", fidelity["centered_cosine"], ">=", t.min_centered_cosine),
    ]
    if gate_return and isinstance(t.min_greedy_return, float):
        checks.append(("int8_greedy_return", returns["int8"], ">=", t.min_greedy_return))
    gated = gate(checks)
    return {
        "int8_vs_float": fidelity,
        "teacher_agreement": teacher_agreement,
        "greedy_return": returns,
        "batch_dependence_max_abs": batch_dependence(int8_student, states[:cfg.batch_invariance_states]),
        "checks": gated,
        **not_run(checks),
        "passed": all_passed(gated),
    }


def quantized_timing(float_student, int8_student, heldout: np.ndarray, cfg: ValidateQuantizedConfig) -> dict:
    """Batch-1 latency (interleaved), throughput, and their gate: the non-deterministic part."""
    states = torch.from_numpy(heldout)
    timed = metrics.batch1_latency_ms({"float": float_student, "int8": int8_student}, states, cfg.latency_repeats)
    ratio = timed["int8"]["median_ms"] / timed["float"]["median_ms"]
    per_second = {name: metrics.throughput(model, states, cfg.throughput_batch_size, cfg.throughput_repeats)
                  for name, model in (("float", float_student), ("int8", int8_student))}
    return {
        "batch1_latency": timed,
        f"throughput_states_per_s_batch{cfg.throughput_batch_size}": per_second,
        "checks": gate([("latency_ratio", ratio, "<=", cfg.thresholds.max_latency_ratio)]),
    }


@dataclass(frozen=True)
class RecombThresholds(Section):
    min_gain_over_copy: float  # a copy of either parent scores 0 (primary / U cannot fail one: a / U)
    min_child_return: float | Literal["task"] | None  # task: the parents' task's bar


# The name under which a recombination report's `agreement` and `greedy_return_interval` hold each scoring
# role's two networks (`<name>_A`, `<name>_B`): the baselines a child is compared with are the role's, not the
# DQN parents', whenever `parents_role` is not `parents`.
ROLE_NETWORKS = {"parents": "parent", "students": "student", "quantized": "student_int8", "qat": "student_qat_int8"}


@dataclass(frozen=True)
class ValidateRecombConfig(Section):
    sections = ("validate_recombination",)

    parents_role: Literal["parents", "students", "quantized", "qat"]
    top_k: int
    kl_temperature: float
    eval_episodes: int
    eval_seed: int
    thresholds: RecombThresholds

    def check(self) -> None:
        self.require(self.top_k >= 1, "top_k", "must be ≥ 1")
        self.require(self.kl_temperature > 0, "kl_temperature", "must be > 0")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")


def child_checks(gain_over_copy: float, child_return: float | None, t: RecombThresholds) -> dict:
    """The recombination gates of one child, `{"checks": …}` and the return gate under `checks_not_run` when
    there is no environment: its held-out gain over a copy of either parent, and its return (a copied parent
    passes the return gate, never the gain gate)."""
    checks = [("child_gain_over_copy", gain_over_copy, ">=", t.min_gain_over_copy)]
    if isinstance(t.min_child_return, float):
        checks.append(("child_greedy_return", child_return, ">=", t.min_child_return))
    return {"checks": gate(checks), **not_run(checks)}


def grid_checks(search_summary: dict, multigen_summary: dict, t: RecombThresholds) -> tuple[dict, dict]:
    """The recombination gates on the search's recommended child and on each generation's best child, each
    as `child_checks` gives them.

    Computed from the grid stages' figures by the `report` stage, so changing a gate's
    threshold re-runs the verdict, not the training of every child.
    """
    best = search_summary["best"]
    search = child_checks(best["gain_over_copy"], best["online_return"], t)
    multigen: dict = {}
    for g in multigen_summary["generations"]:
        for key, named in child_checks(g["best_gain_over_copy"], g["best_online_return"], t).items():
            multigen.setdefault(key, {}).update({f"generation_{g['generation']}_{n}": v for n, v in named.items()})
    return search, multigen


RECOMB_DEFINITIONS = {
    "primary": "min(agreement with A, agreement with B)",
    "oracle_agreement": "share of states where the child picks A's greedy action or B's",
    "bound": "U = a + (1 − a)/2 with a = agreement(A, B): where the parents disagree a child can match only "
             "one of them, so min(agree_A, agree_B) ≤ U",
    "gain_over_copy": "(primary − a) / (U − a): the share of the gain over copying one parent that the child makes; "
                      "0 for a copy of A or of B, 1 at U (primary / U gives a copy a / U)",
    "kl": "KL(parent ‖ child) on softmax(Q / kl_temperature)",
}


def parent_hits(picks_a: torch.Tensor, picks_b: torch.Tensor, child_q: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per state: does the child pick A's greedy action, does it pick B's (what agreement averages)."""
    picks = child_q.argmax(-1)
    return (picks == picks_a).numpy(), (picks == picks_b).numpy()


def agreement_figures(hits: tuple[np.ndarray, np.ndarray], parents_agree: np.ndarray, unc: UncertaintyConfig) -> dict:
    """Agreement with A and B, primary and primary / U, each with its bootstrap interval over states.

    `parents_agree` is the per-state agreement of the two parents, which U is made of.
    """
    figures = {}
    for key, found in agreement_intervals(*hits, parents_agree, unc).items():
        figures[key] = found["value"]
        figures[f"{key}_ci"] = {"low": found["low"], "high": found["high"]}
    return figures


def child_figures(hits: tuple[np.ndarray, np.ndarray], parents_agree: np.ndarray, unc: UncertaintyConfig) -> dict:
    """`agreement_figures`, and the oracle agreement: the share of states where the child picks A's or B's action."""
    return {**agreement_figures(hits, parents_agree, unc), "oracle_agreement": float((hits[0] | hits[1]).mean())}


def recombination_offline(parent_a, parent_b, children: dict, heldout: np.ndarray, cfg: ValidateRecombConfig,
                          unc: UncertaintyConfig) -> dict:
    """Each child against both parents on held-out states, with the parents' own agreement as baseline."""
    states = torch.from_numpy(heldout)
    q_a, q_b = q_values(parent_a, states), q_values(parent_b, states)
    baseline = metrics.compare(q_a, q_b, cfg.top_k, cfg.kl_temperature)
    a = baseline["action_agreement"]
    report = {"parents_agreement": a, "bound": metrics.bound(a), "a_vs_b": baseline, "confidence": unc.confidence,
              "children": {}}
    picks_a, picks_b = q_a.argmax(-1), q_b.argmax(-1)
    parents_agree = (picks_a == picks_b).numpy()
    for name, child in children.items():
        q_c = q_values(child, states)
        hits = parent_hits(picks_a, picks_b, q_c)
        report["children"][name] = {
            "vs_a": metrics.compare(q_a, q_c, cfg.top_k, cfg.kl_temperature),
            "vs_b": metrics.compare(q_b, q_c, cfg.top_k, cfg.kl_temperature),
            **child_figures(hits, parents_agree, unc),
        }
    return report


def agreement_with_parents(parent_a, parent_b, networks: dict, heldout: np.ndarray,
                           unc: UncertaintyConfig) -> dict[str, dict]:
    """Each network's greedy-action agreement with parent A and with parent B on held-out states, with intervals."""
    states = torch.from_numpy(heldout)
    picks_a, picks_b = q_values(parent_a, states).argmax(-1), q_values(parent_b, states).argmax(-1)
    parents_agree = (picks_a == picks_b).numpy()
    return {name: agreement_figures(parent_hits(picks_a, picks_b, q_values(model, states)), parents_agree, unc)
            for name, model in networks.items()}


def online_returns(networks: dict, task: Task | None, episodes: int, seed: int,
                   unc: UncertaintyConfig) -> dict[str, dict | None]:
    """Each network's greedy return over the same fixed-seed episodes: mean, std and interval; None without a task."""
    if task is None:
        return {name: None for name in networks}
    for name, model in networks.items():
        task.check_network(model, name)
    return {name: mean_interval(task.greedy_returns(model, episodes, seed), unc)
            for name, model in networks.items()}


def mean_returns(returns: dict[str, dict | None]) -> dict[str, float | None]:
    """{network: mean return} of `online_returns` (None stays None)."""
    return {name: None if r is None else r["mean"] for name, r in returns.items()}


def selection_figures(parent_a, parent_b, child, val_states: torch.Tensor, task: Task | None,
                      sel: SelectionConfig, unc: UncertaintyConfig) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """What choosers read of a child (validation states, choosing episodes), and its per-state hits.

    The hits stay in memory: a paired comparison between two children (`selection.mark_ties`)
    needs them; reports keep the figures.
    """
    hits = parent_hits(q_values(parent_a, val_states).argmax(-1), q_values(parent_b, val_states).argmax(-1),
                       q_values(child, val_states))
    primary = primary_interval(*hits, unc)
    returns = online_returns({"child": child}, task, sel.eval_episodes, sel.eval_seed, unc)["child"]
    return {"n_states": len(val_states), "agreement_a": float(hits[0].mean()), "agreement_b": float(hits[1].mean()),
            "primary": primary["value"], "primary_low": primary["low"], "primary_high": primary["high"],
            "return": None if returns is None else returns["mean"]}, hits
