"""Int8 quantization of Q-networks: post-training (dynamic, static) and the fake quantization
QAT trains through (`training.qat`); the checkpoint format and `Int8QNetwork` are `quantization.int8`.

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

from ..config import Section
from ..networks import LINEAR_INDICES, NORM_INDICES, QNetwork
from .int8 import ACT_QMAX, ACT_QMIN, WEIGHT_QMAX, WEIGHT_QMIN, Backend, Int8QNetwork, QuantMode


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
    for idx in model.arch.norm_indices:
        tensors[f"network.{idx}.weight"] = state[f"network.{idx}.weight"]
        tensors[f"network.{idx}.bias"] = state[f"network.{idx}.bias"]
    return Int8QNetwork(model.arch, mode, tensors, backend).eval()



@dataclass(frozen=True)
class PTQConfig(Section):
    sections = ("ptq",)

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
