"""The operators benchmark: raw figures by hand, the balance marks, the seed spread, the timing, and the stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from recomb.config import load_params
from stages.common import with_task_values
from recomb.errors import RecombError
from recomb.selection import SelectionConfig
from recomb.evaluation.validation import ValidateRecombConfig
from recomb.networks import Architecture, seeded_qnetwork
from recomb.recombination.crossover import OPERATORS, CrossoverConfig
from recomb.recombination.operators import (OperatorsConfig, most_balanced, raw_scores, recipes, seed_spread,
                                            time_operators)
from recomb.recombination.search import Scoring
from recomb.reports import timing_markdown
from recomb.stats import UncertaintyConfig
from scratch import ROOT
from test_pipeline import one_line_error

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))
SECTION = {"seeds": [0, 1], "repeats": 3}


def linear(weight: list[float], bias: list[float]) -> nn.Linear:
    """Q(x) = weight · x + bias for a one-feature state and two actions."""
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight).unsqueeze(1))
        layer.bias.copy_(torch.tensor(bias))
    return layer.eval()


def test_each_operator_in_each_form_its_knobs_give_random_once_per_seed():
    found = recipes([3, 7], 0.3)
    assert [r.label for r in found] == ["random_a0p30_s3", "random_a0p30_s7", "layer", "weighted_a0p30",
                                        "weighted_a0p30_repair", "aligned_a0p30", "aligned_a0p30_repair",
                                        "aligned_a0p30_act", "aligned_a0p30_act_repair", "slerp_a0p30",
                                        "slerp_a0p30_repair"]


@pytest.mark.parametrize("body, message", [
    ({"seeds": [], "repeats": 5}, "params.yaml: compare_operators.seeds: needs at least one seed (got [])"),
    ({"seeds": [1, 1], "repeats": 5}, "params.yaml: compare_operators.seeds: must not list a seed twice (got [1, 1])"),
    ({"seeds": [0], "repeats": 0}, "params.yaml: compare_operators.repeats: must be ≥ 1 (got 0)"),
])
def test_a_bad_section_is_one_line_naming_the_key(body, message):
    with pytest.raises(RecombError) as exc:
        OperatorsConfig.from_mapping(body, "params.yaml: compare_operators")
    assert str(exc.value) == message


def test_raw_figures_by_hand():
    """States x = -2, -1, 1, 3. A: Q = (0, x) picks 0, 0, 1, 1; B: Q = (0, −x) picks 1, 1, 0, 0 (a = 0, U = ½).
    The child Q = (0, 2) always picks 1: half A's actions, half B's, so primary ½ and primary / U 1.
    |ΔQ| vs A: action 0 never differs, action 1 by |2 − x| = 4, 3, 1, 1: mean 9/8, max 4; vs B |2 + x| =
    0, 1, 3, 5: mean 9/8, max 5."""
    heldout = np.array([[-2.0], [-1.0], [1.0], [3.0]], dtype=np.float32)
    unc = UncertaintyConfig.from_mapping({"confidence": 0.95, "resamples": 200, "seed": 0}, "uncertainty")
    scoring = Scoring(linear([0, 1], [0, 0]), linear([0, -1], [0, 0]), heldout, torch.zeros(1, 1), None,
                      ValidateRecombConfig.from_params(PARAMS, "validate_recombination"),
                      SelectionConfig.from_params(PARAMS, "selection"), unc)
    rows, parents = raw_scores({"child": linear([0, 0], [0, 2])}, scoring)
    row = rows["child"]
    assert parents == {"parents_agreement": 0.0, "bound": 0.5}
    assert (row["agreement_a"], row["agreement_b"], row["primary"]) == (0.5, 0.5, 0.5)
    assert row["primary_over_bound"] == 1.0
    assert row["primary_over_bound_low"] <= 1.0 <= row["primary_over_bound_high"]
    assert (row["mean_abs_dq_a"], row["max_abs_dq_a"]) == (1.125, 4.0)
    assert (row["mean_abs_dq_b"], row["max_abs_dq_b"]) == (1.125, 5.0)
    assert row["online_return"] is None  # no environment, no return


def test_the_most_balanced_raw_child_and_who_reaches_it():
    def row(value, low, high):
        return {"primary_over_bound": value, "primary_over_bound_low": low, "primary_over_bound_high": high}

    marks = most_balanced({"x": row(0.5, 0.4, 0.6), "y": row(0.7, 0.65, 0.75), "z": row(0.6, 0.55, 0.72),
                           "w": row(0.7, 0.6, 0.8)})
    assert marks == {"x": {"leads": False, "tied": False},   # 0.6 < 0.7: told apart
                     "y": {"leads": True, "tied": False},    # the first of the two at 0.7
                     "z": {"leads": False, "tied": True},    # 0.72 reaches 0.7
                     "w": {"leads": False, "tied": True}}


def test_the_seed_spread_is_mean_min_max_and_leaves_out_what_a_row_lacks():
    spread = seed_spread([{"agreement_a": 0.2, "online_return": None}, {"agreement_a": 0.6, "online_return": None},
                          {"agreement_a": 0.4, "online_return": None}])
    assert spread == {"agreement_a": {"mean": pytest.approx(0.4), "min": 0.2, "max": 0.6}}


def test_every_operator_is_timed_and_the_timing_report_shows_it():
    arch = Architecture(4, 2, 16, 0.0)
    base = CrossoverConfig.from_params(PARAMS, "crossover")
    timed = time_operators(seeded_qnetwork(arch, 0), seeded_qnetwork(arch, 1), base, 0, 3, torch.randn(64, 4))
    assert list(timed) == ["random α=0.5 seed=0", "layer", "weighted α=0.5", "weighted α=0.5 repair", "aligned α=0.5",
                           "aligned α=0.5 repair", "aligned α=0.5 activations", "aligned α=0.5 activations repair",
                           "slerp α=0.5", "slerp α=0.5 repair"]
    assert all(0 < t["min_ms"] <= t["median_ms"] for t in timed.values())
    text = timing_markdown({"passed": True, "distillation": {}, "quantization": {}, "peak_rss_mib": 1.0,
                            "operators": {"repeats": 3, "per_crossover_ms": timed}})
    assert "3 calls per operator" in text and "| aligned α=0.5 activations repair |" in text


def with_section(p, **section) -> None:
    """The scratch project's params with this file's `compare_operators` section, not params.yaml's."""
    params = p.params()
    params["compare_operators"] = {**SECTION, **section}
    (p.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def numbers_only(node) -> bool:
    if isinstance(node, dict):
        return all(numbers_only(v) for v in node.values())
    return isinstance(node, (bool, int, float))


@pytest.mark.longest
def test_the_stage_compares_every_operator_and_refuses_a_bad_section(synthetic_project):
    """The synthetic parents crossed directly. `random` seed 0 draws 0.496, 0.089, 0.307, 0.490, 0.456 (< 0.5:
    from A) for the five weight tensors, and random-init parents have zero biases and default LayerNorm
    parameters, so that child is parent A itself: |ΔQ| vs A 0, agreement with A 1, primary / U = a / U."""
    p = synthetic_project
    p.set(**{"crossover.parents": "parents"})  # no students needed
    p.stage("parents")
    with_section(p, seeds=[])
    assert one_line_error(p.stage("compare_operators", check=False)) == (
        "params.yaml: compare_operators.seeds: needs at least one seed (got [])")
    assert not (p.path / "data/reports/operators").exists() and not (p.path / "data/plots/operators").exists()

    with_section(p)
    p.stage("compare_operators")
    summary = json.loads((p.path / "data/reports/operators/summary.json").read_text())
    assert numbers_only(summary)
    assert set(summary["children"]) == {"random_a0p50_s0", "random_a0p50_s1", "layer", "weighted_a0p50",
                                        "weighted_a0p50_repair", "aligned_a0p50", "aligned_a0p50_repair",
                                        "aligned_a0p50_act", "aligned_a0p50_act_repair", "slerp_a0p50",
                                        "slerp_a0p50_repair"}
    copy_of_a = summary["children"]["random_a0p50_s0"]["raw"]
    assert (copy_of_a["mean_abs_dq_a"], copy_of_a["max_abs_dq_a"], copy_of_a["agreement_a"]) == (0, 0, 1)
    assert copy_of_a["primary_over_bound"] == pytest.approx(summary["parents_agreement"] / summary["bound"])
    assert sorted(child["finetuned"]["rank"] for child in summary["children"].values()) == list(range(1, 12))
    assert sum(child["raw"]["leads"] for child in summary["children"].values()) == 1
    assert summary["random_over_seeds"]["seeds"] == 2
    report = (p.path / "data/reports/operators/report.md").read_text()
    assert "| random: mean (min–max) of 2 seeds |" in report and "| random α=0.5 seed=0 | 0 / 0 |" in report
    assert "_ms" not in json.dumps(summary) and " ms" not in report  # wall-clock stays out of hashed outputs
    assert (p.path / "data/plots/operators/operators.png").stat().st_size > 0
