"""Stage `compare_distillation`: the four objectives as distill configs, their scores, and the stage end to end."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from recomb.artifacts import load_checkpoint
from stages.common import with_task_values
from recomb.config import load_params
from recomb.errors import RecombError
from recomb.stats import UncertaintyConfig
from recomb.training.distill import DistillConfig, DistillResult
from recomb.evaluation.objectives import (CompareObjectivesConfig, curve_rows, mode_configs, objectives_markdown,
                                        score_modes, train_modes)
from scratch import ROOT
from test_pipeline import one_line_error

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))  # as the stages see it
BASE = DistillConfig.from_params(PARAMS, "distill")
SECTION = {"blended_alpha": 0.7, "temperature": 3.0, "epochs": 2, "eval_episodes": 5, "eval_seed": 20000, "workers": 1}
CFG = CompareObjectivesConfig.from_mapping(SECTION, "params.yaml: compare_distillation")
UNC = UncertaintyConfig.from_mapping({"confidence": 0.95, "resamples": 1000, "seed": 0}, "params.yaml: uncertainty")


class Table(nn.Module):
    """A 'network' that answers fixed Q-values for the fixed held-out states."""

    def __init__(self, rows):
        super().__init__()
        self.q = torch.tensor(rows, dtype=torch.float32)

    def forward(self, states):
        return self.q


def test_modes_differ_from_the_distill_section_only_in_their_weights_temperature_and_budget():
    configs = mode_configs(BASE, CFG)
    assert list(configs) == ["hard_only", "blended", "soft_only", "default"]
    expected = {"hard_only": (0.0, 0.0, 3.0), "blended": (0.7, 0.0, 3.0), "soft_only": (1.0, 0.0, 3.0),
                "default": (BASE.alpha, BASE.q_weight, BASE.temperature)}
    for mode, mode_cfg in configs.items():
        assert (mode_cfg.alpha, mode_cfg.q_weight, mode_cfg.temperature, mode_cfg.epochs) == (*expected[mode], 2)
        changed = {k for k, v in dataclasses.asdict(mode_cfg).items() if getattr(BASE, k) != v}
        assert changed <= {"alpha", "q_weight", "temperature", "epochs"}, mode


def test_modes_train_to_the_same_bits_in_one_process_or_two():
    from recomb.networks import Architecture, seeded_qnetwork
    teachers = [seeded_qnetwork(Architecture(8, 4, 16, 0.0), seed).eval() for seed in (1, 2)]
    students = [seeded_qnetwork(Architecture(8, 4, 8, 0.0), seed) for seed in (3, 4)]
    states = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    configs = mode_configs(BASE, CFG)
    alone, side_by_side = (train_modes(students, teachers, states, configs, [3, 4], workers) for workers in (1, 2))
    for mode in configs:
        assert alone[mode].histories == side_by_side[mode].histories
        for one, two in zip(alone[mode].students, side_by_side[mode].students):
            assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values()))
    assert alone["hard_only"].histories != alone["soft_only"].histories  # every mode from the same start


def test_section_refuses_a_blended_alpha_that_is_another_mode():
    with pytest.raises(RecombError, match=r"^params.yaml: compare_distillation.blended_alpha: must be in \(0, 1\)"):
        CompareObjectivesConfig.from_mapping({**SECTION, "blended_alpha": 1.0}, "params.yaml: compare_distillation")


def result(student, best_epoch=2):
    history = [{"epoch": 1, "val_loss": 0.7}, {"epoch": 2, "val_loss": 0.4}]
    return DistillResult([student], [history], [best_epoch])


def test_scores_ties_and_standing_on_hand_built_students():
    teacher = [[1.0, 0.0]] * 100 + [[0.0, 1.0]] * 100  # greedy action 0 on the first half, 1 on the second
    one_off = [[0.0, 1.0]] + teacher[1:]                  # disagrees on one state of 200
    flipped = [row[::-1] for row in teacher]              # disagrees everywhere
    results = {"copy": result(Table(teacher)), "one_off": result(Table(one_off)), "flipped": result(Table(flipped), 1)}
    configs = {mode: BASE for mode in results}
    summary = score_modes({"A": Table(teacher)}, results, configs, np.zeros((200, 1), np.float32), None, CFG, UNC)
    copy, near, flip = (summary["modes"][m]["pairs"]["A"] for m in ("copy", "one_off", "flipped"))
    assert (copy["agreement"], copy["agreement_low"], copy["agreement_high"]) == (1.0, 1.0, 1.0)
    assert copy["agreement_best"] and "agreement_tied" not in copy
    assert near["agreement"] == pytest.approx(199 / 200)
    assert near["agreement_tied"] and near["agreement_gap_low"] <= 0  # one state in 200 cannot be told apart
    assert flip["agreement"] == 0.0 and not flip["agreement_tied"]
    assert (flip["agreement_gap_low"], flip["agreement_gap_high"]) == (1.0, 1.0)
    # softmax of (1, 0) is (e, 1)/(e + 1); flipped, every |Δp| is (e − 1)/(e + 1), so the similarity is 2/(e + 1)
    assert flip["prob_similarity"] == pytest.approx(2 / (math.e + 1))
    assert copy["prob_similarity"] == pytest.approx(1.0)
    # (1, 0)·(0, 1) = 0; the advantages (½, −½) and (−½, ½) point opposite ways
    assert flip["cosine"] == pytest.approx(0.0) and flip["centered_cosine"] == pytest.approx(-1.0)
    # every squared error is 1; the teacher's 400 Q-values, half 1 and half 0, have unbiased variance 100/399
    assert flip["relative_mse"] == pytest.approx(3.99)
    assert (copy["best_val_loss"], copy["best_epoch"], flip["best_val_loss"], flip["best_epoch"]) == (0.4, 2, 0.7, 1)
    assert "greedy_return" not in copy  # no environment: omitted, not null
    text = objectives_markdown(summary)
    assert "| copy | 0.5 | 1 | 1 | A | 1.0000 [1.0000, 1.0000] | best |" in text
    assert "| one_off | 0.5 | 1 | 1 | A | 0.9950 [" in text and "| tied |" in text and "| below |" in text


def test_curves_hold_one_column_per_key_and_pair():
    rows = {"train_loss": 2.0, "val_loss": 1.0, "val_agreement": 0.5, "val_prob_similarity": 0.9}
    both = DistillResult([None, None], [[{"epoch": 1, **rows}], [{"epoch": 1, **rows, "val_agreement": 0.75}]], [1, 1])
    assert curve_rows(both, ("A", "B")) == [{
        "epoch": 1, "train_loss_A": 2.0, "val_loss_A": 1.0, "val_agreement_A": 0.5, "val_prob_similarity_A": 0.9,
        "train_loss_B": 2.0, "val_loss_B": 1.0, "val_agreement_B": 0.75, "val_prob_similarity_B": 0.9}]


def numbers_only(node) -> bool:
    if isinstance(node, dict):
        return all(numbers_only(v) for v in node.values())
    return isinstance(node, (bool, int, float))


def add_section(p, section: dict | None) -> None:
    params = p.params()
    params.pop("compare_distillation", None)
    if section is not None:
        params["compare_distillation"] = section
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.longest
def test_stage_compares_four_objectives_and_its_default_row_is_the_pipelines_students(synthetic_project):
    p = synthetic_project
    p.stage("parents")
    add_section(p, {**SECTION, "blended_alpha": 1.5})
    assert one_line_error(p.stage("compare_distillation", check=False)) == (
        "params.yaml: compare_distillation.blended_alpha: must be in (0, 1): 0 and 1 are hard_only and soft_only "
        "(got 1.5)")
    assert not (p.path / "data/reports/objectives").exists() and not (p.path / "data/plots/objectives").exists()

    add_section(p, {**SECTION, "epochs": p.params()["distill"]["epochs"]})
    p.stage("compare_distillation")
    p.stage("distill")
    summary = json.loads((p.path / "data/reports/objectives/summary.json").read_text())
    assert numbers_only(summary) and set(summary["modes"]) == {"hard_only", "blended", "soft_only", "default"}
    heldout = torch.from_numpy(np.load(p.path / "data/states/heldout.npy"))
    for pair in ("A", "B"):
        teacher = load_checkpoint(p.path / f"data/parents/parent_{pair}.safetensors").model
        student = load_checkpoint(p.path / f"data/students/student_{pair}.safetensors").model
        with torch.inference_mode():
            agreement = (teacher(heldout).argmax(-1) == student(heldout).argmax(-1)).double().mean().item()
        assert summary["modes"]["default"]["pairs"][pair]["agreement"] == agreement
        assert "greedy_return" not in summary["modes"]["default"]["pairs"][pair]  # synthetic: no environment
    for mode in summary["modes"]:
        header = (p.path / f"data/plots/objectives/{mode}.csv").read_text().splitlines()[0]
        assert header.startswith("epoch,train_loss_A,val_loss_A,val_agreement_A")
    assert "| hard_only | 0 | 0 | 3 | A |" in (p.path / "data/reports/objectives/report.md").read_text()
    assert (p.path / "data/plots/objectives/learning_curves.png").stat().st_size > 0
