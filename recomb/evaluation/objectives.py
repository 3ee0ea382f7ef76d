"""Distillation objectives side by side: hard, blended, soft, and this project's default.

The reference compared three objectives with one frozen teacher, one state buffer and
one student initialisation, changing only the soft/hard weight alpha (0 = cross-entropy
on the teacher's greedy action, 1 = temperature-scaled KL). This module builds those
three as variants of the pipeline's `distill` section (no Q-regression term, one
shared temperature) and adds the section itself as a fourth mode, then scores every
student on the held-out states. Each mode's best validation loss is its own
objective's value, so it ranks epochs within a mode, never modes against each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Section
from ..parallel import map_processes
from .. import metrics
from .validation import online_returns, q_values
from ..networks import QNetwork
from ..plots import learning_curves
from ..reports import table, with_interval
from ..stats import UncertaintyConfig, interval, mean_interval
from ..training.tasks import Task
from ..training.distill import DistillConfig, DistillResult, distill

CURVE_KEYS = ("train_loss", "val_loss", "val_agreement", "val_prob_similarity")
PAIR_LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class CompareObjectivesConfig(Section):
    """The `compare_distillation` params section."""

    sections = ("compare_distillation",)

    blended_alpha: float   # soft weight of the blended mode (reference: 0.7)
    temperature: float     # softmax temperature of the three reference modes
    epochs: int            # every mode's budget
    eval_episodes: int     # greedy episodes per student (with an environment)
    eval_seed: int
    workers: int           # processes training the modes side by side (the same bits on any number)

    def check(self) -> None:
        self.require(0 < self.blended_alpha < 1, "blended_alpha",
                     "must be in (0, 1): 0 and 1 are hard_only and soft_only")
        self.require(self.temperature > 0, "temperature", "must be > 0")
        self.require(self.epochs >= 1, "epochs", "must be ≥ 1")
        self.require(self.eval_episodes >= 1, "eval_episodes", "must be ≥ 1")
        self.require(self.workers >= 1, "workers", "must be ≥ 1")


def mode_configs(base: DistillConfig, cfg: CompareObjectivesConfig) -> dict[str, DistillConfig]:
    """The four objectives as distill configs; every other knob, and the budget, is shared.

    The reference modes drop the Q-regression term and share `cfg.temperature`, so they
    differ in alpha alone; `default` is `base` as the pipeline trains its students.
    """
    reference = {"q_weight": 0.0, "temperature": cfg.temperature, "epochs": cfg.epochs}
    return {
        "hard_only": dataclasses.replace(base, alpha=0.0, **reference),
        "blended": dataclasses.replace(base, alpha=cfg.blended_alpha, **reference),
        "soft_only": dataclasses.replace(base, alpha=1.0, **reference),
        "default": dataclasses.replace(base, epochs=cfg.epochs),
    }


def _train_mode(job: tuple) -> DistillResult:
    return distill(*job)


def train_modes(students: list[QNetwork], teachers: list[torch.nn.Module], states: torch.Tensor,
                configs: dict[str, DistillConfig], seeds: list[int], workers: int) -> dict[str, DistillResult]:
    """Every mode's students from the same initial ones; modes are independent, so they train in
    `workers` forked processes (each mode's result is the same as trained alone)."""
    jobs = [(students, teachers, states, mode_cfg, seeds) for mode_cfg in configs.values()]
    return dict(zip(configs, map_processes(_train_mode, jobs, workers, start_method="fork")))


def _mean_difference(first: np.ndarray, second: np.ndarray, axis: int = -1) -> np.ndarray:
    return first.mean(axis=axis) - second.mean(axis=axis)


def score_modes(teachers: dict[str, torch.nn.Module], results: dict[str, DistillResult],
                configs: dict[str, DistillConfig], heldout: np.ndarray, task: Task | None,
                cfg: CompareObjectivesConfig, unc: UncertaintyConfig) -> dict:
    """Every mode's students against their teachers on the held-out states (numbers and booleans only).

    Per pair, the mode with the highest agreement is the best; another mode is tied with
    it when the paired bootstrap interval of their agreement difference contains 0.
    """
    states = torch.from_numpy(heldout)
    teacher_q = {pair: q_values(teacher, states) for pair, teacher in teachers.items()}
    summary = {"n_heldout": len(heldout), "confidence": unc.confidence, "modes": {}}
    hits = {}
    for mode, result in results.items():
        mode_cfg = configs[mode]
        pairs = {}
        students = dict(zip(teachers, result.students))
        returns = online_returns(students, task, cfg.eval_episodes, cfg.eval_seed, unc)
        for member, (pair, student) in enumerate(students.items()):
            student_q = q_values(student, states)
            hits[mode, pair] = (student_q.argmax(-1) == teacher_q[pair].argmax(-1)).numpy()
            agreement = mean_interval(hits[mode, pair], unc)
            best = result.best_row(member)
            pairs[pair] = {
                "agreement": agreement["mean"], "agreement_low": agreement["low"], "agreement_high": agreement["high"],
                "prob_similarity": metrics.prob_similarity(teacher_q[pair], student_q),
                "kl_divergence": metrics.kl_divergence(teacher_q[pair], student_q),
                **metrics.q_fidelity(teacher_q[pair], student_q),
                "best_val_loss": best["val_loss"], "best_epoch": best["epoch"],
            }
            if returns[pair] is not None:
                pairs[pair].update(greedy_return=returns[pair]["mean"], greedy_return_low=returns[pair]["low"],
                                   greedy_return_high=returns[pair]["high"])
        summary["modes"][mode] = {"alpha": mode_cfg.alpha, "q_weight": mode_cfg.q_weight,
                                  "temperature": mode_cfg.temperature, "epochs": mode_cfg.epochs, "pairs": pairs}
    for pair in teachers:
        scores = {mode: summary["modes"][mode]["pairs"][pair] for mode in results}
        leader = max(scores, key=lambda mode: scores[mode]["agreement"])
        for mode, figures in scores.items():
            figures["agreement_best"] = mode == leader
            if mode != leader:
                low, high = interval((hits[leader, pair], hits[mode, pair]), _mean_difference, unc)
                figures.update(agreement_gap_low=low, agreement_gap_high=high, agreement_tied=low <= 0 <= high)
    return summary


def curve_rows(result: DistillResult, pairs: tuple[str, ...]) -> list[dict]:
    """One row per epoch, each curve key once per pair (`val_agreement_A`): a DVC plots CSV."""
    return [{"epoch": rows[0]["epoch"],
             **{f"{key}_{pair}": row[key] for pair, row in zip(pairs, rows) for key in CURVE_KEYS}}
            for rows in zip(*result.histories)]


def curves_figure(results: dict[str, DistillResult], pairs: tuple[str, ...]):
    """Every mode's validation curves in one figure: one colour per mode, one line style per pair."""
    histories = {f"{mode} {pair}": history for mode, result in results.items()
                 for pair, history in zip(pairs, result.histories)}
    fig = learning_curves(histories, "epoch", ["val_agreement", "val_prob_similarity", "val_loss"],
                          "Distillation objectives on the validation split (each loss is its mode's own objective)")
    styles = {f"{mode} {pair}": (f"C{m}", PAIR_LINESTYLES[p % len(PAIR_LINESTYLES)])
              for m, mode in enumerate(results) for p, pair in enumerate(pairs)}
    for ax in fig.axes:
        for line in ax.get_lines():
            colour, linestyle = styles[line.get_label()]
            line.set_color(colour)
            line.set_linestyle(linestyle)
    fig.axes[0].legend(fontsize=7, handlelength=3)  # redrawn: a legend copies its lines' styles when it is made
    return fig


def _standing(figures: dict) -> str:
    if figures["agreement_best"]:
        return "best"
    return "tied" if figures["agreement_tied"] else "below"


def objectives_markdown(summary: dict) -> str:
    """The mode × pair table, with what each column means and why the losses do not compare."""
    pct = f"{100 * summary['confidence']:g}%"
    rows = []
    for mode, entry in summary["modes"].items():
        for pair, f in entry["pairs"].items():
            ret = f.get("greedy_return")
            rows.append([mode, entry["alpha"], entry["q_weight"], entry["temperature"], pair,
                         with_interval(f["agreement"], f["agreement_low"], f["agreement_high"]), _standing(f),
                         f["prob_similarity"], f["cosine"], f["centered_cosine"], f["relative_mse"],
                         f["best_val_loss"], f["best_epoch"],
                         "–" if ret is None else
                         with_interval(ret, f["greedy_return_low"], f["greedy_return_high"], 1)])
    epochs = next(iter(summary["modes"].values()))["epochs"]  # one budget for every mode (`mode_configs`)
    return "\n".join([
        "# Distillation objectives compared", "",
        f"One frozen teacher per pair, the same train states, the same student initialisation and "
        f"{epochs} epochs for every mode; students scored on "
        f"{summary['n_heldout']} held-out states. Brackets: {pct} bootstrap intervals over states (agreement) "
        "or episodes (return).", "",
        table(["mode", "alpha", "q_weight", "T", "pair", "agreement", "vs best", "prob. similarity", "cosine",
               "centred cosine", "relative MSE (Q)", "best val loss*", "kept epoch", "greedy return"], rows), "",
        "- mode: `hard_only` (alpha 0: cross-entropy on the teacher's greedy action), `blended` (alpha·soft + "
        "(1 − alpha)·hard), `soft_only` (alpha 1: T²·KL on softmax(Q / T)), all three without the Q-regression "
        "term; `default`: the `distill` section as the pipeline trains its students (with the Q-regression term).",
        "- agreement: share of held-out states where student and teacher pick the same greedy action.",
        f"- vs best: per pair, `best` has the highest agreement; `tied` means the paired {pct} interval of the "
        "agreement difference to the best contains 0 (the states cannot tell them apart); `below` means it does not.",
        "- prob. similarity: 1 − mean |p_teacher − p_student| over states and actions, softmax at T = 1.",
        "- cosine: per-state cosine of raw Q-values; centred cosine: of the advantages (Q minus its per-state mean).",
        "- relative MSE (Q): MSE of raw Q-values over the teacher's Q variance: whether the student keeps the "
        "teacher's Q scale (only a Q-regression term asks for it).",
        "- *best val loss: each mode's own objective on the validation split of the train states at the kept epoch "
        "(the lowest); it is not comparable across modes (cross-entropy, scaled KL and Q-regression have "
        "different scales).", ""])
