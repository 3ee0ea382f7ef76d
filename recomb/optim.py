"""Optimizers for the few small tensors of a Q-network (or a `QNetworkStack`).

torch.optim's optimizer classes import torch._dynamo on construction, about
0.9-2.8 s per process here: more than distilling both students takes. torch's
functional optimizers (`torch.optim.adam.adam`, ...) do not, and are what those
classes run, so these wrappers only hold the parameters, the state and `lr` (an
attribute the trainers change: schedules, plateaus) and hand each step to them.
Every keyword keeps torch.optim's default and meaning; tests check each wrapper
against its torch.optim class (bit for bit where no square root is taken).

No step may call `torch.sqrt`: on CPU it runs MKL's VML, whose bits depend on the
CPU (`recomb.portable`). torch's foreach Adam and RMSprop take it, so their steps
are written out here with the same foreach operations around `portable.sqrt`
(within a few ulp of torch's); the fused Adam kernel has its own square root.
"""

from __future__ import annotations

import math

import torch
from torch.optim.sgd import sgd

from . import portable


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

    `fused=True` runs torch's fused CPU kernel: about 3× faster per step, but an element's bits
    depend on where it lies in its tensor (vector body or scalar tail), so a member of a
    `QNetworkStack` would not train as it does alone. The DQN, with tens of thousands of
    single-network steps, uses it; the trainers take torch's foreach step with `portable.sqrt`.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False, fused: bool = False):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay, self.decoupled = tuple(betas), eps, weight_decay, decoupled
        self.fused = fused
        self.steps = self._step_counts()
        self.exp_avg, self.exp_avg_sq = self._zeros(), self._zeros()

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor] | None = None) -> None:
        """One step on the parameters' `.grad`, or on `grads` (one per parameter, e.g. `autograd.grad`'s)."""
        grads = self._grads() if grads is None else grads
        if self.fused:  # what torch.optim.adam's fused path runs on CPU tensors, without its wrappers
            torch._foreach_add_(self.steps, 1)
            fused_step = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
            fused_step(self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.steps, amsgrad=False,
                       lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay,
                       eps=self.eps, maximize=False, grad_scale=None, found_inf=None)
            return
        beta1, beta2 = self.betas
        torch._foreach_add_(self.steps, 1)
        if self.weight_decay and self.decoupled:
            torch._foreach_mul_(self.params, 1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - beta2)
        counts = [step.item() for step in self.steps]
        step_sizes = [-self.lr / (1 - beta1 ** n) for n in counts]
        denoms = [portable.sqrt(v) for v in self.exp_avg_sq]
        torch._foreach_div_(denoms, [(1 - beta2 ** n) ** 0.5 for n in counts])
        torch._foreach_add_(denoms, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denoms, step_sizes)


@torch.no_grad()
def clip_grad_norm_(grads: list[torch.Tensor], max_norm: float) -> None:
    """Scale `grads` in place to a total 2-norm of at most `max_norm`: the operations (and bits) of
    `torch.nn.utils.clip_grad_norm_(foreach=True)`, without its per-call grouping and wrappers."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)  # sgd() fills them on the first step

    @torch.no_grad()
    def step(self) -> None:
        sgd(self.params, self._grads(), self.buffers, foreach=True, fused=False,
            weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr, dampening=0.0,
            nesterov=self.nesterov, maximize=False)


class RMSprop(Optimizer):
    """RMSprop (Hinton's), torch.optim's formulation: optional momentum and L2 weight decay.

    torch has no fused RMSprop, and its others take `torch.sqrt`; this is torch's
    single-tensor step with `portable.sqrt`, within a few ulp of it.
    """

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.alpha, self.eps, self.momentum, self.weight_decay = alpha, eps, momentum, weight_decay
        self.square_avg = self._zeros()
        self.buffers = self._zeros() if momentum else []

    @torch.no_grad()
    def step(self) -> None:
        for i, (param, grad) in enumerate(zip(self.params, self._grads())):
            if self.weight_decay:
                grad = grad.add(param, alpha=self.weight_decay)
            self.square_avg[i].mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
            denom = portable.sqrt(self.square_avg[i]).add_(self.eps)
            if self.momentum:
                self.buffers[i].mul_(self.momentum).addcdiv_(grad, denom)
                param.add_(self.buffers[i], alpha=-self.lr)
            else:
                param.addcdiv_(grad, denom, value=-self.lr)


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
