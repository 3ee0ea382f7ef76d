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
    # p = softmax([1, 2]) = (1, e)/(1 + e), r = softmax([2, 1]) = (e, 1)/(1 + e), so log(p/r) = (−1, +1) and
    # KL = (e − 1)/(e + 1) = tanh(1/2) = 0.4621171573
    assert metrics.kl_divergence(q, torch.tensor([[2.0, 1.0]])) == pytest.approx(0.4621171573, abs=1e-9)


def test_kl_is_reference_first():
    """Documented: KL(softmax(ref) ‖ softmax(other)); the two directions differ on this pair."""
    uniform = torch.tensor([[0.0, 0.0]])          # p = (1/2, 1/2)
    skewed = torch.tensor([[math.log(3.0), 0.0]])  # q = (3/4, 1/4), up to float32 rounding of ln 3 (hence abs=1e-7)
    # KL(p‖q) = ½·ln(½ / ¾) + ½·ln(½ / ¼) = ½·ln(4/3) = 0.1438410362
    assert metrics.kl_divergence(uniform, skewed) == pytest.approx(0.1438410362, abs=1e-7)
    # KL(q‖p) = ¾·ln(¾ / ½) + ¼·ln(¼ / ½) = ¾·ln 1.5 − ¼·ln 2 = 0.1308120359
    assert metrics.kl_divergence(skewed, uniform) == pytest.approx(0.1308120359, abs=1e-7)
    # the temperature divides Q first: at T = 2, [2·ln 3, 0] is q again
    assert metrics.kl_divergence(uniform, 2 * skewed, temperature=2.0) == pytest.approx(0.1438410362, abs=1e-7)
    assert metrics.compare(uniform, skewed, top_k=1)["kl_divergence"] == pytest.approx(0.1438410362, abs=1e-7)


def test_advantage_measures_see_through_a_common_offset():
    ref = torch.tensor([[100.0, 101.0], [100.0, 99.0]])
    flipped = torch.tensor([[101.0, 100.0], [99.0, 100.0]])
    fid = metrics.q_fidelity(ref, flipped)
    assert fid["cosine"] > 0.999  # raw cosine is fooled by the shared value
    assert abs(fid["centered_cosine"] + 1.0) < 1e-9  # advantages point the other way
    assert fid["advantage_relative_mse"] == 4.0  # advantages ±0.5 → ∓0.5: error² 1 over variance 0.25
    assert fid["advantage_correlation"] == pytest.approx(-1.0)
    # every entry is off by 1: MSE 1, MAE 1; ref's entries 100, 101, 100, 99 have (n − 1) variance 2/3
    assert fid["mse"] == 1.0 and fid["mae"] == 1.0
    assert fid["relative_mse"] == pytest.approx(1.5, abs=1e-12)


def test_advantage_error_is_infinite_against_a_reference_without_action_preferences():
    flat = metrics.q_fidelity(torch.full((3, 2), 100.0), torch.randn(3, 2))
    assert flat["advantage_relative_mse"] == math.inf and flat["advantage_correlation"] == 0.0


def test_advantage_correlation_ignores_the_size_of_the_gaps_but_not_their_pattern():
    q = torch.tensor([[100.0, 100.2], [90.0, 89.0], [80.0, 80.5]])
    wider = q.mean(-1, keepdim=True) + 3 * (q - q.mean(-1, keepdim=True)) + 7.0
    assert metrics.q_fidelity(q, wider)["advantage_correlation"] == pytest.approx(1.0)
    shuffled = q.mean(-1, keepdim=True) + (q - q.mean(-1, keepdim=True))[[1, 2, 0]]
    assert metrics.q_fidelity(q, shuffled)["advantage_correlation"] < 0.5


class FakeClock:
    """Stands in for `time` in recomb.metrics: `perf_counter` reads a virtual clock that only
    the fake models below advance, so each timed forward takes exactly the scripted time."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


class ScriptedModel:
    """A 'model' whose n-th call takes durations[n] seconds on the clock; records its inputs."""

    def __init__(self, clock: FakeClock, durations: list[float]):
        self.clock, self.durations, self.inputs = clock, list(durations), []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        self.clock.now += self.durations[len(self.inputs) - 1]
        return x


def test_latency_statistics_of_scripted_forward_times(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(metrics, "time", clock)
    warmup = [5.0, 5.0, 5.0]  # seconds: warm-up calls must not be counted
    # model a: 1..29 ms in scrambled order, and one 1000 ms outlier
    a_ms = [(7 * k) % 29 + 1 for k in range(29)] + [1000]
    a_ms[3], a_ms[29] = a_ms[29], a_ms[3]
    assert sorted(a_ms) == list(range(1, 30)) + [1000]
    a = ScriptedModel(clock, warmup + [t / 1e3 for t in a_ms])
    b = ScriptedModel(clock, warmup + [0.002] * 30)  # a steady 2 ms
    states = torch.arange(12.0).reshape(3, 4)
    lat = metrics.batch1_latency_ms({"a": a, "b": b}, states, repeats=30, warmup=3)
    # a, sorted: 1, 2, …, 29, 1000. Median of 30 values = mean of the 15th and 16th = (15 + 16)/2 = 15.5;
    # mean = (1 + … + 29 + 1000)/30 = (435 + 1000)/30 = 47.8333…; p95 = the 29th smallest (nearest rank ⌈0.95·30⌉ = 29) = 29:
    # the single outlier is above the 95th percentile.
    assert lat["a"] == pytest.approx({"median_ms": 15.5, "mean_ms": 1435 / 30, "p95_ms": 29.0}, rel=1e-9)
    # b is timed alone even though the models take turns: none of a's time leaks into it
    assert lat["b"] == pytest.approx({"median_ms": 2.0, "mean_ms": 2.0, "p95_ms": 2.0}, rel=1e-9)
    # every forward is batch 1, cycling through the states: 33 rows = 0, 1, 2, 0, 1, 2, …
    assert len(a.inputs) == len(b.inputs) == 33
    for i, (xa, xb) in enumerate(zip(a.inputs, b.inputs)):
        assert torch.equal(xa, states[i % 3].unsqueeze(0)) and torch.equal(xb, xa)


def test_p95_is_the_nearest_rank_when_95_percent_is_a_whole_rank(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(metrics, "time", clock)
    model = ScriptedModel(clock, [1.0] + [k / 1e3 for k in range(1, 21)])  # 1..20 ms after one warm-up
    lat = metrics.batch1_latency_ms({"m": model}, torch.zeros(1, 4), repeats=20, warmup=1)
    assert lat["m"]["p95_ms"] == pytest.approx(19.0)  # ⌈0.95·20⌉ = 19th smallest, not the slowest (20)


def test_throughput_is_batch_size_over_the_median_pass(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(metrics, "time", clock)
    # one untimed warm-up pass (10 s), then passes of 0.5 s, 0.1 s, 0.2 s, 0.4 s, 3.0 s
    model = ScriptedModel(clock, [10.0, 0.5, 0.1, 0.2, 0.4, 3.0])
    states = torch.arange(12.0).reshape(3, 4)
    # median of (0.5, 0.1, 0.2, 0.4, 3.0) = 0.4 s, so 10 states / 0.4 s = 25 states per second
    assert metrics.throughput(model, states, batch_size=10, repeats=5) == pytest.approx(25.0, rel=1e-9)
    assert len(model.inputs) == 6
    # a batch of 10 cycles through the 3 states: rows 0, 1, 2, 0, 1, 2, 0, 1, 2, 0
    assert torch.equal(model.inputs[0], states[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]])

