"""Elementwise math that gives the same bits on every x86-64 CPU: what the hashed path uses instead of MKL's VML.

On CPU, torch hands `sqrt`, `exp`, `log`, `tanh`, the trigonometric functions, `erf` and a few more (float32
and float64 alike) to MKL's vector math library (VML), found by breaking on its entry points under gdb
(`benchmarks/vml_audit.py`). VML picks its kernels for the CPU it finds and ignores `MKL_CBWR`: on an AMD
EPYC (Zen 4) its float32 `sqrt` is not correctly rounded (15 % of 10⁵ values one ulp off), under an emulated
AVX2-only CPU it is, and a lock made on an Intel Xeon failed at `distill` on that EPYC for exactly this
(Adam's `sqrt`). Everything here runs on aten's own AVX2 kernels (pinned by `dispatch`) and IEEE operations.

`VML_OPS` names the aten operators that reach VML, so `VmlGuard` can refuse them in tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

# aten operators whose CPU kernels call VML (torch 2.13, gdb): the functions themselves, their in-place,
# out= and foreach forms, and the composites that do not decompose before reaching a kernel. `trunc` also
# reaches VML but is exact by definition, so it is left out.
VML_FUNCTIONS = ("sqrt", "exp", "log", "log2", "log10", "tanh", "sin", "cos", "tan", "asin", "acos", "atan",
                 "erf", "erfc", "erfinv")
VML_OPS = frozenset({*VML_FUNCTIONS, *(f"{name}_" for name in VML_FUNCTIONS),
                     *(f"_foreach_{name}" for name in VML_FUNCTIONS), *(f"_foreach_{name}_" for name in VML_FUNCTIONS),
                     "_cdist_forward", "logsumexp"})
LOG_FLOOR = math.log(1e-30)  # where a log-probability is clamped: a probability of 1e-30


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """√x as 1 / (1/√x): two IEEE operations (aten's `rsqrt` is a division by a hardware square root),
    within 1.5 ulp of the rounded root and the same on every CPU; 0 ↦ 0."""
    return x.rsqrt().reciprocal()


def probabilities(log_p: torch.Tensor) -> torch.Tensor:
    """exp(log_p) for normalised log-probabilities (last dimension), through aten's softmax kernel."""
    return F.softmax(log_p, -1)


def log_mixture(log_p: torch.Tensor, log_q: torch.Tensor, weight_p: float) -> torch.Tensor:
    """log(w·p + (1 − w)·q) from log-probabilities, by `logaddexp` (aten's own exp and log1p); w in [0, 1]."""
    log_w = math.log(weight_p) if weight_p > 0 else -math.inf
    log_rest = math.log1p(-weight_p) if weight_p < 1 else -math.inf
    return torch.logaddexp(log_p + log_w, log_q + log_rest)


class VmlGuard(TorchDispatchMode):
    """Records every operator of `VML_OPS` run on a CPU floating-point tensor while it is active
    (`with VmlGuard() as guard: …; guard.calls`): a test's way to keep VML out of the hashed path."""

    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.removeprefix("aten::")
        if name in VML_OPS or (name == "pow" and len(args) > 1 and args[1] == 0.5):
            first = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
            if isinstance(first, torch.Tensor) and first.device.type == "cpu" and first.is_floating_point():
                self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))
