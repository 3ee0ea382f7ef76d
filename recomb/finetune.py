"""Fine-tuning a crossover child against its two parents.

Teacher modes (`teacher_mode`):
- `a`: the seeds' recipe — distil from parent A alone. The child collapses onto A.
- `dual`: the soft target is the mixture weight_a·p_A + (1 − weight_a)·p_B of the two
  parents' softmax(Q / T) (the gradient of a weighted sum of KLs to both parents);
  hard and Q targets are the same weighted blend of Q-values.
- `balanced`: built to maximise min(agreement with A, agreement with B). Where the
  parents pick the same action the child learns it (soft target: the mean of their
  distributions). Where they disagree, the child can match only one of them, so the
  best it can do for the minimum is to side with each on half of those states; it
  sides with the parent that is relatively more confident there: each parent's top-2
  Q margin is normalised by its median margin on the train states (so parents with
  different Q scales compare), and the disagreement states are split at the median
  of (normalised margin A − normalised margin B). The split is reported as `balance`.

The objective is the distillation one (`distill.objective`) on these per-state targets.
`quantization_applied` other than `none` trains through int8 fake-quantized weights
(as QAT does), so the child converts to int8 with no further loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from .config import Section
from .distill import _dropout_masks, check_training_knobs, objective, split_indices
from .networks import QNetwork, QNetworkStack
from .optim import OPTIMIZERS, ReduceOnPlateau, make_optimizer
from .quantize import fake_quantize_weight


@dataclass(frozen=True)
class FinetuneConfig(Section):
    teacher_mode: Literal["a", "dual", "balanced"]
    weight_a: float
    learning_rate: float
    epochs: int
    batch_size: int
    max_grad_norm: float
    val_fraction: float
    seed: int
    train_dropout: bool
    loss_fn: Literal["kl", "mse"]
    temperature: float
    temp_decay: float
    alpha: float
    q_weight: float
    lr_schedule_patience: int
    lr_schedule_factor: float
    early_stopping_patience: int
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"]
    optimizer_kwargs: dict
    quantization_applied: Literal["none", "ptq_dynamic", "ptq_static", "qat_float"]

    def check(self) -> None:
        self.require(0 <= self.weight_a <= 1, "weight_a", "must be in [0, 1]")
        check_training_knobs(self, "learning_rate")
        self.require(self.lr_schedule_patience >= 0, "lr_schedule_patience", "must be ≥ 0 (0 = off)")
        self.require(0 < self.lr_schedule_factor < 1, "lr_schedule_factor", "must be in (0, 1)")
        self.require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be ≥ 0 (0 = off)")
        allowed = OPTIMIZERS[self.optimizer][1]
        unknown = sorted(set(self.optimizer_kwargs) - allowed)
        self.require(not unknown, "optimizer_kwargs",
                     f"{self.optimizer} takes only {', '.join(sorted(allowed))}")


def normalised_margin(q: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 Q per state, over the median such margin on `reference` Q-values."""
    top = q.topk(2, dim=-1).values
    ref_top = reference.topk(2, dim=-1).values
    return (top[:, 0] - top[:, 1]) / (ref_top[:, 0] - ref_top[:, 1]).median().clamp_min(1e-12)


@dataclass
class Targets:
    """Per-state training targets built from the two parents' Q-values (N states)."""

    q: torch.Tensor                       # (N, A) Q regression target; its argmax is the hard target
    soft: Callable[[float], torch.Tensor]  # temperature → (N, A) target log-probabilities
    balance: dict


def make_targets(q_a: torch.Tensor, q_b: torch.Tensor, cfg: FinetuneConfig, share_a: float = 0.5) -> Targets:
    """The targets of `cfg.teacher_mode`; `balance` says how the child is split between parents.

    In `balanced` mode the `share_a` of disagreement states where A is relatively
    most confident side with A, the rest with B.
    """
    agree = q_a.argmax(-1) == q_b.argmax(-1)
    balance = {"parents_agree": agree.double().mean().item()}
    if cfg.teacher_mode == "a":
        return Targets(q_a, lambda t: F.log_softmax(q_a / t, -1), {**balance, "weight_a": 1.0})
    if cfg.teacher_mode == "dual":
        w = cfg.weight_a
        mix = lambda t: torch.log(w * F.softmax(q_a / t, -1) + (1 - w) * F.softmax(q_b / t, -1))  # noqa: E731
        return Targets(w * q_a + (1 - w) * q_b, mix, {**balance, "weight_a": w})
    lean = normalised_margin(q_a, q_a) - normalised_margin(q_b, q_b)
    disagree = ~agree
    side_a = torch.zeros_like(agree)
    if disagree.any():
        side_a = disagree & (lean > torch.quantile(lean[disagree], 1 - share_a))
    side_b = disagree & ~side_a
    target_q = torch.where(side_a.unsqueeze(-1), q_a, torch.where(side_b.unsqueeze(-1), q_b, (q_a + q_b) / 2))

    def soft(t: float) -> torch.Tensor:
        p_a, p_b = F.softmax(q_a / t, -1), F.softmax(q_b / t, -1)
        mixed = torch.where(side_a.unsqueeze(-1), p_a, torch.where(side_b.unsqueeze(-1), p_b, (p_a + p_b) / 2))
        return torch.log(mixed.clamp_min(1e-30))

    n_disagree = int(disagree.sum())
    balance.update({
        "share_a": share_a,
        "disagreements_to_a": side_a.double().sum().item() / max(1, n_disagree),
        "disagreements_where_a_more_confident": (disagree & (lean > 0)).double().sum().item() / max(1, n_disagree),
    })
    return Targets(target_q, soft, balance)


@dataclass
class FinetuneResult:
    child: QNetwork
    history: list[dict]
    best_epoch: int
    stopped_early: bool
    balance: dict


def finetune(child: QNetwork, teacher_a: torch.nn.Module, teacher_b: torch.nn.Module, states: torch.Tensor,
             cfg: FinetuneConfig, on_epoch: Callable[[dict], None] | None = None) -> FinetuneResult:
    """Train `child` towards the targets of `cfg.teacher_mode`; keep its best validation epoch.

    The best epoch is the one with the lowest validation loss. In `balanced` mode,
    after every epoch the share of disagreement states given to A moves towards the
    parent the child agrees with less on the validation states (the two parents'
    halves are not equally easy to learn), so validation losses are taken against
    that epoch's targets. Epoch 0 (the child as given) competes too, so fine-tuning
    never returns a child that validates worse than the raw one.
    """
    with torch.inference_mode():
        q_a, q_b = teacher_a.eval()(states), teacher_b.eval()(states)
    share_a = 0.5
    targets = make_targets(q_a, q_b, cfg, share_a)
    disagreement = max(1e-3, 1 - targets.balance["parents_agree"])
    balanced = cfg.teacher_mode == "balanced"
    train_idx, val_idx = split_indices(len(states), cfg.val_fraction, cfg.seed)
    centred = targets.q[train_idx] - targets.q[train_idx].mean(-1, keepdim=True)
    q_scale = torch.stack([targets.q[train_idx].var(), centred.var()]).clamp_min(1e-8).unsqueeze(0)
    stack = QNetworkStack(child.arch, [child.state_dict()])
    if cfg.quantization_applied != "none":
        stack.weight_transform = fake_quantize_weight
    optimizer = make_optimizer(cfg.optimizer, stack.parameters(), cfg.learning_rate, cfg.optimizer_kwargs)
    plateau = ReduceOnPlateau(optimizer, cfg.lr_schedule_patience, cfg.lr_schedule_factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    bs, n_train = cfg.batch_size, len(train_idx)
    steps = (n_train + bs - 1) // bs

    def losses(idx: torch.Tensor, temperature: float, soft: torch.Tensor, masks=None) -> dict[str, torch.Tensor]:
        child_q = stack(states[idx], dropout_masks=masks)
        return objective(child_q, targets.q[idx].unsqueeze(0), q_scale, cfg, temperature, soft[idx].unsqueeze(0))

    def validate(epoch: int, temperature: float, train_loss: float | None) -> dict:
        stack.eval()
        with torch.no_grad():
            val_loss = losses(val_idx, cfg.temperature, targets.soft(cfg.temperature))["total"].item()
            child_q = stack(states[val_idx])[0]
        picks = child_q.argmax(-1)
        agree_a = (picks == q_a[val_idx].argmax(-1)).double().mean().item()
        agree_b = (picks == q_b[val_idx].argmax(-1)).double().mean().item()
        return {"epoch": epoch, "temperature": temperature, "lr": optimizer.lr, "train_loss": train_loss,
                "val_loss": val_loss, "val_agreement_a": agree_a, "val_agreement_b": agree_b,
                "val_primary": min(agree_a, agree_b), "share_a": share_a}

    history = [validate(0, cfg.temperature, None)]
    best = history[0]
    best_state = {k: v.detach().clone() for k, v in stack.params.items()}
    stopped_early = False
    for epoch in range(1, cfg.epochs + 1):
        temperature = cfg.temperature * cfg.temp_decay ** (epoch - 1)
        order = train_idx[torch.randperm(n_train, generator=gen)]
        dropout = child.arch.dropout if cfg.train_dropout else 0.0
        masks = _dropout_masks((2, steps * bs, child.arch.hidden), dropout, [gen])
        soft = targets.soft(temperature)
        stack.train()
        total = 0.0
        for step in range(steps):
            idx = order[step * bs:(step + 1) * bs]
            loss = losses(idx, temperature, soft, masks[:, :, step * bs:step * bs + len(idx)])["total"]
            optimizer.zero_grad()
            loss.sum().backward()
            stack.per_member_grad_norm_clip_(cfg.max_grad_norm)
            optimizer.step()
            total += loss.item() * len(idx)
        row = validate(epoch, temperature, total / n_train)
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if row["val_loss"] < best["val_loss"]:
            best = row
            best_state = {k: v.detach().clone() for k, v in stack.params.items()}
        if cfg.lr_schedule_patience:
            plateau.step(row["val_loss"])
        if balanced:
            # Giving Δ of the disagreements to A moves agreement with A up and with B down
            # by about Δ·disagreement each; go half-way towards equal agreement.
            gap = row["val_agreement_b"] - row["val_agreement_a"]
            share_a = min(0.95, max(0.05, share_a + 0.5 * gap / (2 * disagreement)))
            targets = make_targets(q_a, q_b, cfg, share_a)
        if cfg.early_stopping_patience and epoch - best["epoch"] >= cfg.early_stopping_patience:
            stopped_early = epoch < cfg.epochs
            break
    with torch.no_grad():
        for key, value in stack.params.items():
            value.copy_(best_state[key])
    balance = make_targets(q_a, q_b, cfg, best["share_a"]).balance
    return FinetuneResult(stack.member(0), history, best["epoch"], stopped_early, balance)
