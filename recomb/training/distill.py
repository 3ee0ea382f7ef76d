"""Knowledge distillation of frozen teacher Q-networks into smaller students.

The objective per student is

    alpha · soft + (1 − alpha) · hard + q_weight · q_regression

where `soft` is T²·KL(softmax(teacher/T) ‖ softmax(student/T)) (or the MSE of those
probabilities with `loss_fn: mse`), `hard` is cross-entropy on the teacher's greedy
action, and `q_regression` averages the MSE of raw Q-values over the teacher's Q
variance and the MSE of advantages (Q minus its per-state mean) over the teacher's
advantage variance. The KL term only sees Q differences, so a KL-only student loses
the teacher's Q scale; the raw-Q part keeps it, unit-free. On CartPole the state
value (≈ 1/(1−γ)) dwarfs the action differences, so without the advantage part the
regression would ignore exactly what decides the greedy action.

Several students (both pairs, or many children later) train together as one
`QNetworkStack`. Each member has its own data order and dropout stream drawn from
its own seed, so a member's result does not depend on who it was trained with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Section
from ..networks import Architecture, MLPArchitecture, QNetwork, QNetworkStack, seeded_qnetwork, student_hidden, width
from ..optim import Adam
from ..portable import probabilities
from ..selection import split_indices


@dataclass(frozen=True)
class DistillConfig(Section):
    sections = ("distill",)

    student_hidden: int        # 0 = max(16, parent hidden // 2)
    student_dropout: float
    student_family: Literal["layernorm", "plain"]  # plain: no LayerNorm, a child SB3 and CleanRL can load
    train_dropout: bool
    epochs: int
    lr: float
    lr_schedule: Literal["constant", "cosine"]
    warmup_fraction: float
    batch_size: int
    max_grad_norm: float
    val_fraction: float
    seed: int
    loss_fn: Literal["kl", "mse"]
    temperature: float
    temp_decay: float
    alpha: float
    q_weight: float
    augment_copies: int   # noisy copies of each train state, labelled by the teacher (0 = the buffer alone)
    augment_noise: float  # each copy's noise std is drawn from [0, augment_noise], in units of each feature's std

    def check(self) -> None:
        self.require(self.augment_copies >= 0, "augment_copies", "must be ≥ 0 (0 = no noisy copies)")
        self.require(self.augment_noise > 0 or self.augment_copies == 0, "augment_noise",
                     "must be > 0 when augment_copies is not 0 (a copy without noise is the state again)")
        self.require(self.student_hidden >= 0, "student_hidden", "must be ≥ 1, or 0 for half the parent's width")
        self.require(0 <= self.student_dropout < 1, "student_dropout", "must be in [0, 1)")
        self.require(0 <= self.warmup_fraction < 1, "warmup_fraction", "must be in [0, 1)")
        check_training_knobs(self, "lr")
        self.require(0 < self.val_fraction < 1, "val_fraction", "must be in (0, 1)")


def check_budget(section: Section, lr_key: str) -> None:
    """Range rules of a training budget: epochs, learning rate, batch size (also a fine-tune regime's)."""
    section.require(section.epochs >= 1, "epochs", "must be ≥ 1")
    section.require(getattr(section, lr_key) > 0, lr_key, "must be > 0")
    section.require(section.batch_size >= 1, "batch_size", "must be ≥ 1")


def check_training_knobs(section: Section, lr_key: str) -> None:
    """Range rules shared by every trainer's params section (distill, qat, finetune)."""
    check_budget(section, lr_key)
    section.require(section.max_grad_norm >= 0, "max_grad_norm", "must be ≥ 0 (0 = no clipping)")
    section.require(section.temperature > 0, "temperature", "must be > 0")
    section.require(0 < section.temp_decay <= 1, "temp_decay", "must be in (0, 1]")
    section.require(0 <= section.alpha <= 1, "alpha", "must be in [0, 1]")
    section.require(section.q_weight >= 0, "q_weight", "must be ≥ 0")


def objective(student_q: torch.Tensor, teacher_q: torch.Tensor, q_scale: torch.Tensor, cfg,
              temperature: float, teacher_logp: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-member loss terms for Q-values of shape (P, B, A); each term has shape (P,).

    `cfg` supplies loss_fn, alpha and q_weight. `teacher_logp` overrides the soft
    target softmax(teacher_q / T) (fine-tuning against a mixture of two teachers).
    """
    t = temperature
    if teacher_logp is None:
        teacher_logp = F.log_softmax(teacher_q / t, -1)
    student_logp = F.log_softmax(student_q / t, -1)
    teacher_p = probabilities(teacher_logp)
    if cfg.loss_fn == "kl":
        soft = (teacher_p * (teacher_logp - student_logp)).sum(-1).mean(-1) * t * t
    else:
        soft = (teacher_p - F.softmax(student_q / t, -1)).pow(2).mean((-1, -2))
    targets = teacher_q.argmax(-1)
    hard = F.cross_entropy(student_q.transpose(1, 2), targets, reduction="none").mean(-1)
    q_reg = (student_q - teacher_q).pow(2).mean((-1, -2)) / q_scale[:, 0]
    adv_err = (student_q - student_q.mean(-1, keepdim=True)) - (teacher_q - teacher_q.mean(-1, keepdim=True))
    q_reg = 0.5 * (q_reg + adv_err.pow(2).mean((-1, -2)) / q_scale[:, 1])
    total = cfg.alpha * soft + (1 - cfg.alpha) * hard + cfg.q_weight * q_reg
    return {"soft": soft, "hard": hard, "q": q_reg, "total": total}


def lr_factor(step: int, total: int, schedule: str, warmup_fraction: float) -> float:
    """Learning-rate multiplier: linear warm-up, then constant or cosine decay to zero.

    A short budget (25 epochs) profits from a high peak rate that is annealed away.
    """
    warmup = int(total * warmup_fraction)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class DistillResult:
    students: list[QNetwork]
    histories: list[list[dict]]
    best_epochs: list[int]

    def best_row(self, member: int) -> dict:
        """The history row of the epoch whose weights `students[member]` holds."""
        return next(r for r in self.histories[member] if r["epoch"] == self.best_epochs[member])


def noisy_copies(states: torch.Tensor, copies: int, max_std: float, seed: int) -> torch.Tensor:
    """`copies` perturbed copies of every state: Gaussian noise per feature in units of that feature's std over
    `states`, each copy's std drawn uniformly from [0, max_std].

    A student fitted on the rollout states alone matches its teacher there and nowhere near them: on
    LunarLander a 0.1σ noise changes a third of the teacher's actions and the student followed under half of
    those changes. Copies labelled by the teacher teach it the neighbourhood the validation gate probes, at a
    range of distances rather than the gate's one. float64 numpy draws: the same bits on every CPU."""
    rng = np.random.default_rng(seed)
    originals = states.numpy().astype(np.float64)
    rows = np.tile(originals, (copies, 1))
    feature_std = originals.std(axis=0, keepdims=True)
    noise_std = rng.uniform(0, max_std, (len(rows), 1))
    return torch.from_numpy((rows + rng.standard_normal(rows.shape) * noise_std * feature_std).astype(np.float32))


def _dropout_masks(shape: tuple[int, ...], p: float, gens: list[torch.Generator]) -> torch.Tensor:
    """Inverted-dropout masks of shape (P, *shape), one generator per member."""
    if p == 0:
        return torch.ones(len(gens), *shape)
    keep = torch.stack([torch.rand(shape, generator=g) >= p for g in gens])
    return keep.float() / (1 - p)


def initial_students(teacher_archs: list[Architecture | MLPArchitecture], base: DistillConfig,
                     seeds: list[int]) -> list[QNetwork]:
    """One freshly initialised student per teacher, all of one architecture (their stack, and later the child,
    need one): the student family at the requested width, or half the widest teacher's, with the student dropout.

    `distill` copies the weights into its stack, so a comparison can start every run from these same ones.
    """
    first = teacher_archs[0]
    arch = Architecture(first.input_dim, first.output_dim,
                        student_hidden(max(width(a) for a in teacher_archs), base.student_hidden), base.student_dropout,
                        layer_norm=base.student_family == "layernorm")
    return [seeded_qnetwork(arch, seed) for seed in seeds]


def distill(
    students: list[QNetwork],
    teachers: list[torch.nn.Module],
    states: torch.Tensor,
    cfg: DistillConfig,
    seeds: list[int],
    on_epoch: Callable[[int, list[dict]], None] | None = None,
    weight_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    score_start: bool = False,
) -> DistillResult:
    """Train each `students[p]` to mimic frozen `teachers[p]` on `states`; keep each best epoch.

    `states` is the training buffer; a `cfg.val_fraction` of it (seeded split)
    scores every epoch, and each student keeps the weights of its lowest
    validation loss; the rest, with `cfg.augment_copies` noisy copies of it, trains.
    Returns the students (eval mode) and per-epoch histories.
    `weight_transform` is applied to the Linear weights in every forward, training
    and validation alike (QAT passes int8 fake quantization). With `score_start`
    the starting weights are scored too (epoch 0, no train losses) and kept if no
    epoch beats them: fine-tuning an already trained network never returns worse,
    on validation, than what it was given.
    """
    arch = students[0].arch
    stack = QNetworkStack(arch, [s.state_dict() for s in students])
    stack.weight_transform = weight_transform
    with torch.inference_mode():
        teacher_q = torch.stack([t.eval()(states) for t in teachers])
    train_idx, val_idx = split_indices(len(states), cfg.val_fraction, cfg.seed)
    x_train, x_val = states[train_idx], states[val_idx]
    q_train, q_val = teacher_q[:, train_idx], teacher_q[:, val_idx]
    if cfg.augment_copies:
        noisy = noisy_copies(x_train, cfg.augment_copies, cfg.augment_noise, cfg.seed)
        with torch.inference_mode():
            q_noisy = torch.stack([t(noisy) for t in teachers])
        x_train, q_train = torch.cat([x_train, noisy]), torch.cat([q_train, q_noisy], 1)
    centred = q_train - q_train.mean(-1, keepdim=True)
    q_scale = torch.stack([q_train.var(dim=(1, 2)), centred.var(dim=(1, 2))], 1).clamp_min(1e-8)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    optimizer = Adam(stack.parameters(), lr=cfg.lr)
    members = len(students)
    n_train, bs = len(x_train), cfg.batch_size
    steps = (n_train + bs - 1) // bs
    best_loss = torch.full((members,), float("inf"))
    best_state = {k: v.detach().clone() for k, v in stack.params.items()}
    best_epochs = [0] * members
    histories: list[list[dict]] = [[] for _ in range(members)]

    def validate(epoch: int, temperature: float, train_sums: dict | None) -> list[dict]:
        """Score every member on the validation states, keep improvements, append history rows."""
        nonlocal best_loss
        stack.eval()
        with torch.no_grad():
            val_student = stack(x_val)
            val_losses = objective(val_student, q_val, q_scale, cfg, cfg.temperature)["total"]
            agree = (val_student.argmax(-1) == q_val.argmax(-1)).double().mean(-1)
            prob_sim = 1 - (F.softmax(val_student.double(), -1) - F.softmax(q_val.double(), -1)).abs().mean((-1, -2))
            improved = val_losses < best_loss
            for key, value in stack.params.items():
                best_state[key][improved] = value.detach()[improved]
            best_loss = torch.where(improved, val_losses, best_loss)
        rows = []
        for p in range(members):
            if improved[p]:
                best_epochs[p] = epoch
            train = {f"train_{name}loss": (train_sums[key][p] / n_train).item() if train_sums else None
                     for name, key in (("", "total"), ("soft_", "soft"), ("hard_", "hard"), ("q_", "q"))}
            row = {"epoch": epoch, "temperature": temperature, **train, "val_loss": val_losses[p].item(),
                   "val_agreement": agree[p].item(), "val_prob_similarity": prob_sim[p].item()}
            histories[p].append(row)
            rows.append(row)
        return rows

    if score_start:
        validate(0, cfg.temperature, None)
    for epoch in range(1, cfg.epochs + 1):
        temperature = cfg.temperature * cfg.temp_decay ** (epoch - 1)
        order = torch.stack([torch.randperm(n_train, generator=g) for g in gens])
        dropout = arch.dropout if cfg.train_dropout else 0.0
        masks = _dropout_masks((2, steps * bs, arch.hidden), dropout, gens)
        stack.train()
        sums = {key: torch.zeros(members) for key in ("soft", "hard", "q", "total")}
        for step in range(steps):
            idx = order[:, step * bs:(step + 1) * bs]
            batch_masks = masks[:, :, step * bs:step * bs + idx.shape[1]]
            student_q = stack(x_train[idx], dropout_masks=batch_masks)
            target_q = torch.gather(q_train, 1, idx.unsqueeze(-1).expand(-1, -1, q_train.shape[-1]))
            losses = objective(student_q, target_q, q_scale, cfg, temperature)
            optimizer.lr = cfg.lr * lr_factor((epoch - 1) * steps + step, cfg.epochs * steps,
                                              cfg.lr_schedule, cfg.warmup_fraction)
            optimizer.zero_grad()
            losses["total"].sum().backward()
            stack.per_member_grad_norm_clip_(cfg.max_grad_norm)
            optimizer.step()
            for key in sums:
                sums[key] += losses[key].detach() * idx.shape[1]
        rows = validate(epoch, temperature, sums)
        if on_epoch:
            on_epoch(epoch, rows)

    with torch.no_grad():
        for key, value in stack.params.items():
            value.copy_(best_state[key])
    return DistillResult([stack.member(p) for p in range(members)], histories, best_epochs)
