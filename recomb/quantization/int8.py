"""The int8 checkpoint format and `Int8QNetwork`, the module that runs it.

Kept apart from the quantization algorithms (`quantization.quantize`) so that reading
and writing checkpoints (`artifacts`) needs no training or calibration code.

Layout: the weights of the three Linear layers are int8, symmetric, one float32 scale
per output channel (zero point 0); `static` checkpoints add one input scale and zero
point per Linear layer; biases and LayerNorm parameters stay float32.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..networks import LINEAR_INDICES, NORM_INDICES, Architecture, QNetwork

QuantMode = Literal["dynamic", "static"]
Backend = Literal["int8", "reference"]
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
ACT_QMIN, ACT_QMAX = -128, 127


class Int8QNetwork(nn.Module):
    """A QNetwork whose Linear layers hold int8 weights and compute with int8 kernels.

    `tensors` is the checkpoint content: for each Linear index i, `network.i.weight`
    (int8), `network.i.weight_scale` (float32, per output channel), `network.i.bias`;
    in static mode also `network.i.input_scale` (float32, shape (1,)) and
    `network.i.input_zero_point` (int32, shape (1,)); LayerNorm weight and bias as float32.

    `backend` picks the kernels: `int8` multiplies int8 tensors (aten's int8 CPU
    kernels); `reference` multiplies the same integers held in float32, which is
    exact for static mode (integer sums stay far below 2**24) and equal to rounding
    for dynamic mode. On CPUs without VNNI the int8 kernels are fast at batch 1 but
    slow for large batches; `reference` then gives float throughput.
    """

    def __init__(self, arch: Architecture, mode: QuantMode, tensors: dict[str, torch.Tensor],
                 backend: Backend = "int8"):
        super().__init__()
        self.arch = arch
        self.mode = mode
        self.backend = backend
        for key, value in tensors.items():
            self.register_buffer(key.replace(".", "_"), value.clone())
        self._kernels = {idx: self._prepare(idx) for idx in LINEAR_INDICES}

    def _t(self, idx: int, name: str) -> torch.Tensor:
        return getattr(self, f"network_{idx}_{name}")

    def _prepare(self, idx: int) -> dict[str, torch.Tensor]:
        """Per-layer constants for the forward pass, derived once from the stored tensors."""
        weight, weight_scale, bias = self._t(idx, "weight"), self._t(idx, "weight_scale"), self._t(idx, "bias")
        kernel = {"weight": weight, "weight_t": weight.t().contiguous(), "weight_float": weight.float(),
                  "weight_scale": weight_scale, "bias": bias}
        if self.mode == "static":
            scale, zero_point = self._t(idx, "input_scale"), self._t(idx, "input_zero_point")
            out_scale = scale * weight_scale
            # (q − z)·Wᵀ = q·Wᵀ − z·ΣW: fold −z·ΣW, rescaled, into the bias.
            correction = (zero_point * weight.to(torch.int32).sum(1)).float()
            kernel.update(inv_scale=1.0 / scale, zero_point=zero_point.float(), out_scale=out_scale,
                          bias=bias - correction * out_scale, weight_t_float=kernel["weight_t"].float())
            if idx != LINEAR_INDICES[0] and int(zero_point) == ACT_QMIN and self.arch.layer_norm:
                # Input = ReLU(LayerNorm(·)). With the zero point at the int8 minimum, the clamp
                # already zeroes negatives, so ReLU and quantization fold into the LayerNorm's affine.
                norm = NORM_INDICES[LINEAR_INDICES.index(idx) - 1]
                kernel.update(norm_weight=self._t(norm, "weight") / scale,
                              norm_bias=self._t(norm, "bias") / scale + zero_point.float())
        return kernel

    def _dynamic_linear(self, x: torch.Tensor, k: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.backend == "reference":
            return torch.addcmul(k["bias"], F.linear(x, k["weight_float"]), k["weight_scale"])
        return torch._weight_int8pack_mm(x, k["weight"], k["weight_scale"]).add_(k["bias"])

    def _static_linear(self, q: torch.Tensor, k: dict[str, torch.Tensor]) -> torch.Tensor:
        """Linear layer on an input already quantized (integer values, held in float32)."""
        q = q.round_().clamp_(ACT_QMIN, ACT_QMAX)
        if self.backend == "reference":
            acc = torch.mm(q, k["weight_t_float"])
        else:
            acc = torch._int_mm(q.to(torch.int8), k["weight_t"])
        return torch.addcmul(k["bias"], acc, k["out_scale"])

    def _hidden(self, x: torch.Tensor, norm: int) -> torch.Tensor:
        """A hidden layer's activation: ReLU(LayerNorm(x)), or ReLU(x) in the plain family."""
        if not self.arch.layer_norm:
            return torch.relu(x)
        return torch.relu(F.layer_norm(x, (self.arch.hidden,), self._t(norm, "weight"), self._t(norm, "bias")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 1
        x = x.reshape(-1, self.arch.input_dim).float()
        first, *rest = (self._kernels[idx] for idx in LINEAR_INDICES)
        if self.mode == "dynamic":
            x = self._dynamic_linear(x, first)
            for norm, k in zip(NORM_INDICES, rest):
                x = self._dynamic_linear(self._hidden(x, norm), k)
        else:
            x = self._static_linear(torch.addcmul(first["zero_point"], x, first["inv_scale"]), first)
            for norm, k in zip(NORM_INDICES, rest):
                if "norm_weight" in k:
                    q = F.layer_norm(x, (self.arch.hidden,), k["norm_weight"], k["norm_bias"])
                else:
                    q = torch.addcmul(k["zero_point"], self._hidden(x, norm), k["inv_scale"])
                x = self._static_linear(q, k)
        return x.squeeze(0) if squeeze else x

    def tensors(self) -> dict[str, torch.Tensor]:
        """The checkpoint content (what `__init__` takes)."""
        return {name.replace("_", ".", 2): buf for name, buf in self.named_buffers()}

    def dequantized(self) -> QNetwork:
        """The float network with the int8 weights expanded (scale × int8); static
        activation quantization is not part of it. What crossover and fine-tuning start from."""
        state = {}
        for idx in LINEAR_INDICES:
            state[f"network.{idx}.weight"] = self._t(idx, "weight").float() * self._t(idx, "weight_scale").unsqueeze(1)
            state[f"network.{idx}.bias"] = self._t(idx, "bias").clone()
        for idx in self.arch.norm_indices:
            state[f"network.{idx}.weight"] = self._t(idx, "weight").clone()
            state[f"network.{idx}.bias"] = self._t(idx, "bias").clone()
        net = QNetwork(self.arch)
        net.load_state_dict(state)
        return net.eval()


def tensor_bytes(model: QNetwork | Int8QNetwork) -> int:
    """Bytes of the tensors a checkpoint of `model` stores."""
    tensors = model.tensors() if isinstance(model, Int8QNetwork) else model.state_dict()
    return sum(t.numel() * t.element_size() for t in tensors.values())


def int8_tensor_spec(arch: Architecture, mode: QuantMode) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every tensor an int8 checkpoint of `mode` holds: key → (shape, dtype)."""
    shapes = arch.shapes()
    spec: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for idx in LINEAR_INDICES:
        weight = f"network.{idx}.weight"
        spec[weight] = (shapes[weight], torch.int8)
        spec[f"network.{idx}.weight_scale"] = ((shapes[weight][0],), torch.float32)
        spec[f"network.{idx}.bias"] = (shapes[f"network.{idx}.bias"], torch.float32)
        if mode == "static":
            spec[f"network.{idx}.input_scale"] = ((1,), torch.float32)
            spec[f"network.{idx}.input_zero_point"] = ((1,), torch.int32)
    for idx in arch.norm_indices:
        for name in ("weight", "bias"):
            spec[f"network.{idx}.{name}"] = (shapes[f"network.{idx}.{name}"], torch.float32)
    return spec
