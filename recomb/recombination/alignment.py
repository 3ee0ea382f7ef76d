"""Putting two networks' hidden units in one order, and repairing what averaging them does to their statistics.

The hidden units of independently trained networks come in arbitrary order: unit i of A and unit i of B usually
compute unrelated features, and averaging them blends noise. Permuting a layer's units (with their LayerNorm
parameters and the next layer's columns) leaves a network's function unchanged, so B can be put in A's order
before the two are averaged (Git Re-Basin, Ainsworth et al., ICLR 2023). Two matchers:

- weight matching: the permutations that maximise the summed inner product of the units' weights (coordinate
  descent over the two layers, each step a linear assignment);
- activation matching: each layer's permutation maximises the summed correlation of A's and B's unit
  values over the same states; data-driven, and the layers are matched independently. The values are taken
  just before the ReLU: after it, a unit that never fires on the states is constant and matches anything.

Even aligned, an average of two networks has units whose activations vary less than either parent's: averaging
two imperfectly correlated features shrinks their spread, and the shrinkage compounds through the layers.
REPAIR (Jordan et al., ICLR 2023) rescales and shifts each hidden unit of the average so that its mean and
standard deviation over the states are the α-interpolation of the endpoints'. It acts here on each unit's value
just before its ReLU. In the LayerNorm family that is after the LayerNorm, folded into the LayerNorm's own
per-unit scale and shift: a correction before it would be undone by the per-state normalisation, which divides
every unit by the spread of all the units of that state. In the plain family it is folded into the Linear row.
Layers are repaired in order, each measured with the layers before it already repaired.
"""

from __future__ import annotations

import torch

from ..networks import PARAM_KEYS, Architecture, QNetwork, seeded_qnetwork

State = dict[str, torch.Tensor]

HIDDEN_LAYERS = (("network.0", "network.1"), ("network.4", "network.5"))  # (Linear, LayerNorm) of each hidden layer


def keys(state: State) -> list[str]:
    """The parameters a state has, in `PARAM_KEYS` order (the plain family has no LayerNorm ones)."""
    return [key for key in PARAM_KEYS if key in state]


def permute(state: State, perm1: torch.Tensor, perm2: torch.Tensor) -> State:
    """`state` with hidden layer 1 reordered by `perm1` and hidden layer 2 by `perm2`.

    New unit i is old unit perm[i]; LayerNorm normalises over all units, so the
    function is unchanged (and the plain family has none).
    """
    order = {"network.0": (perm1, None), "network.1": (perm1, None), "network.4": (perm2, perm1),
             "network.5": (perm2, None), "network.8": (None, perm2)}  # (rows, columns) of each layer's tensors
    permuted = {}
    for key in keys(state):
        rows, columns = order[key.rsplit(".", 1)[0]]
        tensor = state[key] if rows is None else state[key][rows]
        permuted[key] = tensor[:, columns] if columns is not None and tensor.dim() == 2 else tensor.clone()
    return permuted


def _assignment(score: torch.Tensor) -> torch.Tensor:
    """The permutation `cols` maximising Σ_i score[i, cols[i]] (a linear assignment)."""
    from scipy.optimize import linear_sum_assignment  # 0.5 s to import; only the aligning operators need it
    return torch.as_tensor(linear_sum_assignment(score.numpy(), maximize=True)[1])


def _similarity(a: State, b: State, layer: int) -> torch.Tensor:
    """S[i, j]: how well B's unit j of hidden `layer` (0 or 1) matches A's unit i,
    summed over every tensor that unit owns (B already permuted elsewhere)."""
    lin, norm, nxt = (("network.0", "network.1", "network.4"), ("network.4", "network.5", "network.8"))[layer]
    A = {k: v.double() for k, v in a.items()}
    B = {k: v.double() for k, v in b.items()}
    sim = A[f"{lin}.weight"] @ B[f"{lin}.weight"].T + A[f"{nxt}.weight"].T @ B[f"{nxt}.weight"]
    for key in (f"{lin}.bias", f"{norm}.weight", f"{norm}.bias"):
        if key in A:  # the plain family has no norm
            sim += torch.outer(A[key], B[key])
    return sim


def weight_matching(a_state: State, b_state: State, max_passes: int) -> tuple[State, dict]:
    """B's state dict with its hidden units permuted onto A's by their weights, and info.

    Coordinate descent: each permutation in turn is the linear assignment that
    maximises the summed A·B similarity of its units given the other one; passes
    repeat until a whole pass changes nothing or `max_passes` is reached.
    """
    hidden = a_state["network.0.weight"].shape[0]
    perms = [torch.arange(hidden), torch.arange(hidden)]
    converged, passes = False, 0
    while not converged and passes < max_passes:
        passes += 1
        converged = True
        for layer in (0, 1):
            cols = _assignment(_similarity(a_state, permute(b_state, *perms), layer))
            if not torch.equal(cols, torch.arange(hidden)):  # cols index the already permuted B
                perms[layer] = perms[layer][cols]
                converged = False
    info = {"perm_1": perms[0].tolist(), "perm_2": perms[1].tolist(), "passes": passes, "converged": converged}
    return permute(b_state, *perms), info


def network(arch: Architecture, state: State) -> QNetwork:
    """An eval-mode QNetwork holding `state`."""
    net = seeded_qnetwork(arch, 0)  # seeded construction leaves the global RNG untouched
    net.load_state_dict(state)
    return net.eval()


def hidden_values(arch: Architecture, state: State, states: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden layer, each unit's value just before its ReLU over `states` (states × units)."""
    layers = network(arch, state).network
    found, x = [], states
    with torch.inference_mode():
        for start in (0, 4):
            found.append(layers[start + 1](layers[start](x)))
            x = torch.relu(found[-1])
    return found


def _moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and (population) standard deviation, in float64."""
    v = values.double()
    mean = v.mean(0)
    return mean, (v - mean).pow(2).mean(0).sqrt()


def _divisor(std: torch.Tensor) -> torch.Tensor:
    """`std` with its zeros (constant units) replaced by 1, safe to divide by."""
    return torch.where(std > 0, std, torch.ones_like(std))


def _standardised(values: torch.Tensor) -> torch.Tensor:
    """Each column minus its mean over its standard deviation, in float64; a constant column is all 0."""
    mean, std = _moments(values)
    return (values.double() - mean) / _divisor(std)


def activation_matching(arch: Architecture, a_state: State, b_state: State, states: torch.Tensor) -> tuple[State, dict]:
    """B's state dict with each hidden layer's units permuted onto A's by the correlation of their values just
    before the ReLU over `states`, and info: the permutations and the mean correlation of matched units."""
    perms, mean_corr = [], []
    for a_act, b_act in zip(hidden_values(arch, a_state, states), hidden_values(arch, b_state, states)):
        corr = _standardised(a_act).T @ _standardised(b_act) / len(states)
        cols = _assignment(corr)
        perms.append(cols)
        mean_corr.append(corr[torch.arange(len(cols)), cols].mean().item())
    info = {"perm_1": perms[0].tolist(), "perm_2": perms[1].tolist(), "matched_correlation": mean_corr}
    return permute(b_state, *perms), info




Moments = list[tuple[torch.Tensor, torch.Tensor]]  # per hidden layer: each unit's pre-ReLU mean and std


def unit_moments(arch: Architecture, state: State, states: torch.Tensor) -> Moments:
    """Each hidden unit's pre-ReLU mean and standard deviation over `states` (float64), per layer."""
    return [_moments(values) for values in hidden_values(arch, state, states)]


def repair(arch: Architecture, child: State, moments_a: Moments, moments_b: Moments, alpha: float,
           states: torch.Tensor) -> tuple[State, dict]:
    """`child` (an interpolation of A and B, B in A's unit order, A's share `alpha`) with each hidden unit's
    pre-ReLU mean and standard deviation over `states` reset to alpha·A's + (1 − alpha)·B's (`unit_moments`).

    A unit constant over the states (standard deviation 0 in the child) is only shifted. Info: per layer, the
    mean ratio of the child's unit standard deviations to their targets before the repair (1 = nothing to do).
    """
    targets = [(alpha * mean_a + (1 - alpha) * mean_b, alpha * std_a + (1 - alpha) * std_b)
               for (mean_a, std_a), (mean_b, std_b) in zip(moments_a, moments_b)]
    repaired = {key: value.clone() for key, value in child.items()}
    shrinkage = []
    for layer, ((linear, norm), (target_mean, target_std)) in enumerate(zip(HIDDEN_LAYERS, targets)):
        mean, std = _moments(hidden_values(arch, repaired, states)[layer])
        scale = torch.where(std > 0, target_std / _divisor(std), torch.ones_like(std))
        shift = target_mean - mean * scale
        owner = norm if arch.layer_norm else linear  # the per-unit affine map just before the ReLU
        weight, bias = repaired[f"{owner}.weight"], repaired[f"{owner}.bias"]
        repaired[f"{owner}.weight"] = (weight.double() * (scale if weight.dim() == 1 else scale[:, None])).float()
        repaired[f"{owner}.bias"] = (bias.double() * scale + shift).float()
        live = target_std > 0
        shrinkage.append((std[live] / target_std[live]).mean().item() if live.any() else 1.0)
    return repaired, {"std_over_target": shrinkage}
