import math

import pytest
import torch

from recomb import metrics


def test_agreement_and_topk():
    ref = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    other = torch.tensor([[0.9, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert metrics.action_agreement(ref, other) == 0.5
    assert metrics.topk_agreement(ref, other, 2) == 1.0


def test_kl_is_zero_for_identical_and_matches_hand_computation():
    q = torch.tensor([[1.0, 2.0]])
    assert metrics.kl_divergence(q, q) == 0.0
    p = torch.softmax(q, -1)[0]
    r = torch.softmax(torch.tensor([2.0, 1.0]), -1)
    expected = sum(p[i] * math.log(p[i] / r[i]) for i in range(2))
    assert abs(metrics.kl_divergence(q, torch.tensor([[2.0, 1.0]])) - expected.item()) < 1e-6


def test_advantage_measures_see_through_a_common_offset():
    ref = torch.tensor([[100.0, 101.0], [100.0, 99.0]])
    flipped = torch.tensor([[101.0, 100.0], [99.0, 100.0]])
    fid = metrics.q_fidelity(ref, flipped)
    assert fid["cosine"] > 0.999  # raw cosine is fooled by the shared value
    assert abs(fid["centered_cosine"] + 1.0) < 1e-9  # advantages point the other way
    assert fid["advantage_relative_mse"] == 4.0  # advantages ±0.5 → ∓0.5: error² 1 over variance 0.25
    assert fid["advantage_correlation"] == pytest.approx(-1.0)
    assert abs(fid["relative_mse"] - fid["mse"] / ref.double().var().item()) < 1e-12


def test_advantage_error_is_infinite_against_a_reference_without_action_preferences():
    flat = metrics.q_fidelity(torch.full((3, 2), 100.0), torch.randn(3, 2))
    assert flat["advantage_relative_mse"] == math.inf and flat["advantage_correlation"] == 0.0


def test_advantage_correlation_ignores_the_size_of_the_gaps_but_not_their_pattern():
    q = torch.tensor([[100.0, 100.2], [90.0, 89.0], [80.0, 80.5]])
    wider = q.mean(-1, keepdim=True) + 3 * (q - q.mean(-1, keepdim=True)) + 7.0
    assert metrics.q_fidelity(q, wider)["advantage_correlation"] == pytest.approx(1.0)
    shuffled = q.mean(-1, keepdim=True) + (q - q.mean(-1, keepdim=True))[[1, 2, 0]]
    assert metrics.q_fidelity(q, shuffled)["advantage_correlation"] < 0.5


def test_latency_figures_are_ordered():
    net = torch.nn.Linear(4, 2)
    lat = metrics.batch1_latency_ms({"a": net, "b": torch.nn.Identity()}, torch.randn(8, 4), repeats=30)
    assert set(lat) == {"a", "b"}
    assert 0 < lat["a"]["median_ms"] <= lat["a"]["p95_ms"]


def test_throughput_is_states_per_second():
    assert metrics.throughput(torch.nn.Linear(4, 2), torch.randn(8, 4), batch_size=64, repeats=3) > 64
