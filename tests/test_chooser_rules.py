"""What gets chosen, ranked and reported, pinned on small hand-made cases.

The choosing rule's edges (ties whose interval just touches 0, equal primaries told apart
by the return, adjacent episode ranges), the search's paired ties, the verdict's report
lines and files, the crossover's unit matching and slerp fallbacks, the paired interval,
and the latency warm-up.
"""

import numpy as np
import pytest
import torch

from recomb.errors import RecombError
from recomb.metrics import batch1_latency_ms
from recomb.selection import SelectionConfig, mark_ties, rank
from recomb.evaluation.verdict import check_lines, markdown, numbers_only, short_headline, verdict
from recomb.networks import seeded_qnetwork
from recomb.recombination import search
from recomb.recombination.alignment import permute, weight_matching as align_to
from recomb.recombination.crossover import CrossoverConfig, slerp
from recomb.recombination.search import GridPoint, Outcome, Recipe, Scoring, rank_outcomes, return_bar
from recomb.stats import mean_interval, primary_difference_interval
from recomb.training.finetune import regimes
from recomb.training.tasks import task
from test_crossover import ARCH, same, state
from test_search import run, search_config, setting
from test_selection import UNC, row
from test_verdict import fabricated_reports, gate, pipeline_report
from test_verdict_rules import ONE_HOT, PARAMS, RECOMB, SELECTION, UNCERTAINTY, report

# ----------------------------------------------------------------------------- selection: the edges of the rule


def test_a_difference_interval_that_just_touches_zero_is_a_tie():
    """The interval [0, 0.02] or [−0.02, 0] contains 0 (a bootstrap bound is exactly 0 when no resample
    drew a state the two children differ on): the data cannot tell the row from the leader."""
    rows = rank([row("lead", 0.75), row("low_edge", 0.74), row("high_edge", 0.73)], 475.0)
    bounds = {"low_edge": (0.0, 0.02), "high_edge": (-0.02, 0.0)}
    tied = {r["experiment"]: r["tied"] for r in mark_ties(rows, 475.0, lambda lead, r: bounds[r["experiment"]])}
    assert tied == {"lead": False, "low_edge": True, "high_edge": True}


def test_at_equal_primary_the_higher_validation_return_ranks_first_and_a_missing_one_last():
    """Names would order these the other way round: only the validation return puts them in this order."""
    above = [row("a_returns_480", 0.72, 480.0), row("b_returns_500", 0.72, 500.0)]
    assert [r["experiment"] for r in rank(above, 475.0)] == ["b_returns_500", "a_returns_480"]
    below = [row("a_not_played", 0.72, None), row("b_returns_100", 0.72, 100.0)]
    assert [r["experiment"] for r in rank(below, 475.0)] == ["b_returns_100", "a_not_played"]


def test_choosing_episodes_right_after_the_reported_ones_do_not_overlap():
    """Reported 20000..20099: choosing on 20100.. is disjoint; starting at 20099 shares one episode."""
    def cfg(eval_seed: int) -> SelectionConfig:
        return SelectionConfig.from_mapping({**PARAMS["selection"], "eval_episodes": 100, "eval_seed": eval_seed},
                                            "params.yaml: selection")
    cfg(20100).check_disjoint(20000, 100, "validate_recombination")
    cfg(19900).check_disjoint(20000, 100, "validate_recombination")
    with pytest.raises(RecombError, match=r"episodes 20099\.\.20198 overlap"):
        cfg(20099).check_disjoint(20000, 100, "validate_recombination")


# ----------------------------------------------------------------------------- search: paired ties, the bar


def test_search_ties_are_judged_on_paired_hits_not_on_each_childs_own_interval():
    """Of 400 validation states the leader matches both parents on 320 (primary 0.80), the runner-up on the
    same states but 16 (0.76). Its own interval reaches 0.81 ≥ 0.80 (tied by the unpaired rule), yet paired,
    every resample shows the leader ahead: not tied."""
    lead, runner = np.arange(400) < 320, np.arange(400) < 304
    points = [GridPoint("000_lead", Recipe("weighted", 0.5, 0), "tuned"),
              GridPoint("001_runner_up", Recipe("weighted", 0.3, 0), "short")]
    outcomes = {"000_lead": Outcome("000_lead", None, None, report(0.80, 500.0), (lead, lead)),
                "001_runner_up": Outcome("001_runner_up", None, None, report(0.76, 500.0), (runner, runner))}
    scoring = Scoring(None, None, ONE_HOT, torch.from_numpy(ONE_HOT), task("CartPole-v1"), RECOMB, SELECTION, UNCERTAINTY)
    base = CrossoverConfig.from_mapping(PARAMS["crossover"], "params.yaml: crossover")
    rows = rank_outcomes(points, outcomes, base, scoring, degenerate_threshold=0.0)
    assert [(r["experiment"], r["regime"], r["tied"]) for r in rows] == [
        ("000_lead", "tuned", False), ("001_runner_up", "short", False)]
    assert rows[1]["val_primary_high"] >= rows[0]["val_primary"]  # the unpaired rule would call it a tie


def test_the_return_bar_applies_only_with_an_environment():
    with_env = Scoring(None, None, ONE_HOT, torch.from_numpy(ONE_HOT), task("CartPole-v1"), RECOMB, SELECTION, UNCERTAINTY)
    without = Scoring(None, None, ONE_HOT, torch.from_numpy(ONE_HOT), None, RECOMB, SELECTION, UNCERTAINTY)
    assert return_bar(with_env) == 400.0
    assert return_bar(without) is None


def test_the_grid_runs_on_the_configured_number_of_worker_processes(monkeypatch):
    """`search.workers` sets how many processes share the grid; the per-process thread count is separate."""
    seen = []

    def recording_map(fn, jobs, workers, threads=1, start_method="spawn", preload=()):
        seen.append((workers, threads, preload))
        return [fn(job) for job in jobs]

    monkeypatch.setattr(search, "map_processes", recording_map)
    params, pair, scoring = setting()
    points = search.grid(search_config(preset="custom", modes=["weighted"], alphas=[0.5], seeds=[0],
                                       regimes=["short"]), regimes(params))
    run(points, params, pair, scoring, search_config(workers=3))
    assert seen == [(3, 1, ("scipy.stats",))]  # the jobs bootstrap: their workers inherit scipy.stats


# ----------------------------------------------------------------------------- the verdict: lines and files


def test_check_names_every_failed_area_in_its_summary_line():
    reports = fabricated_reports(agreement_a=0.5)
    reports["multigen"]["generations"][0]["checks"]["best_primary"] = gate(0.3, 0.5)
    passed, lines = check_lines(verdict(reports, {}), "pipeline.json")
    assert not passed
    assert lines[-1] == "pipeline FAILED: 2 of 8 gates failed (distillation, multigen)"


def test_the_area_table_counts_the_failed_gates():
    assert "| distillation | 4 | 1 | **NO** |" in markdown(pipeline_report(agreement_a=0.5))


def test_a_bare_number_where_a_gate_belongs_is_refused_in_one_line():
    reports = fabricated_reports()
    reports["recombination"]["checks"]["child_greedy_return"] = 500.0
    with pytest.raises(RecombError, match=r"^recombination\.checks\.child_greedy_return: not a gate"):
        verdict(reports, {})
    with pytest.raises(RecombError, match=r"^pipeline\.json: child: not a gate"):
        check_lines({"passed": True, "gates": {"child": 500.0}}, "pipeline.json")


def test_check_refuses_a_file_that_is_not_a_mapping_in_one_line():
    with pytest.raises(RecombError, match=r"^pipeline\.json: not a pipeline report"):
        check_lines(["passed", "gates"], "pipeline.json")


def test_only_a_reports_passed_key_is_its_flag_not_its_other_booleans():
    """A student report that also says `degenerate: false` still says passed true, as its gates do."""
    reports = fabricated_reports()
    reports["quantization"]["students"]["ptq_A"]["degenerate"] = False
    assert verdict(reports, {})["flag_mismatches"] == []


def test_pipeline_json_leaves_out_the_mismatch_prose():
    """The mismatch lines are prose for pipeline.md; pipeline.json keeps numbers and booleans only."""
    reports = fabricated_reports()
    reports["recombination"]["passed"] = False
    full = verdict(reports, {})
    assert full["flag_mismatches"]
    assert "flag_mismatches" not in numbers_only(full)


def test_the_short_headline_has_the_verdict_and_the_key_figures_under_short_names():
    assert short_headline(pipeline_report(agreement_a=0.5)) == {
        "passed": False, "child_pu": 0.97, "child_gain": 0.8, "child_ret": None, "child_cov": None, "base_cov": None,
        "stud_A": 0.5, "stud_B": 0.93, "int8_A": 0.99, "int8_B": None}


# ----------------------------------------------------------------------------- crossover: matching units, slerp


def test_alignment_tells_units_apart_by_their_biases_and_layernorm_parameters_too():
    """Every unit has the same weights; only its bias and LayerNorm gain and shift differ. A shuffled copy is
    matched back exactly: a unit is matched to the one whose parameters are most alike, not least."""
    gen = torch.Generator().manual_seed(0)
    net = seeded_qnetwork(ARCH, 3)
    with torch.no_grad():
        for key, value in net.state_dict().items():
            value.copy_(torch.full_like(value, 0.1) if key.endswith("weight") and key.split(".")[1] in ("0", "4", "8")
                        else torch.randn(value.shape, generator=gen))
    original = state(net)
    shuffled = permute(original, torch.randperm(32, generator=gen), torch.randperm(32, generator=gen))
    assert not same(shuffled, original)
    recovered, info = align_to(original, shuffled, 20)
    assert same(recovered, original) and info["converged"]


def test_slerp_falls_back_to_lerp_for_a_zero_vector_and_for_exactly_parallel_or_opposite_ones():
    """(1, 1, 1) against itself or its negative: the cosine rounds just past ±1 and must be clamped."""
    b = torch.tensor([2.0, -4.0])
    mixed, theta = slerp(torch.zeros(2), b, 0.25)
    assert theta == 0.0 and torch.equal(mixed, 0.25 * b)
    ones = torch.ones(3)
    mixed, theta = slerp(ones, ones, 0.3)
    assert theta == 0.0 and torch.allclose(mixed, ones)
    mixed, theta = slerp(ones, -ones, 0.25)
    assert theta == pytest.approx(np.pi) and torch.allclose(mixed, 0.5 * ones)  # 0.75·v − 0.25·v


# ----------------------------------------------------------------------------- intervals and timing


def test_the_paired_difference_of_children_one_state_apart_is_a_few_states_wide():
    """Paired, only the resampled copies of the one state they differ on move the difference: a few 1/800
    steps (under 0.01), far narrower than either child's own interval (about ±0.03 on 800 states)."""
    rng = np.random.default_rng(1)
    hits_a, hits_b = rng.random(800) < 0.78, rng.random(800) < 0.74
    one_more = hits_b.copy()
    one_more[np.flatnonzero(~one_more)[0]] = True
    low, high = primary_difference_interval((hits_a, one_more), (hits_a, hits_b), UNC)
    assert 0 <= low <= high < 0.01


def test_the_mean_of_float32_values_is_their_exact_average():
    """Returns handed over as float32 (e.g. straight from a tensor) are averaged in double precision."""
    values = np.float32([16777216.0, 1.0, 1.0])  # float32 sums 2**24 + 1 back to 2**24
    assert mean_interval(values, UNC)["mean"] == 16777218.0 / 3


def test_latency_times_the_repeats_after_twenty_untimed_warm_up_passes():
    """Each model runs 20 warm-up passes and then `repeats` timed ones, the models taking turns."""
    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x

    models = {"a": Counting(), "b": Counting()}
    stats = batch1_latency_ms(models, torch.zeros(3, 4), repeats=7)
    assert [m.calls for m in models.values()] == [27, 27]
    assert set(stats) == {"a", "b"} and all(s["median_ms"] >= 0 for s in stats.values())
