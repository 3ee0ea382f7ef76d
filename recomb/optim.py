"""Optimizers for the few small tensors of a Q-network (or a `QNetworkStack`).

torch.optim's optimizers lazily import torch._dynamo on construction, which costs
about 1.2 s per process here — more than distilling both students takes. These
are the textbook updates, with torch.optim's defaults and meaning for every
keyword; tests check each against its torch.optim counterpart. `lr` is an
attribute the trainers change (schedules, plateaus).
"""

from __future__ import annotations

import math

import torch


class Optimizer:
    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _grads(self, weight_decay: float) -> list[torch.Tensor]:
        """Gradients with L2 weight decay folded in (coupled decay, as torch.optim's non-W variants)."""
        grads = [p.grad for p in self.params]
        return torch._foreach_add(grads, self.params, alpha=weight_decay) if weight_decay else grads


class Adam(Optimizer):
    """Adam (Kingma & Ba, bias-corrected); with `decoupled=True` it is AdamW (Loshchilov & Hutter)."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay, self.decoupled = tuple(betas), eps, weight_decay, decoupled
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        if self.decoupled and self.weight_decay:
            torch._foreach_mul_(self.params, 1 - self.lr * self.weight_decay)
        grads = self._grads(0.0 if self.decoupled else self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        bias1 = 1 - beta1 ** self.steps
        bias2 = 1 - beta2 ** self.steps
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, value=-self.lr / bias1)


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.buffers: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self) -> None:
        grads = self._grads(self.weight_decay)
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.buffers, self.momentum)
                torch._foreach_add_(self.buffers, grads)
            grads = torch._foreach_add(grads, self.buffers, alpha=self.momentum) if self.nesterov else self.buffers
        torch._foreach_add_(self.params, grads, alpha=-self.lr)


class RMSprop(Optimizer):
    """RMSprop (Hinton's), torch.optim's formulation: optional momentum and L2 weight decay."""

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.alpha, self.eps, self.momentum, self.weight_decay = alpha, eps, momentum, weight_decay
        self.square_avg = [torch.zeros_like(p) for p in self.params]
        self.buffers = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        grads = self._grads(self.weight_decay)
        torch._foreach_mul_(self.square_avg, self.alpha)
        torch._foreach_addcmul_(self.square_avg, grads, grads, value=1 - self.alpha)
        denom = torch._foreach_sqrt(self.square_avg)
        torch._foreach_add_(denom, self.eps)
        if self.momentum:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_addcdiv_(self.buffers, grads, denom)
            torch._foreach_add_(self.params, self.buffers, alpha=-self.lr)
        else:
            torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr)


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
