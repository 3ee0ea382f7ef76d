"""Crossover: one float child from two parents of the same Architecture.

Parents may be students or full parents; int8 parents are dequantized by the
caller, so every operator works on float32 state dicts keyed by `PARAM_KEYS`.
`alpha` is parent A's share everywhere except `layer`:

- `random`:   each tensor comes whole from A with probability alpha (seeded).
- `layer`:    whole blocks alternate, A, B, A (Linear 0 + LayerNorm 1, Linear 4 +
              LayerNorm 5, Linear 8); a Linear never leaves its LayerNorm.
- `weighted`: alpha·A + (1 − alpha)·B on every tensor.
- `aligned`:  `weighted` after permuting B's hidden units onto A's, by their weights
              (`matching: weights`) or by their activations on the train states (`activations`).
- `slerp`:    spherical interpolation of each flattened tensor.

`repair: true` resets the statistics of an interpolating operator's child (`weighted`, `aligned`, `slerp`) to
the interpolation of the parents' (REPAIR). Why align and why repair: `alignment`.
The keys of the `crossover` section each operator reads are declared once, in `recomb.operator_knobs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from ..config import Section
from ..errors import RecombError
from ..networks import Architecture, QNetwork
from ..operator_knobs import READS
from .alignment import (HIDDEN_LAYERS, State, activation_matching, keys, network, repair, unit_moments,
                        weight_matching)

BLOCKS = (*HIDDEN_LAYERS, ("network.8",))  # the hidden (Linear, LayerNorm) pairs, then the output Linear


@dataclass(frozen=True)
class CrossoverConfig(Section):
    sections = ("crossover",)

    parents: Literal["parents", "students", "quantized", "qat"]  # which pair the pipeline crosses (data/<parents>)
    mode: Literal["random", "layer", "weighted", "aligned", "slerp"]
    alpha: float
    seed: int
    align_max_passes: int
    matching: Literal["weights", "activations"]
    repair: bool

    def check(self) -> None:
        self.require(0 <= self.alpha <= 1, "alpha", "must be in [0, 1]")
        self.require(self.align_max_passes >= 1, "align_max_passes", "must be ≥ 1")
        if self.repair:
            interpolating = [name for name, op in OPERATORS.items() if "repair" in op.reads]
            self.require(self.mode in interpolating, "repair",
                         f"{self.mode} does not interpolate the parents; REPAIR applies to {', '.join(interpolating)}")

    @property
    def needs_states(self) -> bool:
        """Whether this crossover reads the train states (activation matching, REPAIR)."""
        reads = OPERATORS[self.mode].reads
        return ("matching" in reads and self.matching == "activations") or ("repair" in reads and self.repair)


@dataclass(frozen=True)
class Context:
    """What an operator reads besides the two state dicts."""

    cfg: CrossoverConfig
    arch: Architecture           # the parents' architecture
    states: torch.Tensor | None  # the train states, when `cfg.needs_states`


def _random(a: State, b: State, ctx: Context, info: dict) -> State:
    """Each tensor whole from A with probability alpha; a private generator keeps it reproducible."""
    present = keys(a)
    draws = torch.rand(len(present), generator=torch.Generator().manual_seed(ctx.cfg.seed))
    info["sources"] = {key: "a" if draw < ctx.cfg.alpha else "b" for key, draw in zip(present, draws.tolist())}
    return {key: (a if info["sources"][key] == "a" else b)[key].clone() for key in present}


def _layer(a: State, b: State, ctx: Context, info: dict) -> State:
    """Even blocks from A, odd from B; the split is fixed."""
    info["sources"] = {key: "ab"[block % 2] for block, prefixes in enumerate(BLOCKS)
                       for key in keys(a) if key.rsplit(".", 1)[0] in prefixes}
    return {key: (a if info["sources"][key] == "a" else b)[key].clone() for key in info["sources"]}


def _repaired(child: State, a: State, b: State, ctx: Context, info: dict) -> State:
    """The interpolation `child` of `a` and `b` (B in A's unit order), REPAIRed when `repair` says so."""
    if not ctx.cfg.repair:
        return child
    ends = (unit_moments(ctx.arch, a, ctx.states), unit_moments(ctx.arch, b, ctx.states))
    child, info["repair"] = repair(ctx.arch, child, *ends, ctx.cfg.alpha, ctx.states)
    return child


def _weighted(a: State, b: State, ctx: Context, info: dict) -> State:
    return _repaired({key: ctx.cfg.alpha * a[key] + (1 - ctx.cfg.alpha) * b[key] for key in keys(a)}, a, b, ctx, info)


def _aligned(a: State, b: State, ctx: Context, info: dict) -> State:
    if ctx.cfg.matching == "weights":
        b_aligned, info["alignment"] = weight_matching(a, b, ctx.cfg.align_max_passes)
    else:
        b_aligned, info["alignment"] = activation_matching(ctx.arch, a, b, ctx.states)
    return _weighted(a, b_aligned, ctx, info)


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


def _slerp(a: State, b: State, ctx: Context, info: dict) -> State:
    results = {key: slerp(a[key], b[key], 1 - ctx.cfg.alpha) for key in keys(a)}
    info["angles"] = {key: theta for key, (_, theta) in results.items()}
    return _repaired({key: child for key, (child, _) in results.items()}, a, b, ctx, info)


@dataclass(frozen=True)
class Operator:
    """A crossover operator: `combine(a_state, b_state, ctx, info)` records its choices in `info` and returns
    the child's state dict; `reads`: the keys of the `crossover` section it reads (`operator_knobs.READS`)."""

    combine: Callable[[State, State, Context, dict], State]
    reads: tuple[str, ...]


COMBINE = {"random": _random, "layer": _layer, "weighted": _weighted, "aligned": _aligned, "slerp": _slerp}
OPERATORS: dict[str, Operator] = {mode: Operator(COMBINE[mode], reads) for mode, reads in READS.items()}


def crossover(a: QNetwork, b: QNetwork, cfg: CrossoverConfig,
              states: torch.Tensor | None = None) -> tuple[QNetwork, dict]:
    """The child (eval mode, A's Architecture) and a JSON-able record of what the operator chose.

    `states`: the train states, which activation matching and REPAIR measure the parents on."""
    if not (isinstance(a, QNetwork) and isinstance(b, QNetwork)):
        raise RecombError("crossover.parents: parents is a brought MLP outside recomb's LayerNorm family, which the "
                          "operators cannot cross; cross its students (crossover.parents: students)")
    if a.arch != b.arch:
        raise ValueError(f"crossover needs parents of one architecture, got {a.arch} and {b.arch}")
    a_state, b_state = ({k: v.detach().to(torch.float32) for k, v in n.state_dict().items()} for n in (a, b))
    if cfg.needs_states and states is None:
        raise ValueError(f"crossover {cfg.mode} (matching {cfg.matching}, repair {cfg.repair}) needs the train states")
    operator = OPERATORS[cfg.mode]
    info: dict = {"mode": cfg.mode, **{key: getattr(cfg, key) for key in operator.reads}}
    state = operator.combine(a_state, b_state, Context(cfg, a.arch, states), info)
    child = network(a.arch, state)
    return child.eval(), info
