import pytest
import torch

from recomb.errors import RecombError
from recomb.networks import Architecture, seeded_qnetwork
from recomb.recombination.alignment import (activation_matching, hidden_values, network, permute, repair,
                                            unit_moments)
from recomb.recombination.crossover import CrossoverConfig, crossover

NORMED = Architecture(6, 3, 24, 0.0)
PLAIN = Architecture(6, 3, 24, 0.0, layer_norm=False)
STATES = torch.randn(2000, 6, generator=torch.Generator().manual_seed(0))


def parent(arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
    """A seeded network with random biases and LayerNorm parameters too (so no unit is dead or generic)."""
    state = seeded_qnetwork(arch, seed).state_dict()
    gen = torch.Generator().manual_seed(100 + seed)
    return {k: v + 0.2 * torch.randn(v.shape, generator=gen) if not k.endswith("weight") or v.dim() == 1 else v
            for k, v in state.items()}


def shuffled(arch: Architecture, state: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return permute(state, torch.randperm(arch.hidden, generator=gen), torch.randperm(arch.hidden, generator=gen))


def config(mode: str, alpha: float = 0.5, matching: str = "weights", repair: bool = False) -> CrossoverConfig:
    return CrossoverConfig.from_mapping({"parents": "students", "mode": mode, "alpha": alpha, "seed": 0,
                                         "align_max_passes": 20, "matching": matching, "repair": repair},
                                        "params.yaml: crossover")


@pytest.mark.parametrize("arch", [NORMED, PLAIN])
def test_activation_matching_recovers_a_permuted_copy(arch):
    a = parent(arch, 1)
    copy = shuffled(arch, a, 7)
    assert any(not torch.equal(a[k], copy[k]) for k in a)
    recovered, info = activation_matching(arch, a, copy, STATES)
    assert all(torch.equal(recovered[k], a[k]) for k in a)
    assert info["matched_correlation"] == pytest.approx([1.0, 1.0])


def ends(arch: Architecture, a: dict, b: dict):
    return unit_moments(arch, a, STATES), unit_moments(arch, b, STATES)


def moments(arch: Architecture, state: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(v.double().mean(0), v.double().std(0, unbiased=False)) for v in hidden_values(arch, state, STATES)]


@pytest.mark.parametrize("arch", [NORMED, PLAIN])
def test_repair_gives_each_unit_the_interpolated_mean_and_spread(arch):
    a, b, alpha = parent(arch, 1), parent(arch, 2), 0.3
    child = {k: alpha * a[k] + (1 - alpha) * b[k] for k in a}
    repaired, info = repair(arch, child, *ends(arch, a, b), alpha, STATES)
    for layer, ((mean, std), (mean_a, std_a), (mean_b, std_b)) in enumerate(
            zip(moments(arch, repaired), moments(arch, a), moments(arch, b))):
        assert torch.allclose(mean, alpha * mean_a + (1 - alpha) * mean_b, atol=1e-4), layer
        assert torch.allclose(std, alpha * std_a + (1 - alpha) * std_b, atol=1e-4), layer
    before = moments(arch, child)
    assert not torch.allclose(before[1][1], moments(arch, repaired)[1][1], atol=1e-3)  # it had something to do
    assert len(info["std_over_target"]) == 2


def test_repair_of_an_endpoint_leaves_it_as_it_is():
    a, b = parent(NORMED, 1), parent(NORMED, 2)
    repaired, info = repair(NORMED, a, *ends(NORMED, a, b), 1.0, STATES)
    assert all(torch.allclose(repaired[k], a[k], atol=1e-6) for k in a)
    assert info["std_over_target"] == pytest.approx([1.0, 1.0])


def test_a_unit_constant_over_the_states_is_shifted_not_scaled():
    a, b = parent(PLAIN, 1), parent(PLAIN, 2)
    for state in (a, b):  # unit 0 of layer 1 ignores its inputs: its pre-ReLU value is its bias
        state["network.0.weight"][0] = 0.0
    child = {k: 0.5 * a[k] + 0.5 * b[k] for k in a}
    repaired, _ = repair(PLAIN, child, *ends(PLAIN, a, b), 0.5, STATES)
    assert torch.isfinite(torch.cat([v.flatten() for v in repaired.values()])).all()
    assert repaired["network.0.bias"][0] == pytest.approx(0.5 * (a["network.0.bias"][0] + b["network.0.bias"][0]).item())


@pytest.mark.parametrize("mode", ["weighted", "aligned", "slerp"])
def test_crossover_with_repair_runs_on_the_states_and_records_it(mode):
    a, b = network(NORMED, parent(NORMED, 1)), network(NORMED, parent(NORMED, 2))
    child, info = crossover(a, b, config(mode, repair=True), STATES)
    plain_child, _ = crossover(a, b, config(mode), STATES)
    assert info["repair"]["std_over_target"] and info["repair"] is not None
    assert not torch.equal(child(STATES), plain_child(STATES))
    with pytest.raises(ValueError, match="needs the train states"):
        crossover(a, b, config(mode, repair=True))


def test_activation_matched_crossover_of_a_permuted_copy_is_the_parent():
    a = parent(NORMED, 1)
    child, info = crossover(network(NORMED, a), network(NORMED, shuffled(NORMED, a, 3)),
                            config("aligned", 0.4, matching="activations"), STATES)
    assert torch.allclose(child(STATES), network(NORMED, a)(STATES), atol=1e-5)
    assert info["matching"] == "activations" and "matched_correlation" in info["alignment"]


@pytest.mark.parametrize("mode", ["random", "layer"])
def test_repair_on_an_operator_that_does_not_interpolate_is_one_line(mode):
    with pytest.raises(RecombError) as err:
        config(mode, repair=True)
    assert str(err.value) == (f"params.yaml: crossover.repair: {mode} does not interpolate the parents; REPAIR "
                              "applies to weighted, aligned, slerp (got True)")


def test_unknown_matching_is_one_line():
    with pytest.raises(RecombError, match=r"^params.yaml: crossover.matching: must be one of weights, activations"):
        config("aligned", matching="outputs")
