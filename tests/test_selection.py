"""The one choosing rule (validation states, choosing episodes) and the intervals that call ties."""

import numpy as np
import pytest
import torch

from recomb.config import load_params
from stages.common import with_task_values
from recomb.errors import RecombError
from recomb.selection import SelectionConfig, epoch_key, mark_ties, rank, split, split_indices
from recomb.stats import (UncertaintyConfig, agreement_intervals, mean_interval, primary_difference_interval,
                          primary_interval, primary_over_bound_interval)
from scratch import ROOT

PARAMS = with_task_values(load_params(ROOT / "params.yaml"))
UNC = UncertaintyConfig.from_params(PARAMS, "uncertainty")


def row(name: str, val_primary: float, val_return: float | None = 500.0, high: float | None = None) -> dict:
    return {"experiment": name, "val_primary": val_primary, "val_return": val_return,
            "val_primary_low": val_primary - 0.01, "val_primary_high": val_primary + 0.01 if high is None else high}


def test_a_child_that_acts_ranks_above_one_that_agrees_more_but_drops_the_pole():
    rows = [row("agrees", 0.80, 159.0), row("acts", 0.72, 500.0), row("acts_less", 0.72, 480.0)]
    assert [r["experiment"] for r in rank(rows, 475.0)] == ["acts", "acts_less", "agrees"]
    assert [r["experiment"] for r in rank(rows, None)] == ["agrees", "acts", "acts_less"]
    no_env = [row("b", 0.7, None), row("a", 0.7, None), row("c", 0.9, None)]
    assert [(r["experiment"], r["rank"]) for r in rank(no_env, 475.0)] == [("c", 1), ("a", 2), ("b", 3)]


def test_ties_paired_unpaired_and_never_across_the_return_bar():
    rows = rank([row("lead", 0.75), row("close", 0.74, high=0.76), row("far", 0.60, high=0.65),
                 row("fails", 0.749, 100.0, high=0.80)], 475.0)
    unpaired = {r["experiment"]: r["tied"] for r in mark_ties(rows, 475.0)}
    assert unpaired == {"lead": False, "close": True, "far": False, "fails": False}
    calls = []

    def difference(leader, other):
        calls.append((leader["experiment"], other["experiment"]))
        return (0.02, 0.2) if other["experiment"] == "close" else (-0.1, 0.3)

    paired = {r["experiment"]: r["tied"] for r in mark_ties(rows, 475.0, difference)}
    assert paired == {"lead": False, "close": False, "far": True, "fails": False}
    assert ("lead", "close") in calls


def test_the_epoch_rule_prefers_primary_then_loss_and_agreement_with_a_alone_in_mode_a():
    early = {"val_primary": 0.70, "val_agreement_a": 0.95, "val_loss": 0.1}
    late = {"val_primary": 0.75, "val_agreement_a": 0.80, "val_loss": 0.5}
    same = {"val_primary": 0.75, "val_agreement_a": 0.80, "val_loss": 0.4}
    assert max([early, late, same], key=lambda r: epoch_key(r, "balanced")) is same
    assert max([early, late, same], key=lambda r: epoch_key(r, "a")) is early


def test_the_split_is_seeded_disjoint_and_covers_the_train_states():
    states = torch.arange(100, dtype=torch.float32).unsqueeze(1)
    cfg = SelectionConfig.from_params(PARAMS, "selection")
    train, val = split(states, cfg)
    assert len(val) == 10 and len(train) == 90
    assert sorted(torch.cat([train, val]).squeeze(1).tolist()) == list(range(100))
    again_train, again_val = split(states, cfg)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)


def test_choosing_episodes_must_not_overlap_the_reported_ones():
    cfg = SelectionConfig.from_mapping({**PARAMS["selection"], "eval_seed": 20050}, "params.yaml: selection")
    with pytest.raises(RecombError) as err:
        cfg.check_disjoint(20000, 100, "validate_recombination")
    assert str(err.value) == ("params.yaml: selection.eval_seed: episodes 20050..20149 overlap the reported ones of "
                              "validate_recombination (20000..20099) (got 20050)")
    cfg.check_disjoint(20150, 100, "validate_recombination")


def test_intervals_cover_the_truth_shrink_with_more_states_and_constant_data_is_a_point():
    rng = np.random.default_rng(0)
    small, large = rng.random(200) < 0.8, rng.random(5000) < 0.8
    narrow, wide = mean_interval(large, UNC), mean_interval(small, UNC)
    for hits, found in ((large, narrow), (small, wide)):
        p = hits.mean()
        normal_width = 2 * 1.96 * np.sqrt(p * (1 - p) / len(hits))  # the textbook interval of a proportion
        assert found["low"] < p < found["high"]
        assert found["high"] - found["low"] == pytest.approx(normal_width, rel=0.15)
    assert narrow["high"] - narrow["low"] < 0.5 * (wide["high"] - wide["low"])
    assert mean_interval(np.full(100, 500.0), UNC) == {"mean": 500.0, "std": 0.0, "low": 500.0, "high": 500.0}
    assert mean_interval(small, UNC) == wide  # seeded: the same inputs, the same interval


def test_primary_intervals_and_the_paired_difference():
    rng = np.random.default_rng(1)
    hits_a, hits_b, agree = rng.random(800) < 0.78, rng.random(800) < 0.74, rng.random(800) < 0.6
    primary = primary_interval(hits_a, hits_b, UNC)
    assert primary["value"] == pytest.approx(min(hits_a.mean(), hits_b.mean()))
    assert primary["low"] <= primary["value"] <= primary["high"]
    over = primary_over_bound_interval(hits_a, hits_b, agree, UNC)
    a = agree.mean()
    assert over["value"] == pytest.approx(primary["value"] / (a + (1 - a) / 2))
    one_state = hits_b.copy()
    one_state[np.flatnonzero(~one_state)[0]] = True  # one more state matched: a one-state margin
    low, high = primary_difference_interval((hits_a, one_state), (hits_a, hits_b), UNC)
    assert low <= 0 <= high
    much_better = np.ones(800, dtype=bool)
    low, high = primary_difference_interval((much_better, much_better), (hits_a, hits_b), UNC)
    assert low > 0.2


def test_gain_over_copy_is_zero_for_a_copy_of_either_parent_and_one_at_the_bound():
    """Ten states, the parents agree on the first six (a = 0.6, U = 0.8), disagree on the last four."""
    agree = np.array([True] * 6 + [False] * 4)
    copy_a = (np.ones(10, bool), agree)  # a copy of A agrees with B only where A does
    copy_b = (agree, np.ones(10, bool))
    split = (agree | (np.arange(10) < 8), agree | (np.arange(10) >= 8))  # 2 disagreements each: primary 0.8 = U
    half = (agree | (np.arange(10) < 9), agree | (np.arange(10) >= 9))  # B on one disagreement only: primary 0.7
    gains = [agreement_intervals(*hits, agree, UNC)["gain_over_copy"]["value"] for hits in (copy_a, copy_b, split, half)]
    assert gains == pytest.approx([0.0, 0.0, 1.0, 0.5])
    nowhere = agreement_intervals(np.zeros(10, bool), np.zeros(10, bool), agree, UNC)["gain_over_copy"]
    assert nowhere["value"] == pytest.approx(-3.0)  # (0 − 0.6) / 0.2: worse than copying
    same = agreement_intervals(np.ones(10, bool), np.ones(10, bool), np.ones(10, bool), UNC)["gain_over_copy"]
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0}  # identical parents leave no gain to make


def test_the_validation_split_keeps_at_least_one_state_on_each_side():
    assert [len(part) for part in split_indices(10, 0.01, 0)] == [9, 1]  # rounds to none: one all the same
    assert [len(part) for part in split_indices(3, 0.99, 0)] == [2 - 1, 2]  # rounds to all: one stays to train on
    assert [len(part) for part in split_indices(2, 0.5, 0)] == [1, 1]
    train, val = split_indices(100, 0.1, 3)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100)) and len(val) == 10


def test_selection_is_validated_with_the_reported_episodes_it_must_not_overlap():
    """`SelectionConfig.validate` (the params stage's rule): the section, and choosing episodes disjoint from
    validate_recombination's; that section's own rules judge its values when they are not integers."""
    assert SelectionConfig.validate(PARAMS) == SelectionConfig.from_params(PARAMS, "selection")
    reported = PARAMS["validate_recombination"]
    overlapping = {**PARAMS, "selection": {**PARAMS["selection"], "eval_seed": reported["eval_seed"]}}
    with pytest.raises(RecombError, match=r"^params\.yaml: selection\.eval_seed: episodes .* overlap"):
        SelectionConfig.validate(overlapping)
    for odd in ({**reported, "eval_seed": "x"}, {**reported, "eval_episodes": True}, None):
        SelectionConfig.validate({**overlapping, "validate_recombination": odd})  # not judged here
    with pytest.raises(RecombError, match=r"^params\.yaml: selection\.val_fraction: must be in \(0, 1\)"):
        SelectionConfig.validate({**PARAMS, "selection": {**PARAMS["selection"], "val_fraction": 1.5}})
