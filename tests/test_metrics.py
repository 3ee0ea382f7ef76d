import math

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


def test_relative_mse_and_centered_cosine_see_through_a_common_offset():
    ref = torch.tensor([[100.0, 101.0], [100.0, 99.0]])
    flipped = torch.tensor([[101.0, 100.0], [99.0, 100.0]])
    fid = metrics.q_fidelity(ref, flipped)
    assert fid["cosine"] > 0.999  # raw cosine is fooled by the shared value
    assert abs(fid["centered_cosine"] + 1.0) < 1e-9  # advantages point the other way
    assert abs(fid["relative_mse"] - fid["mse"] / ref.double().var().item()) < 1e-12


def test_latency_figures_are_ordered():
    net = torch.nn.Linear(4, 2)
    lat = metrics.batch1_latency_ms({"a": net, "b": torch.nn.Identity()}, torch.randn(8, 4), repeats=30)
    assert set(lat) == {"a", "b"}
    assert 0 < lat["a"]["median_ms"] <= lat["a"]["p95_ms"]


def test_throughput_is_states_per_second():
    assert metrics.throughput(torch.nn.Linear(4, 2), torch.randn(8, 4), batch_size=64, repeats=3) > 64
