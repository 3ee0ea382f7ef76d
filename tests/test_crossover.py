import pytest
import torch

from recomb.crossover import OPERATORS, CrossoverConfig, align_to, crossover, permute, slerp
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


def cfg(mode: str, alpha: float = 0.5, seed: int = 0, passes: int = 20) -> CrossoverConfig:
    return CrossoverConfig(parents="students", mode=mode, alpha=alpha, seed=seed, align_max_passes=passes)


def state(net: QNetwork) -> dict[str, torch.Tensor]:
    return net.state_dict()


def same(x: dict, y: dict) -> bool:
    return all(torch.equal(x[key], y[key]) for key in PARAM_KEYS)


def max_diff(x: QNetwork, y: QNetwork) -> float:
    with torch.no_grad():
        return (x(STATES) - y(STATES)).abs().max().item()


A, B = parent(1), parent(2)


def test_registry_holds_every_mode():
    assert set(OPERATORS) == {"random", "layer", "weighted", "aligned", "slerp"}


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
    assert sorted(info["perm_1"]) == list(range(32)) and info["passes"] >= 1


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


def test_weighted_half_is_the_midpoint():
    child, _ = crossover(A, B, cfg("weighted", 0.5))
    for key in PARAM_KEYS:
        assert torch.allclose(state(child)[key], (state(A)[key] + state(B)[key]) / 2)


def test_slerp_of_parallel_vectors_is_lerp_and_keeps_norm_between_orthogonal():
    a = torch.tensor([1.0, 2.0, 3.0])
    mixed, theta = slerp(a, 2 * a, 0.25)
    assert theta < 1e-4 and torch.allclose(mixed, 0.75 * a + 0.25 * 2 * a)
    mid, theta = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 0.5)
    assert theta == pytest.approx(torch.pi / 2)
    assert torch.allclose(mid, torch.tensor([0.5 ** 0.5, 0.5 ** 0.5]))
    _, info = crossover(A, B, cfg("slerp", 0.3))
    assert set(info["angles"]) == set(PARAM_KEYS)


def test_config_rejects_alpha_outside_unit_interval():
    data = {"parents": "students", "mode": "aligned", "alpha": 1.5, "seed": 0, "align_max_passes": 10}
    with pytest.raises(RecombError) as err:
        CrossoverConfig.from_mapping(data, "params.yaml: crossover")
    assert str(err.value) == "params.yaml: crossover.alpha: must be in [0, 1] (got 1.5)"
