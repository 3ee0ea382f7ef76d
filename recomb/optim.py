"""Adam for the few stacked tensors of a `QNetworkStack`.

torch.optim's optimizers lazily import torch._dynamo on construction, which costs
about 1.2 s per process here — more than distilling both students takes. This
is the textbook update (Kingma & Ba, with bias correction) in a handful of
foreach calls; tests check it against torch.optim.Adam.
"""

from __future__ import annotations

import math

import torch


class Adam:
    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        bias1 = 1 - beta1 ** self.steps
        bias2 = 1 - beta2 ** self.steps
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, value=-self.lr / bias1)
