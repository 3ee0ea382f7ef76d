"""Int8 quantization of Q-networks: post-training (dynamic, static), QAT fake quantization,
and `Int8QNetwork`, the module that runs an int8 checkpoint.

Scheme (the same for PTQ and QAT, so a QAT-trained network converts to exactly the
weights it was trained against):
- weights of the three Linear layers: int8, symmetric, one scale per output channel,
  range [-127, 127] (zero point 0);
- `dynamic` mode: activations stay float; each Linear runs the int8-weight kernel
  `torch._weight_int8pack_mm`. Every state is computed independently, so outputs do
  not depend on how states are batched.
- `static` mode: each Linear's input is quantized to int8 with one scale and zero
  point per layer, calibrated (min/max) on train states, and the product runs as an
  int8 × int8 → int32 matmul (`torch._int_mm`). The ranges are fixed, so outputs do
  not depend on batching either; inputs outside the calibrated range are clipped.
- biases and LayerNorm parameters stay float32.

The quantization arithmetic (choosing scales and zero points, rounding) is torchao's
affine quantization (symmetric per-channel weights, asymmetric per-tensor activations),
reproduced op for op in plain torch and tested for bit equality against torchao's
primitives. We measured torchao itself on the pipeline's path and kept it out:
importing it costs 1.5–2 s per stage process (more than quantizing takes), its
primitives make QAT's per-step fake quantization 4.5× slower, and its `quantize_`
models run batch-1 forward about 1.9× (weight-only) and 9× (dynamic activations) the
float network's, with tensor subclasses that cannot be stored as plain safetensors
(benchmarks/quantization.py). `import_torchao` gives the reference to tests and
benchmarks.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Section
from ..networks import LINEAR_INDICES, NORM_INDICES, Architecture, QNetwork
from ..training.distill import DistillConfig, DistillResult, distill

QuantMode = Literal["dynamic", "static"]
Backend = Literal["int8", "reference"]
WEIGHT_QMIN, WEIGHT_QMAX = -127, 127
ACT_QMIN, ACT_QMAX = -128, 127


@functools.cache
def import_torchao():
    """torchao's affine-quantization primitives (the reference our arithmetic is tested
    against), imported quietly: its CUDA-kernel loading is skipped (useless on this CPU
    build) and its loggers, and a torch pytree deprecation notice it trips, are silenced."""
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization import quant_primitives
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    return quant_primitives


EPS = torch.finfo(torch.float32).smallest_normal


def _weight_grid(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8 values (as float) and scales of a 2-D float weight.

    torchao's `choose_qparams_affine` + `quantize_affine` (symmetric, [-127, 127]),
    op for op — x·(1/scale), not x/scale, so rounding ties land alike; tests check
    bit equality with torchao.
    """
    scale = (flat.abs().amax(-1, keepdim=True) / WEIGHT_QMAX).clamp_min(EPS)
    return torch.round(flat * (1.0 / scale)).clamp(WEIGHT_QMIN, WEIGHT_QMAX), scale


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight → int8 weight and float32 per-output-channel scales."""
    q, scale = _weight_grid(weight.detach().float())
    return q.to(torch.int8), scale.reshape(-1)


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight as its int8 version computes, with a straight-through gradient.

    Accepts (out, in) or stacked (P, out, in) weights; scales are per output channel
    of each member, exactly as `quantize_weight` chooses them at conversion.
    """
    q, scale = _weight_grid(weight.detach().reshape(-1, weight.shape[-1]))
    return weight + ((q * scale).reshape(weight.shape) - weight).detach()


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """Per-tensor asymmetric int8 scale and zero point covering [low, high] and 0
    (torchao's `choose_qparams_affine_with_min_max`, op for op; tested against it)."""
    low_neg = torch.tensor([min(low, 0.0)], dtype=torch.float32)
    high_pos = torch.tensor([max(high, 0.0)], dtype=torch.float32)
    scale = ((high_pos - low_neg) / float(ACT_QMAX - ACT_QMIN)).clamp_min(EPS)
    zero_point = (ACT_QMIN - torch.round(low_neg / scale)).clamp(ACT_QMIN, ACT_QMAX)
    return float(scale[0]), int(zero_point[0])


def linear_input_ranges(model: QNetwork, batches: list[torch.Tensor]) -> list[tuple[float, float]]:
    """Observed (min, max) of each Linear layer's input over calibration batches."""
    ranges: list[list[float]] = [[float("inf"), float("-inf")] for _ in LINEAR_INDICES]
    hooks = []
    for slot, idx in enumerate(LINEAR_INDICES):
        def observe(_module, inputs, slot=slot):
            x = inputs[0]
            ranges[slot][0] = min(ranges[slot][0], x.min().item())
            ranges[slot][1] = max(ranges[slot][1], x.max().item())
        hooks.append(model.network[idx].register_forward_pre_hook(observe))
    try:
        with torch.inference_mode():
            for batch in batches:
                model.eval()(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return [(low, high) for low, high in ranges]


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
            if idx != LINEAR_INDICES[0] and int(zero_point) == ACT_QMIN:
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 1
        x = x.reshape(-1, self.arch.input_dim).float()
        hidden = (self.arch.hidden,)
        first, *rest = (self._kernels[idx] for idx in LINEAR_INDICES)
        if self.mode == "dynamic":
            x = self._dynamic_linear(x, first)
            for norm, k in zip(NORM_INDICES, rest):
                x = torch.relu(F.layer_norm(x, hidden, self._t(norm, "weight"), self._t(norm, "bias")))
                x = self._dynamic_linear(x, k)
        else:
            x = self._static_linear(torch.addcmul(first["zero_point"], x, first["inv_scale"]), first)
            for norm, k in zip(NORM_INDICES, rest):
                if "norm_weight" in k:
                    q = F.layer_norm(x, hidden, k["norm_weight"], k["norm_bias"])
                else:
                    x = torch.relu(F.layer_norm(x, hidden, self._t(norm, "weight"), self._t(norm, "bias")))
                    q = torch.addcmul(k["zero_point"], x, k["inv_scale"])
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
        for idx in NORM_INDICES:
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
    for idx in NORM_INDICES:
        for name in ("weight", "bias"):
            spec[f"network.{idx}.{name}"] = (shapes[f"network.{idx}.{name}"], torch.float32)
    return spec


def ptq(model: QNetwork, mode: QuantMode, calibration: list[torch.Tensor] | None = None,
        backend: Backend = "int8") -> Int8QNetwork:
    """Post-training quantization of a float network.

    `calibration` (a list of state batches) is required for `static` and ignored for
    `dynamic`.
    """
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {}
    if mode == "static":
        if not calibration:
            raise ValueError("static quantization needs calibration batches")
        ranges = linear_input_ranges(model, calibration)
    for slot, idx in enumerate(LINEAR_INDICES):
        q, scale = quantize_weight(state[f"network.{idx}.weight"])
        tensors[f"network.{idx}.weight"] = q
        tensors[f"network.{idx}.weight_scale"] = scale
        tensors[f"network.{idx}.bias"] = state[f"network.{idx}.bias"]
        if mode == "static":
            act_scale, act_zero_point = activation_qparams(*ranges[slot])
            tensors[f"network.{idx}.input_scale"] = torch.tensor([act_scale], dtype=torch.float32)
            tensors[f"network.{idx}.input_zero_point"] = torch.tensor([act_zero_point], dtype=torch.int32)
    for idx in NORM_INDICES:
        tensors[f"network.{idx}.weight"] = state[f"network.{idx}.weight"]
        tensors[f"network.{idx}.bias"] = state[f"network.{idx}.bias"]
    return Int8QNetwork(model.arch, mode, tensors, backend).eval()



@dataclass(frozen=True)
class PTQConfig(Section):
    mode: QuantMode
    dtype: Literal["int8"]
    backend: Backend
    calibration_batches: int
    calibration_batch_size: int
    calibration_seed: int

    def check(self) -> None:
        self.require(self.calibration_batches >= 1, "calibration_batches", "must be ≥ 1")
        self.require(self.calibration_batch_size >= 1, "calibration_batch_size", "must be ≥ 1")


def calibration_batches(states: torch.Tensor, batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """`batches` seeded draws of `batch_size` train states (fewer if the buffer is smaller)."""
    perm = torch.randperm(len(states), generator=torch.Generator().manual_seed(seed))
    chosen = states[perm[:batches * batch_size]]
    return list(chosen.split(batch_size))


@dataclass(frozen=True)
class QATConfig(Section):
    """Quantization-aware training: the distillation objective against the teacher,
    with every Linear weight fake-quantized to int8 in the forward pass."""

    epochs: int
    lr: float
    batch_size: int
    max_grad_norm: float
    val_fraction: float
    seed: int
    loss_fn: Literal["kl", "mse"]
    temperature: float
    alpha: float
    q_weight: float
    convert: bool

    def check(self) -> None:
        self.distill_config()

    def distill_config(self) -> DistillConfig:
        """The same training loop as distillation: constant learning rate, no dropout."""
        cfg = DistillConfig(
            student_hidden=0, student_dropout=0.0, train_dropout=False, epochs=self.epochs, lr=self.lr,
            lr_schedule="constant", warmup_fraction=0.0, batch_size=self.batch_size,
            max_grad_norm=self.max_grad_norm, val_fraction=self.val_fraction, seed=self.seed,
            loss_fn=self.loss_fn, temperature=self.temperature, temp_decay=1.0, alpha=self.alpha,
            q_weight=self.q_weight,
        )
        object.__setattr__(cfg, "_where", self._where)
        cfg.check()
        return cfg


def qat(students: list[QNetwork], teachers: list[nn.Module], states: torch.Tensor, cfg: QATConfig,
        seeds: list[int], on_epoch=None) -> DistillResult:
    """Fine-tune float students against their teachers through int8 fake quantization.

    The returned float students convert with `ptq(..., "dynamic")` to exactly the
    int8 weights they were trained with. The starting point (epoch 0, which is
    dynamic PTQ) competes for the best validation epoch, so QAT never validates
    worse than dynamic PTQ of the same student.
    """
    return distill(students, teachers, states, cfg.distill_config(), seeds, on_epoch,
                   weight_transform=fake_quantize_weight, score_start=True)
