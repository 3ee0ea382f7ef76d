"""Optimizers for the few small tensors of a Q-network (or a `QNetworkStack`).

torch.optim's optimizer classes import torch._dynamo on construction, about
0.9-2.8 s per process here: more than distilling both students takes. torch's
functional optimizers (`torch.optim.adam.adam`, ...) do not, and are what those
classes run, so these wrappers only hold the parameters, the state and `lr` (an
attribute the trainers change: schedules, plateaus) and hand each step to them.
Every keyword keeps torch.optim's default and meaning; tests check each wrapper
against its torch.optim class bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch.optim.adam import adam
from torch.optim.rmsprop import rmsprop
from torch.optim.sgd import sgd

# The kernels every step runs, named rather than left to torch's per-device choice:
# multi-tensor (foreach), neither fused nor differentiable. On CPU it gives the
# same bits as torch.optim's default single-tensor loop, a third faster per step.
FOREACH = True


class Optimizer:
    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.params]

    def _zeros(self) -> list[torch.Tensor]:
        return [torch.zeros_like(p) for p in self.params]

    def _step_counts(self) -> list[torch.Tensor]:
        """Per-parameter step counters, float32 tensors as torch.optim keeps them."""
        return [torch.tensor(0.0) for _ in self.params]


class Adam(Optimizer):
    """Adam (Kingma & Ba, bias-corrected); with `decoupled=True` it is AdamW (Loshchilov & Hutter).

    `fused=True` runs torch's fused CPU kernel: about 3× faster per step, and not the
    same bits as the other kernels (last-place differences). The DQN, with tens of
    thousands of single-network steps, uses it; the trainers keep the default.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False, fused: bool = False):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay, self.decoupled = tuple(betas), eps, weight_decay, decoupled
        self.fused = fused
        self.steps = self._step_counts()
        self.exp_avg, self.exp_avg_sq = self._zeros(), self._zeros()

    @torch.no_grad()
    def step(self) -> None:
        adam(self.params, self._grads(), self.exp_avg, self.exp_avg_sq, [], self.steps,
             foreach=FOREACH and not self.fused, fused=self.fused, differentiable=False,
             decoupled_weight_decay=self.decoupled,
             amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
             weight_decay=self.weight_decay, eps=self.eps, maximize=False)


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)  # sgd() fills them on the first step

    @torch.no_grad()
    def step(self) -> None:
        sgd(self.params, self._grads(), self.buffers, foreach=FOREACH, fused=False,
            weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr, dampening=0.0,
            nesterov=self.nesterov, maximize=False)


class RMSprop(Optimizer):
    """RMSprop (Hinton's), torch.optim's formulation: optional momentum and L2 weight decay."""

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.alpha, self.eps, self.momentum, self.weight_decay = alpha, eps, momentum, weight_decay
        self.steps = self._step_counts()
        self.square_avg = self._zeros()
        self.buffers = self._zeros() if momentum else []

    @torch.no_grad()
    def step(self) -> None:
        rmsprop(self.params, self._grads(), self.square_avg, [], self.buffers, self.steps,
                foreach=FOREACH, differentiable=False, lr=self.lr, alpha=self.alpha, eps=self.eps,
                weight_decay=self.weight_decay, momentum=self.momentum, centered=False)


OPTIMIZERS = {
    "adam": (Adam, {"betas", "eps", "weight_decay"}),
    "adamw": (Adam, {"betas", "eps", "weight_decay"}),
    "sgd": (SGD, {"momentum", "weight_decay", "nesterov"}),
    "rmsprop": (RMSprop, {"alpha", "eps", "momentum", "weight_decay"}),
}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each optimizer keyword may hold (checked before any training starts): rule, and how to say it.
KWARG_RULES = {
    "betas": (lambda v: isinstance(v, list) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
              "a list of two numbers in [0, 1)"),
    "eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number ≥ 0"),
    "momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "alpha": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "nesterov": (lambda v: isinstance(v, bool), "true or false"),
}


def kwargs_problem(kwargs: dict) -> str | None:
    """The first keyword whose value its optimizer cannot take, said in words; None when all can."""
    for key, value in kwargs.items():
        ok, wanted = KWARG_RULES[key]
        if not ok(value):
            return f"{key} must be {wanted}"
    return None


def make_optimizer(name: str, params, lr: float, kwargs: dict) -> Optimizer:
    """An optimizer by its params.yaml name; AdamW's decay defaults to torch's 0.01."""
    cls, _ = OPTIMIZERS[name]
    if name == "adamw":
        return cls(params, lr, decoupled=True, **{"weight_decay": 0.01, **kwargs})
    return cls(params, lr, **kwargs)


class ReduceOnPlateau:
    """Multiply the learning rate by `factor` after `patience` epochs without a
    relative improvement of 1e-4 in validation loss (torch's ReduceLROnPlateau defaults)."""

    def __init__(self, optimizer: Optimizer, patience: int, factor: float):
        self.optimizer, self.patience, self.factor = optimizer, patience, factor
        self.best, self.bad_epochs = math.inf, 0

    def step(self, loss: float) -> None:
        if loss < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr *= self.factor
            self.bad_epochs = 0
