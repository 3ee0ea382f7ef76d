"""The rules that choose, gate and report, pinned on small cases computed by hand (issue 20).

Each test states a verdict a researcher relies on — the fine-tune keeps the epoch with
the best min(agreement A, agreement B); a child below the return bar ranks below one
above it; a gate reads its own threshold; KL is KL(reference ‖ other); intervals honour
their confidence level and seed — in terms of figures small enough to work out on paper.
"""

import copy
import math

import numpy as np
import pytest
import torch

from recomb.config import load_params
from stages.common import with_task_values
from recomb.errors import RecombError
from recomb.metrics import parents_reference
from recomb.selection import SelectionConfig
from recomb.evaluation.validation import (ValidateDistillConfig, ValidateQuantizedConfig, ValidateRecombConfig,
                                          agreement_with_parents, recombination_offline, selection_figures,
                                          validate_student)
from recomb.evaluation.verdict import markdown
from recomb.networks import Architecture, seeded_qnetwork
from recomb.recombination.crossover import CrossoverConfig
from recomb.recombination.operators import raw_scores
from recomb.recombination.search import GridPoint, Outcome, Recipe, Scoring, rank_outcomes
from recomb.stats import UncertaintyConfig, mean_interval
from recomb.training.finetune import FinetuneConfig, finetune, finetune_config
from recomb.training.tasks import task
from scratch import ROOT

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))
UNCERTAINTY = UncertaintyConfig.from_mapping({"confidence": 0.95, "resamples": 200, "seed": 0}, "uncertainty")
RECOMB = ValidateRecombConfig.from_mapping(
    {"parents_role": "parents", "top_k": 2, "kl_temperature": 1.0, "eval_episodes": 5, "eval_seed": 20000,
     "thresholds": {"min_gain_over_copy": 0.5, "min_child_return": 400.0}}, "validate_recombination")
SELECTION = SelectionConfig.from_mapping({"val_fraction": 0.1, "seed": 0, "eval_episodes": 5, "eval_seed": 30000},
                                         "selection")


def linear(weight, bias=None) -> torch.nn.Linear:
    """A fixed linear Q 'network': Q(x) = x @ weight.T + bias, so its greedy actions are set by hand."""
    weight = torch.tensor(weight, dtype=torch.float32)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer.eval()


def table_network(greedy: list[int], n_actions: int = 3) -> torch.nn.Linear:
    """On one-hot state i, Q is 1 at action greedy[i] and 0 elsewhere: a network that picks `greedy` there."""
    q = torch.zeros(len(greedy), n_actions)
    q[torch.arange(len(greedy)), torch.tensor(greedy)] = 1.0
    return linear(q.T.tolist())


ONE_HOT = np.eye(4, dtype=np.float32)      # four states; state i is the i-th one-hot vector
PICKS_A = [0, 1, 2, 0]
PICKS_B = [0, 2, 1, 1]                     # the parents agree on state 0 only: a = 1/4, U = 1/4 + 3/8 = 5/8
PICKS_CHILD = [0, 1, 1, 0]                 # hits A on states 0, 1, 3 (3/4) and B on states 0, 2 (1/2)


# ----------------------------------------------------------------------------- fine-tune: the best epoch

FT_STATES = torch.randn(600, 8, generator=torch.Generator().manual_seed(0))
FT_TRAIN, FT_VALIDATION = FT_STATES[:500], FT_STATES[500:]
FT_ARCH = Architecture(8, 4, 32, 0.0)


class Negated(torch.nn.Module):
    """−Q of another network: its greedy action is the other's worst, so the two never agree."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.network(x)


def finetune_cfg(**overrides) -> FinetuneConfig:
    return FinetuneConfig.from_mapping({**finetune_config(PARAMS).to_dict(), "batch_size": 64, **overrides},
                                       "params.yaml: finetune")


def copy_of_a_against_its_opposite():
    """(child, A, B): the child is a copy of A, B = −A, so the raw child agrees with A everywhere and B nowhere."""
    child = seeded_qnetwork(FT_ARCH, 7)
    teacher_a = copy.deepcopy(child).eval()
    return child, teacher_a, Negated(teacher_a)


def test_a_child_that_copies_one_parent_has_validation_primary_zero_at_every_epoch():
    """Agreeing with A on every validation state and with B on none is primary min(1, 0) = 0, whatever the epoch."""
    child, teacher_a, teacher_b = copy_of_a_against_its_opposite()
    cfg = finetune_cfg(teacher_mode="a", epochs=2, learning_rate=1e-12, lr_schedule="constant")
    [result] = finetune([child], teacher_a, teacher_b, FT_TRAIN, FT_VALIDATION, cfg)
    assert len(result.history) == 3
    for row in result.history:
        assert (row["val_agreement_a"], row["val_agreement_b"], row["val_primary"]) == (1.0, 0.0, 0.0)


def test_the_fine_tune_keeps_an_epoch_that_agrees_with_both_parents_over_the_raw_copy_of_one():
    """The raw child (a copy of A, B = −A) has primary 0; balanced training sides with B on some states.

    The kept child must be one with min(agreement A, agreement B) > 0 on the validation
    states, measured here from the networks themselves; an epoch rule reading max() or
    scoring B against A's actions keeps the raw copy of A (its 'primary' would be 1).
    """
    child, teacher_a, teacher_b = copy_of_a_against_its_opposite()
    cfg = finetune_cfg(teacher_mode="balanced", epochs=3, learning_rate=0.01)
    [result] = finetune([child], teacher_a, teacher_b, FT_TRAIN, FT_VALIDATION, cfg)
    with torch.no_grad():
        picks = result.child(FT_VALIDATION).argmax(-1)
        agree_a = (picks == teacher_a(FT_VALIDATION).argmax(-1)).double().mean().item()
        agree_b = (picks == teacher_b(FT_VALIDATION).argmax(-1)).double().mean().item()
    assert result.best_epoch > 0
    assert min(agree_a, agree_b) > 0.2
    kept = result.history[result.best_epoch]
    assert kept["val_agreement_a"] == pytest.approx(agree_a) and kept["val_agreement_b"] == pytest.approx(agree_b)
    assert kept["val_primary"] == pytest.approx(min(agree_a, agree_b))


# ----------------------------------------------------------------------------- search: the return bar


def report(primary: float, val_return: float) -> dict:
    """A recombination report as `score_child` makes it, with the figures the ranking reads."""
    figures = {key: value for name in ("primary", "agreement_a", "agreement_b", "primary_over_bound", "gain_over_copy")
               for key, value in ((name, primary), (f"{name}_ci", {"low": primary - 0.05, "high": primary + 0.05}))}
    return {"selection": {"child": {"primary": primary, "primary_low": primary - 0.05,
                                    "primary_high": primary + 0.05, "return": val_return}},
            "children": {"child": figures},
            "greedy_return_interval": {"child": {"mean": val_return, "std": 1.0, "low": val_return - 1,
                                                 "high": val_return + 1}}}


def test_a_child_below_the_return_bar_ranks_below_one_above_it_whatever_their_primaries():
    """The bar is 400 (`min_child_return`): a child returning 159 with primary 0.95 ranks below one returning
    500 with primary 0.60 — the search once recommended such a 159."""
    base = CrossoverConfig.from_mapping(PARAMS["crossover"], "params.yaml: crossover")
    points = [GridPoint("000_drops_the_pole", Recipe("weighted", 0.5, 0), "tuned"),
              GridPoint("001_acts", Recipe("weighted", 0.3, 0), "tuned")]
    hits = (np.ones(20, dtype=bool), np.ones(20, dtype=bool))
    outcomes = {"000_drops_the_pole": Outcome("000_drops_the_pole", None, None, report(0.95, 159.0), hits),
                "001_acts": Outcome("001_acts", None, None, report(0.60, 500.0), hits)}
    scoring = Scoring(None, None, ONE_HOT, torch.from_numpy(ONE_HOT), task("CartPole-v1"), RECOMB, SELECTION, UNCERTAINTY)
    rows = rank_outcomes(points, outcomes, base, scoring, degenerate_threshold=0.0)
    assert [row["experiment"] for row in rows] == ["001_acts", "000_drops_the_pole"]
    assert [row["rank"] for row in rows] == [1, 2]
    assert not rows[1]["tied"]  # never tied across the bar


# ----------------------------------------------------------------------------- distillation gates and fidelity


def distill_config(min_action_agreement: float, min_robustness_followed: float) -> ValidateDistillConfig:
    return ValidateDistillConfig.from_mapping(
        {"top_k": 2, "kl_temperature": 1.0, "eval_episodes": 5, "eval_seed": 20000, "latency_repeats": 10,
         "robustness": {"noise_std": 0.0, "scale_factor": 1.1, "seed": 0},
         "thresholds": {"min_action_agreement": min_action_agreement, "max_kl_divergence": 10.0,
                        "min_advantage_correlation": -1.0, "min_centered_cosine": -1.0, "max_latency_ratio": 2.0,
                        "min_robustness_followed": min_robustness_followed, "min_greedy_return": None}},
        "validate_distillation")


@pytest.mark.parametrize("min_action, min_robustness, robust_passes", [(0.95, 0.0, True), (0.5, 0.5, False)])
def test_robustness_gates_read_their_own_threshold_not_the_action_agreement_one(min_action, min_robustness,
                                                                                robust_passes):
    """Teacher Q = (x, 1), student Q = (x, 1.05): both pick action 0 iff x is past their bar (1 or 1.05).

    On the held-out x = 0.93, 3, 0.2, 5 they agree everywhere (action agreement 1). Scaled by 1.1,
    x = 0.93 becomes 1.023, between the two bars: the teacher changes that one action (1/4) and the student
    does not, agreement 3/4, so it follows none of the teacher's changes (followed 1 − ¼ / ¼ = 0). With noise 0
    the noisy copy is the states themselves: nothing changes or is lost (followed 1). A threshold of 0 passes
    the scaled states and 0.5 fails them, whatever the action-agreement threshold (0.95 or 0.5, both passed by 1).
    """
    teacher, student = linear([[1.0], [0.0]], [0.0, 1.0]), linear([[1.0], [0.0]], [0.0, 1.05])
    heldout = np.array([[0.93], [3.0], [0.2], [5.0]], dtype=np.float32)
    result = validate_student(teacher, student, heldout, None, distill_config(min_action, min_robustness))
    checks = result["checks"]
    assert checks["action_agreement"] == {"value": 1.0, "min": min_action, "passed": True}
    assert checks["robustness_gaussian_noise"] == {"value": 1.0, "min": min_robustness, "passed": True}
    assert checks["robustness_input_scaling"] == {"value": 0.0, "min": min_robustness, "passed": robust_passes}
    assert result["robustness"]["input_scaling"] == {"agreement": 0.75, "teacher_changed": 0.25, "followed": 0.0}
    assert result["passed"] is robust_passes


# Two states x = 0 and x = 1. Reference Q: (0, 0) and (1, 0). Other Q: (ln 3, 0) and (1, 0).
# State 0: p = (1/2, 1/2), q = (3/4, 1/4): KL(p ‖ q) = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3); state 1: KL = 0.
# Mean KL(reference ‖ other) = ¼ ln(4/3) ≈ 0.0719 (the other way round: ≈ 0.0654).
# Advantages: reference (0, 0), (½, −½): mean square 1/8; error (ln 3 / 2, −ln 3 / 2), (0, 0): mean square
# (ln 3)² / 8; relative MSE = (ln 3)² ≈ 1.207 (relative to the other's advantages it would be ≈ 0.547).
TWO_STATES = np.array([[0.0], [1.0]], dtype=np.float32)
KL_REFERENCE_TO_OTHER = 0.25 * math.log(4 / 3)
ADVANTAGE_RELATIVE_MSE = math.log(3) ** 2


def reference_and_other() -> tuple[torch.nn.Module, torch.nn.Module]:
    return linear([[1.0], [0.0]], [0.0, 0.0]), linear([[1.0 - math.log(3)], [0.0]], [math.log(3), 0.0])


def test_distillation_fidelity_is_kl_from_the_teacher_to_the_student():
    teacher, student = reference_and_other()
    fidelity = validate_student(teacher, student, TWO_STATES, None, distill_config(0.5, 0.5))["fidelity"]
    assert fidelity["kl_divergence"] == pytest.approx(KL_REFERENCE_TO_OTHER, rel=1e-5)
    assert fidelity["advantage_relative_mse"] == pytest.approx(ADVANTAGE_RELATIVE_MSE, rel=1e-5)


def test_recombination_compares_each_parent_to_the_child_with_the_parent_as_reference():
    parent, child = reference_and_other()
    found = recombination_offline(parent, copy.deepcopy(parent), {"child": child}, TWO_STATES, RECOMB, UNCERTAINTY)
    for side in ("vs_a", "vs_b"):
        figures = found["children"]["child"][side]
        assert figures["kl_divergence"] == pytest.approx(KL_REFERENCE_TO_OTHER, rel=1e-5)
        assert figures["advantage_relative_mse"] == pytest.approx(ADVANTAGE_RELATIVE_MSE, rel=1e-5)


# ----------------------------------------------------------------------------- what choosers read


def test_selection_hits_are_the_childs_picks_against_each_parents_own_picks():
    """A, B and the child pick by hand on four states: the hits and figures follow from those picks only."""
    figures, (hits_a, hits_b) = selection_figures(table_network(PICKS_A), table_network(PICKS_B),
                                                  table_network(PICKS_CHILD), torch.from_numpy(ONE_HOT), None,
                                                  SELECTION, UNCERTAINTY)
    assert hits_a.tolist() == [True, True, False, True]
    assert hits_b.tolist() == [True, False, True, False]
    assert (figures["n_states"], figures["agreement_a"], figures["agreement_b"]) == (4, 0.75, 0.5)
    assert figures["primary"] == 0.5
    assert figures["primary_low"] <= 0.5 <= figures["primary_high"]
    assert figures["return"] is None


def test_the_parents_reference_is_their_own_agreement_and_the_bound_it_sets():
    """Parents agreeing on 1 of 4 states: a = 1/4, U = a + (1 − a)/2 = 5/8, what a child's primary is read against."""
    reference = parents_reference(table_network(PICKS_A), table_network(PICKS_B), torch.from_numpy(ONE_HOT))
    assert reference == {"U": 0.625, "parents' agreement": 0.25}


def test_agreement_with_parents_scores_each_network_against_each_parents_own_picks():
    """The report's per-network agreement table: the mixed child hits A on 3 of 4 states and B on 2; a copy of
    A hits A everywhere and B where the parents agree; primary / U divides by the parents' 5/8; the gain over a
    copy is (primary − 1/4) / (5/8 − 1/4)."""
    table = agreement_with_parents(table_network(PICKS_A), table_network(PICKS_B),
                                   {"mixed": table_network(PICKS_CHILD), "copy_of_a": table_network(PICKS_A)},
                                   ONE_HOT, UNCERTAINTY)
    expected = {"mixed": (0.75, 0.5, 0.5, 0.8, 2 / 3), "copy_of_a": (1.0, 0.25, 0.25, 0.4, 0.0)}
    for name, (agree_a, agree_b, primary, over_bound, gain) in expected.items():
        figures = table[name]
        assert (figures["agreement_a"], figures["agreement_b"], figures["primary"]) == (agree_a, agree_b, primary)
        assert figures["primary_over_bound"] == pytest.approx(over_bound)
        assert figures["gain_over_copy"] == pytest.approx(gain)
        for key in ("agreement_a", "agreement_b", "primary", "primary_over_bound", "gain_over_copy"):
            assert figures[f"{key}_ci"]["low"] <= figures[key] <= figures[f"{key}_ci"]["high"]


def test_operator_comparison_primary_is_the_smaller_agreement():
    """A copy of A agrees with A on 4/4 states and with B only where the parents agree (1/4): primary 1/4."""
    scoring = Scoring(table_network(PICKS_A), table_network(PICKS_B), ONE_HOT, torch.from_numpy(ONE_HOT), None,
                      RECOMB, SELECTION, UNCERTAINTY)
    rows, parents = raw_scores({"copy_of_a": table_network(PICKS_A), "mixed": table_network(PICKS_CHILD)}, scoring)
    assert parents == {"parents_agreement": 0.25, "bound": 0.625}
    assert (rows["copy_of_a"]["agreement_a"], rows["copy_of_a"]["agreement_b"]) == (1.0, 0.25)
    assert rows["copy_of_a"]["primary"] == 0.25
    assert rows["mixed"]["primary"] == 0.5
    assert rows["mixed"]["primary_over_bound"] == pytest.approx(0.5 / 0.625)


# ----------------------------------------------------------------------------- bootstrap intervals

RETURNS = np.random.default_rng(3).normal(200.0, 30.0, size=200)


def uncertainty(confidence: float = 0.95, seed: int = 0) -> UncertaintyConfig:
    return UncertaintyConfig.from_mapping({"confidence": confidence, "resamples": 2000, "seed": seed}, "uncertainty")


def test_an_interval_at_80_percent_is_narrower_than_at_95_and_nested_in_it():
    """For a mean of 200 normal draws the widths go as the normal quantiles: 1.28 / 1.96 ≈ 0.65."""
    at_80, at_95 = mean_interval(RETURNS, uncertainty(0.80)), mean_interval(RETURNS, uncertainty(0.95))
    assert at_95["low"] < at_80["low"] < at_80["mean"] < at_80["high"] < at_95["high"]
    ratio = (at_80["high"] - at_80["low"]) / (at_95["high"] - at_95["low"])
    assert 0.55 < ratio < 0.75


def test_the_bootstrap_is_seeded_same_seed_same_interval_other_seed_other_interval():
    first, again = mean_interval(RETURNS, uncertainty(seed=0)), mean_interval(RETURNS, uncertainty(seed=0))
    other = mean_interval(RETURNS, uncertainty(seed=1))
    assert (first["low"], first["high"]) == (again["low"], again["high"])
    assert (first["low"], first["high"]) != (other["low"], other["high"])


# ----------------------------------------------------------------------------- the gates' own settings

GATE_SETTINGS = [  # (section, dotted key, the lowest value allowed, a value just outside, the rule it breaks)
    *[(section, key, ok, bad, rule) for section in ("validate_distillation", "validate_quantized")
      for key, ok, bad, rule in (("top_k", 1, 0, "must be ≥ 1"), ("kl_temperature", 1e-9, 0.0, "must be > 0"),
                                 ("eval_episodes", 1, 0, "must be ≥ 1"), ("latency_repeats", 10, 9, "must be ≥ 10"))],
    ("validate_distillation", "robustness.noise_std", 0.0, -0.1, "must be ≥ 0"),
    ("validate_distillation", "robustness.scale_factor", 1e-9, 0.0, "must be > 0"),
    ("validate_quantized", "throughput_batch_size", 1, 0, "must be ≥ 1"),
    ("validate_quantized", "throughput_repeats", 1, 0, "must be ≥ 1"),
    ("validate_quantized", "batch_invariance_states", 2, 1, "must be ≥ 2"),
]


@pytest.mark.parametrize("section, key, ok, bad, rule", GATE_SETTINGS)
def test_a_gate_setting_accepts_its_bound_and_names_itself_just_past_it(section, key, ok, bad, rule):
    """A scoring budget or temperature at its bound is accepted; one step past it stops with the dotted key,
    the rule and the value: the line a user reads after a typo in params.yaml."""
    config = {"validate_distillation": ValidateDistillConfig, "validate_quantized": ValidateQuantizedConfig}[section]

    def with_value(value) -> dict:
        mapping = copy.deepcopy(PARAMS[section])
        *parents, last = key.split(".")
        node = mapping
        for part in parents:
            node = node[part]
        node[last] = value
        return mapping

    config.from_mapping(with_value(ok), f"params.yaml: {section}")
    with pytest.raises(RecombError) as error:
        config.from_mapping(with_value(bad), f"params.yaml: {section}")
    assert str(error.value) == f"params.yaml: {section}.{key}: {rule} (got {bad!r})"


# ----------------------------------------------------------------------------- the verdict a person reads

def test_pipeline_markdown_is_the_verdict_line_areas_gates_mismatches_headline_and_artifacts():
    """pipeline.md of a small failed run, written out by hand: the FAILED title, an area with a failed gate, an
    area without gates, every gate with its rule, the reports whose own flag disagrees, headline and artifacts."""
    report = {
        "passed": False,
        "distillation_passed": False,
        "search_passed": True,
        "gates": {"distillation.pairs.A.agreement": {"value": 0.75, "min": 0.8, "passed": False},
                  "distillation.pairs.B.kl": {"value": 0.01, "max": 0.5, "passed": True}},
        "flag_mismatches": ["distillation: passed is true, its gates say false"],
        "headline": {"recombination.child.primary": 0.81234},
        "artifacts": {"children": {"child": "data/children/finetuned/child.safetensors"}},
    }
    assert markdown(report) == "\n".join([
        "# Pipeline — FAILED",
        "",
        "Every quality gate of the hashed reports; `recomb check` exits 1 when one of them failed. "
        "Latency gates live in the timing report (`recomb timing`: `data/reports/latest/timing.json`): wall-clock "
        "figures depend on the machine and its load, so they are not hashed and do not gate CI.",
        "",
        "| area | gates | failed | passed |",
        "|---|---|---|---|",
        "| distillation | 2 | 1 | **NO** |",
        "| search | no gates | – | yes |",
        "",
        "## Gates",
        "",
        "| gate | value | rule | passed |",
        "|---|---|---|---|",
        "| distillation.pairs.A.agreement | 0.75 | >= 0.8 | **NO** |",
        "| distillation.pairs.B.kl | 0.01 | <= 0.5 | yes |",
        "",
        "Reports whose own `passed` disagrees with their gates (the gates decide):",
        "",
        "- distillation: passed is true, its gates say false",
        "",
        "## Headline",
        "",
        "| figure | value |",
        "|---|---|",
        "| recombination.child.primary | 0.8123 |",
        "",
        "## Artifacts",
        "",
        "| artifact | path |",
        "|---|---|",
        "| children: child | data/children/finetuned/child.safetensors |",
    ]) + "\n"
    passing = {**report, "passed": True, "distillation_passed": True, "flag_mismatches": []}
    assert markdown(passing).startswith("# Pipeline — PASSED\n")
    assert "Reports whose own" not in markdown(passing)
