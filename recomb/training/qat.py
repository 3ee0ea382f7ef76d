"""Quantization-aware training: distillation through int8 fake quantization.

It lives with training (it is the distillation loop with a weight transform), so the
quantization algorithms below it never import a trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..config import Section
from ..networks import QNetwork
from ..quantization.quantize import fake_quantize_weight
from .distill import DistillConfig, DistillResult, distill


@dataclass(frozen=True)
class QATConfig(Section):
    """Quantization-aware training: the distillation objective against the teacher,
    with every Linear weight fake-quantized to int8 in the forward pass."""

    sections = ("qat",)

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
        """The same training loop as distillation: constant learning rate, no dropout, the buffer's states alone."""
        cfg = DistillConfig(
            student_hidden=0, student_dropout=0.0, student_family="layernorm", train_dropout=False,
            epochs=self.epochs, lr=self.lr,
            lr_schedule="constant", warmup_fraction=0.0, batch_size=self.batch_size,
            max_grad_norm=self.max_grad_norm, val_fraction=self.val_fraction, seed=self.seed,
            loss_fn=self.loss_fn, temperature=self.temperature, temp_decay=1.0, alpha=self.alpha,
            q_weight=self.q_weight, augment_copies=0, augment_noise=0.0,
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
