"""Crossover: one float child from two parents of the same Architecture.

Parents may be students or full parents; int8 parents are dequantized by the
caller, so every operator works on float32 state dicts keyed by `PARAM_KEYS`.
`alpha` is parent A's share everywhere except `layer`:

- `random`:   each tensor comes whole from A with probability alpha (seeded).
- `layer`:    whole blocks alternate, A, B, A (Linear 0 + LayerNorm 1, Linear 4 +
              LayerNorm 5, Linear 8); a Linear never leaves its LayerNorm.
- `weighted`: alpha·A + (1 − alpha)·B on every tensor.
- `aligned`:  `weighted` after permuting B's hidden units onto A's.
- `slerp`:    spherical interpolation of each flattened tensor.

Why align: the hidden units of independently trained networks are in arbitrary
order, so unit i of A and unit i of B usually compute unrelated features and
averaging them blends noise. Permuting hidden units (with their LayerNorm
parameters and the next layer's columns) leaves a network's function unchanged,
so `align_to` searches for the permutation of B that best matches A's weights
(Git Re-Basin weight matching) before blending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from ..config import Section
from ..errors import RecombError
from ..networks import PARAM_KEYS, QNetwork, seeded_qnetwork

State = dict[str, torch.Tensor]

BLOCKS = (("network.0", "network.1"), ("network.4", "network.5"), ("network.8",))


@dataclass(frozen=True)
class CrossoverConfig(Section):
    sections = ("crossover",)

    parents: Literal["parents", "students", "quantized", "qat"]  # which pair the pipeline crosses (data/<parents>)
    mode: Literal["random", "layer", "weighted", "aligned", "slerp"]
    alpha: float
    seed: int
    align_max_passes: int

    def check(self) -> None:
        self.require(0 <= self.alpha <= 1, "alpha", "must be in [0, 1]")
        self.require(self.align_max_passes >= 1, "align_max_passes", "must be ≥ 1")


def keys(state: State) -> list[str]:
    """The parameters the parents have, in `PARAM_KEYS` order (the plain family has no LayerNorm ones)."""
    return [key for key in PARAM_KEYS if key in state]


def _random(a: State, b: State, cfg: CrossoverConfig, info: dict) -> State:
    """Each tensor whole from A with probability alpha; a private generator keeps it reproducible."""
    present = keys(a)
    draws = torch.rand(len(present), generator=torch.Generator().manual_seed(cfg.seed))
    info["sources"] = {key: "a" if draw < cfg.alpha else "b" for key, draw in zip(present, draws.tolist())}
    return {key: (a if info["sources"][key] == "a" else b)[key].clone() for key in present}


def _layer(a: State, b: State, cfg: CrossoverConfig, info: dict) -> State:
    """Even blocks from A, odd from B; alpha is ignored, the split is fixed."""
    info["sources"] = {key: "ab"[block % 2] for block, prefixes in enumerate(BLOCKS)
                       for key in keys(a) if key.rsplit(".", 1)[0] in prefixes}
    return {key: (a if info["sources"][key] == "a" else b)[key].clone() for key in info["sources"]}


def _weighted(a: State, b: State, cfg: CrossoverConfig, info: dict) -> State:
    return {key: cfg.alpha * a[key] + (1 - cfg.alpha) * b[key] for key in keys(a)}


def _aligned(a: State, b: State, cfg: CrossoverConfig, info: dict) -> State:
    b_aligned, info["alignment"] = align_to(a, b, cfg.align_max_passes)
    return _weighted(a, b_aligned, cfg, info)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
    """Interpolate from `a` (t = 0) to `b` (t = 1) along the great circle; also return the angle.

    Falls back to linear interpolation where the arc is ill-defined: a zero
    vector, or (nearly) parallel or antiparallel vectors (sin θ < 1e-4).
    """
    a64, b64 = a.flatten().double(), b.flatten().double()
    norms = a64.norm() * b64.norm()
    theta = math.acos(max(-1.0, min(1.0, (a64 @ b64 / norms).item()))) if norms > 0 else 0.0
    if math.sin(theta) < 1e-4:
        return (1 - t) * a + t * b, theta
    ca, cb = math.sin((1 - t) * theta) / math.sin(theta), math.sin(t * theta) / math.sin(theta)
    return ca * a + cb * b, theta


def _slerp(a: State, b: State, cfg: CrossoverConfig, info: dict) -> State:
    results = {key: slerp(a[key], b[key], 1 - cfg.alpha) for key in keys(a)}
    info["angles"] = {key: theta for key, (_, theta) in results.items()}
    return {key: child for key, (child, _) in results.items()}


# Each operator takes (a_state, b_state, cfg, info), records its choices in `info`
# and returns the child's state dict.
OPERATORS: dict[str, Callable[..., State]] = {
    "random": _random,
    "layer": _layer,
    "weighted": _weighted,
    "aligned": _aligned,
    "slerp": _slerp,
}


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


def align_to(a_state: State, b_state: State, max_passes: int) -> tuple[State, dict]:
    """B's state dict with its hidden units permuted onto A's (weight matching), and info.

    Coordinate descent: each permutation in turn is the linear assignment that
    maximises the summed A·B similarity of its units given the other one; passes
    repeat until a whole pass changes nothing or `max_passes` is reached.
    """
    from scipy.optimize import linear_sum_assignment  # 0.5 s to import; only this operator needs it
    hidden = a_state["network.0.weight"].shape[0]
    perms = [torch.arange(hidden), torch.arange(hidden)]
    converged, passes = False, 0
    while not converged and passes < max_passes:
        passes += 1
        converged = True
        for layer in (0, 1):
            sim = _similarity(a_state, permute(b_state, *perms), layer)
            cols = torch.as_tensor(linear_sum_assignment(sim.numpy(), maximize=True)[1])
            if not torch.equal(cols, torch.arange(hidden)):  # cols index the already permuted B
                perms[layer] = perms[layer][cols]
                converged = False
    info = {"perm_1": perms[0].tolist(), "perm_2": perms[1].tolist(), "passes": passes, "converged": converged}
    return permute(b_state, *perms), info


def crossover(a: QNetwork, b: QNetwork, cfg: CrossoverConfig) -> tuple[QNetwork, dict]:
    """The child (eval mode, A's Architecture) and a JSON-able record of what the operator chose."""
    if not (isinstance(a, QNetwork) and isinstance(b, QNetwork)):
        raise RecombError("crossover.parents: parents is a brought MLP outside recomb's LayerNorm family, which the "
                          "operators cannot cross; cross its students (crossover.parents: students)")
    if a.arch != b.arch:
        raise ValueError(f"crossover needs parents of one architecture, got {a.arch} and {b.arch}")
    a_state, b_state = ({k: v.detach().to(torch.float32) for k, v in n.state_dict().items()} for n in (a, b))
    info: dict = {"mode": cfg.mode, "alpha": cfg.alpha}
    state = OPERATORS[cfg.mode](a_state, b_state, cfg, info)
    child = seeded_qnetwork(a.arch, 0)  # seeded construction leaves the global RNG untouched
    child.load_state_dict(state)
    return child.eval(), info
