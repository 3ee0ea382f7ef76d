import math
import typing

import pytest
import torch

from recomb.recombination.alignment import permute, weight_matching as align_to
from recomb.recombination.crossover import OPERATORS, Context, CrossoverConfig, crossover, slerp
from recomb.errors import RecombError
from recomb.networks import PARAM_KEYS, Architecture, QNetwork, seeded_qnetwork

ARCH = Architecture(8, 4, 32, 0.0)
STATES = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))


def parent(seed: int) -> QNetwork:
    """A seeded network whose biases and LayerNorm parameters are random too, so every tensor differs between parents."""
    net = seeded_qnetwork(ARCH, seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for key, value in net.state_dict().items():
            if not (key.endswith("weight") and key.split(".")[1] in ("0", "4", "8")):
                value.add_(0.3 * torch.randn(value.shape, generator=gen))
    return net.eval()


def cfg(mode: str, alpha: float = 0.5, seed: int = 0, passes: int = 20, matching: str = "weights",
        repair: bool = False) -> CrossoverConfig:
    return CrossoverConfig(parents="students", mode=mode, alpha=alpha, seed=seed, align_max_passes=passes,
                           matching=matching, repair=repair)


def combine(mode: str, a: dict, b: dict, config: CrossoverConfig, info: dict) -> dict:
    """One operator's child state dict, called as `crossover` calls it."""
    return OPERATORS[mode].combine(a, b, Context(config, ARCH, STATES), info)


def state(net: QNetwork) -> dict[str, torch.Tensor]:
    return net.state_dict()


def same(x: dict, y: dict) -> bool:
    return list(x) == list(y) and all(torch.equal(x[key], y[key]) for key in x)


def max_diff(x: QNetwork, y: QNetwork) -> float:
    with torch.no_grad():
        return (x(STATES) - y(STATES)).abs().max().item()


A, B = parent(1), parent(2)


MODES = typing.get_args(typing.get_type_hints(CrossoverConfig)["mode"])


def from_one_parent(child: dict, info: dict) -> None:
    """Every tensor is a whole copy of the parent `info["sources"]` names for it."""
    for key in PARAM_KEYS:
        assert torch.equal(child[key], state({"a": A, "b": B}[info["sources"][key]])[key])


def promise_random(child: dict, info: dict, alpha: float) -> None:
    from_one_parent(child, info)
    # "from A with probability alpha": over 200 seeds × 10 tensors the share from A is alpha ± 4 standard errors
    picks = [combine("random", state(A), state(B), cfg("random", alpha, seed=s), record := {}) and record["sources"]
             for s in range(200)]
    share = sum(v == "a" for sources in picks for v in sources.values()) / (200 * len(PARAM_KEYS))
    assert abs(share - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / 2000)


def promise_layer(child: dict, info: dict, alpha: float) -> None:
    from_one_parent(child, info)
    # blocks alternate A, B, A whatever alpha is, and a LayerNorm goes with its Linear
    assert [info["sources"][f"network.{i}.weight"] for i in (0, 1, 4, 5, 8)] == ["a", "a", "b", "b", "a"]
    assert all(info["sources"][k.replace("weight", "bias")] == info["sources"][k] for k in PARAM_KEYS)


def between(child: dict, x: dict, y: dict, alpha: float) -> None:
    """Every entry lies on the segment from y to x, at the fraction alpha of the way to x."""
    for key in PARAM_KEYS:
        lo, hi = torch.minimum(x[key], y[key]), torch.maximum(x[key], y[key])
        assert ((child[key] >= lo - 1e-6) & (child[key] <= hi + 1e-6)).all()
        assert torch.allclose(child[key] - y[key], alpha * (x[key] - y[key]), rtol=1e-5, atol=1e-6)


def promise_weighted(child: dict, info: dict, alpha: float) -> None:
    between(child, state(A), state(B), alpha)


def promise_aligned(child: dict, info: dict, alpha: float) -> None:
    # the weighted blend of A and a hidden-unit permutation of B that still computes B ...
    perm_1, perm_2 = (torch.tensor(info["alignment"][k]) for k in ("perm_1", "perm_2"))
    assert sorted(perm_1.tolist()) == sorted(perm_2.tolist()) == list(range(ARCH.hidden))
    b_aligned = permute(state(B), perm_1, perm_2)
    net = QNetwork(ARCH).eval()
    net.load_state_dict(b_aligned)
    assert max_diff(net, B) <= 1e-5
    between(child, state(A), b_aligned, alpha)
    # ... and not the blend with B as it is
    assert not torch.allclose(child["network.0.weight"], alpha * state(A)["network.0.weight"]
                              + (1 - alpha) * state(B)["network.0.weight"])


def angle(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    return math.acos(max(-1.0, min(1.0, (x @ y / (x.norm() * y.norm())).item())))


def promise_slerp(child: dict, info: dict, alpha: float) -> None:
    for key in PARAM_KEYS:
        a, b, c = state(A)[key], state(B)[key], child[key]
        theta = angle(a, b)
        assert info["angles"][key] == pytest.approx(theta, abs=1e-6) and theta > 0.1
        # a positive mix of A and B: within the angle between them
        assert angle(a, c) + angle(c, b) == pytest.approx(theta, abs=1e-4)
    # for tensors of equal norm it is the great-circle arc: (1 − alpha)·θ from A, alpha·θ from B, norm kept
    b_scaled = {key: state(B)[key] * state(A)[key].norm() / state(B)[key].norm() for key in PARAM_KEYS}
    on_arc = combine("slerp", state(A), b_scaled, cfg("slerp", alpha), {})
    for key in PARAM_KEYS:
        a, b, c = state(A)[key], b_scaled[key], on_arc[key]
        theta = angle(a, b)
        assert angle(a, c) == pytest.approx((1 - alpha) * theta, abs=1e-4)
        assert angle(c, b) == pytest.approx(alpha * theta, abs=1e-4)
        assert c.norm().item() == pytest.approx(a.norm().item(), rel=1e-5)


PROMISES = {"random": promise_random, "layer": promise_layer, "weighted": promise_weighted,
            "aligned": promise_aligned, "slerp": promise_slerp}


@pytest.mark.parametrize("mode", MODES)
def test_every_configurable_mode_has_an_operator_that_keeps_its_promise(mode):
    assert set(OPERATORS) == set(MODES)  # no mode the config accepts lacks an operator, and no dead operator
    child, info = crossover(A, B, cfg(mode, 0.3, seed=1))
    assert info["mode"] == mode and not child.training
    PROMISES[mode](state(child), info, 0.3)


def tiny(pattern: str) -> dict[str, torch.Tensor]:
    """Hand-made states of Architecture(1, 1, 2, 0): every tensor of `e0` is (1, 0, 0, …), of `e1` (0, 1, 0, …);
    the one-entry output bias is 1 in `e0`, 3 in `e1`."""
    out = {}
    for key, shape in Architecture(1, 1, 2, 0.0).shapes().items():
        flat = torch.zeros(math.prod(shape))
        flat[0 if pattern == "e0" or flat.numel() == 1 else 1] = 1.0
        out[key] = flat.reshape(shape)
    out["network.8.bias"] = torch.tensor([1.0 if pattern == "e0" else 3.0])
    return out


def test_weighted_and_slerp_on_hand_made_parents():
    a, b = tiny("e0"), tiny("e1")
    info: dict = {}
    weighted = combine("weighted", a, b, cfg("weighted", 0.25), info)
    slerped = combine("slerp", a, b, cfg("slerp", 0.25), info)
    for key in PARAM_KEYS:
        if key == "network.8.bias":
            continue
        rest = [0.0] * (a[key].numel() - 2)
        # 0.25·(1, 0) + 0.75·(0, 1) = (0.25, 0.75)
        assert weighted[key].flatten().tolist() == [0.25, 0.75, *rest]
        # orthogonal unit vectors, θ = π/2, 1 − alpha = 0.75 of the way to B:
        # sin(0.25·π/2)/sin(π/2) = sin(π/8) = 0.3826834, sin(0.75·π/2) = sin(3π/8) = 0.9238795
        assert torch.allclose(slerped[key].flatten(), torch.tensor([0.3826834, 0.9238795, *rest]), atol=1e-7)
        assert info["angles"][key] == pytest.approx(math.pi / 2)
    # the output bias: 1 and 3 are parallel (θ = 0), so both fall back to the line: 0.25·1 + 0.75·3 = 2.5
    assert weighted["network.8.bias"].item() == 2.5 and slerped["network.8.bias"].item() == 2.5
    assert info["angles"]["network.8.bias"] == 0.0


def test_aligned_crossover_of_a_unit_swapped_copy_is_the_copy():
    arch = Architecture(1, 1, 2, 0.0)
    a = {"network.0.weight": torch.tensor([[1.0], [-2.0]]), "network.0.bias": torch.tensor([0.5, -0.5]),
         "network.1.weight": torch.tensor([1.0, 2.0]), "network.1.bias": torch.tensor([0.1, -0.1]),
         "network.4.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "network.4.bias": torch.tensor([0.3, -0.3]),
         "network.5.weight": torch.tensor([1.5, 0.5]), "network.5.bias": torch.tensor([0.2, 0.0]),
         "network.8.weight": torch.tensor([[1.0, -1.0]]), "network.8.bias": torch.tensor([0.7])}
    # B: A's two first-layer units in the other order (rows of 0.* and 1.*, columns of 4.weight), by hand
    b = {**a, "network.0.weight": torch.tensor([[-2.0], [1.0]]), "network.0.bias": torch.tensor([-0.5, 0.5]),
         "network.1.weight": torch.tensor([2.0, 1.0]), "network.1.bias": torch.tensor([-0.1, 0.1]),
         "network.4.weight": torch.tensor([[2.0, 1.0], [4.0, 3.0]])}
    net_a, net_b = QNetwork(arch).eval(), QNetwork(arch).eval()
    net_a.load_state_dict(a)
    net_b.load_state_dict(b)
    x = torch.linspace(-3, 3, 13).unsqueeze(1)
    with torch.no_grad():
        assert torch.allclose(net_b(x), net_a(x), atol=1e-6)  # the swap keeps the function
    child, info = crossover(net_a, net_b, cfg("aligned", 0.25))
    assert info["alignment"] == {"perm_1": [1, 0], "perm_2": [0, 1], "passes": 2, "converged": True}
    assert same(state(child), a)
    # without alignment, the units blend: 0.25·1 + 0.75·(−2) = −1.25 and 0.25·(−2) + 0.75·1 = 0.25
    blended, _ = crossover(net_a, net_b, cfg("weighted", 0.25))
    assert state(blended)["network.0.weight"].flatten().tolist() == [-1.25, 0.25]


@pytest.mark.parametrize("mode", ["random", "weighted", "slerp"])
def test_alpha_endpoints_return_the_parents_exactly(mode):
    child, _ = crossover(A, B, cfg(mode, 1.0))
    assert same(state(child), state(A))
    child, _ = crossover(A, B, cfg(mode, 0.0))
    assert same(state(child), state(B))
    assert not child.training


def test_aligned_endpoints():
    child, _ = crossover(A, B, cfg("aligned", 1.0))
    assert same(state(child), state(A))
    child, info = crossover(A, B, cfg("aligned", 0.0))
    assert max_diff(child, B) <= 1e-5
    assert info["alignment"]["converged"]


def test_permuted_b_computes_b_and_alignment_moves_units():
    aligned, info = align_to(state(A), state(B), 20)
    net = QNetwork(ARCH).eval()
    net.load_state_dict(aligned)
    assert max_diff(net, B) <= 1e-5
    assert info["perm_1"] != list(range(32)) and info["perm_2"] != list(range(32))
    assert sorted(info["perm_1"]) == list(range(32)) and sorted(info["perm_2"]) == list(range(32))


def test_converged_alignment_is_a_fixed_point_and_the_pass_cap_is_reported():
    aligned, info = align_to(state(A), state(B), 20)
    assert info["converged"] and info["passes"] < 20
    # converged means no assignment step would move a unit: aligning the result again keeps it as it is
    again, info_again = align_to(state(A), aligned, 20)
    assert info_again == {"perm_1": list(range(32)), "perm_2": list(range(32)), "passes": 1, "converged": True}
    assert same(again, aligned)
    # the last pass only confirms: capped just before it, the units are already in place but it is not reported
    # as converged; capped earlier, the alignment is not reached (these parents need several passes)
    assert info["passes"] >= 3
    capped, capped_info = align_to(state(A), state(B), info["passes"] - 1)
    assert capped_info["passes"] == info["passes"] - 1 and not capped_info["converged"] and same(capped, aligned)
    capped, capped_info = align_to(state(A), state(B), 1)
    assert capped_info["passes"] == 1 and not capped_info["converged"] and not same(capped, aligned)


def test_alignment_recovers_a_permuted_copy_exactly():
    gen = torch.Generator().manual_seed(5)
    shuffled = permute(state(A), torch.randperm(32, generator=gen), torch.randperm(32, generator=gen))
    assert not same(shuffled, state(A))
    recovered, info = align_to(state(A), shuffled, 20)
    assert same(recovered, state(A)) and info["converged"]


def test_layer_keeps_blocks_whole_and_alternates_parents():
    child, info = crossover(A, B, cfg("layer", 0.9))
    blocks = {"0": "a", "1": "a", "4": "b", "5": "b", "8": "a"}
    for key in PARAM_KEYS:
        source = blocks[key.split(".")[1]]
        assert info["sources"][key] == source
        assert torch.equal(state(child)[key], state(A if source == "a" else B)[key])


def test_seed_fixes_random():
    first, info = crossover(A, B, cfg("random", 0.5, seed=3))
    again, _ = crossover(A, B, cfg("random", 0.5, seed=3))
    assert same(state(first), state(again))
    for key in PARAM_KEYS:
        assert torch.equal(state(first)[key], state(A if info["sources"][key] == "a" else B)[key])
    others = [crossover(A, B, cfg("random", 0.5, seed=s))[0] for s in range(4, 9)]
    assert any(not same(state(first), state(o)) for o in others)


def test_slerp_of_parallel_vectors_is_lerp_and_keeps_norm_between_orthogonal():
    a = torch.tensor([1.0, 2.0, 3.0])
    mixed, theta = slerp(a, 2 * a, 0.25)
    assert theta < 1e-4 and torch.allclose(mixed, torch.tensor([1.25, 2.5, 3.75]))  # 0.75·a + 0.25·2a = 1.25·a
    mid, theta = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.5)
    assert theta == pytest.approx(torch.pi / 2)
    assert torch.allclose(mid, torch.tensor([0.5 ** 0.5, 0.5 ** 0.5]))


def test_config_rejects_alpha_outside_unit_interval():
    data = {"parents": "students", "mode": "aligned", "alpha": 1.5, "seed": 0, "align_max_passes": 10,
            "matching": "weights", "repair": False}
    with pytest.raises(RecombError) as err:
        CrossoverConfig.from_mapping(data, "params.yaml: crossover")
    assert str(err.value) == "params.yaml: crossover.alpha: must be in [0, 1] (got 1.5)"


@pytest.mark.parametrize("mode", ["random", "layer", "weighted", "aligned", "slerp"])
def test_every_operator_crosses_the_plain_family_into_the_plain_family(mode):
    """No LayerNorm tensors to cross (SB3's and CleanRL's MLP): every operator keeps the child's keys, and
    alignment still recovers a permuted copy (a plain network's hidden units permute as freely)."""
    plain = Architecture(ARCH.input_dim, ARCH.output_dim, 16, 0.0, layer_norm=False)
    a, b = seeded_qnetwork(plain, 1), seeded_qnetwork(plain, 2)
    child, _ = crossover(a, b, cfg(mode, 0.5))
    assert child.arch == plain and list(state(child)) == list(plain.param_keys())
    gen = torch.Generator().manual_seed(3)
    shuffled = permute(state(a), torch.randperm(16, generator=gen), torch.randperm(16, generator=gen))
    copy = QNetwork(plain).eval()
    copy.load_state_dict(shuffled)
    assert max_diff(copy, a) <= 1e-5 and not same(shuffled, state(a))  # the same function, other unit order
    recovered, info = align_to(state(a), shuffled, 20)
    assert same(recovered, state(a)) and info["converged"]
