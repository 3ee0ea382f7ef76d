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
- `competent`: a disagreement state is taught by the parent `competence` names for the condition (task
  variant) it was visited in: the one that alone passes there, else the generalist; only where that is a tie
  too, the confidence rule above (an even split, not adapted). The primary that picks the best epoch counts
  agreement with a parent only on the states it teaches or ties on: the child is asked to match each parent
  where that parent should be matched. A memoryless child sees only the observation: where two variants call
  for different actions on the same observation it can follow one (see `competence`).

The objective is the distillation one (`distill.objective`) on these per-state targets.
`quantization_applied` other than `none` trains through int8 fake-quantized weights
(as QAT does). With `ptq_dynamic` the int8 child computes what was trained (weights
int8, activations float). `ptq_static` also quantizes activations, with ranges
calibrated after training; training does not simulate that, so the int8 child
differs from the trained one by the activation rounding (measured in the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from ..config import Section
from ..errors import RecombError
from ..selection import epoch_key
from ..networks import QNetwork, QNetworkStack
from ..optim import OPTIMIZERS, ReduceOnPlateau, kwargs_problem, make_optimizer
from ..portable import LOG_FLOOR, log_mixture
from ..quantization.int8 import Int8QNetwork
from ..quantization.quantize import PTQConfig, calibration_batches, fake_quantize_weight, ptq
from .distill import _dropout_masks, check_budget, check_training_knobs, lr_factor, objective


@dataclass(frozen=True)
class Regime(Section):
    """A named fine-tune budget (params `regimes.<name>`): the search grid's second axis."""

    epochs: int
    learning_rate: float
    batch_size: int
    quantization_applied: Literal["none", "ptq_dynamic", "ptq_static"]

    def check(self) -> None:
        check_budget(self, "learning_rate")


@dataclass(frozen=True)
class FinetuneConfig(Section):
    """The `finetune` section with its regime's budget filled in (see `finetune_config`)."""

    sections = ("regimes", "finetune")

    @classmethod
    def validate(cls, params: dict) -> FinetuneConfig:
        return finetune_config(params)

    regime: str
    epochs: int
    learning_rate: float
    batch_size: int
    quantization_applied: Literal["none", "ptq_dynamic", "ptq_static"]
    teacher_mode: Literal["a", "dual", "balanced", "competent"]
    weight_a: float
    max_grad_norm: float
    seed: int
    train_dropout: bool
    loss_fn: Literal["kl", "mse"]
    temperature: float
    temp_decay: float
    alpha: float
    q_weight: float
    lr_schedule: Literal["constant", "cosine"]
    lr_schedule_patience: int
    lr_schedule_factor: float
    early_stopping_patience: int
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"]
    optimizer_kwargs: dict

    def check(self) -> None:
        self.require(0 <= self.weight_a <= 1, "weight_a", "must be in [0, 1]")
        check_training_knobs(self, "learning_rate")
        self.require(self.lr_schedule_patience >= 0, "lr_schedule_patience", "must be ≥ 0 (0 = off)")
        self.require(not (self.lr_schedule == "cosine" and self.lr_schedule_patience), "lr_schedule_patience",
                     "must be 0 with lr_schedule cosine (it decays the rate on its own)")
        self.require(0 < self.lr_schedule_factor < 1, "lr_schedule_factor", "must be in (0, 1)")
        self.require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be ≥ 0 (0 = off)")
        allowed = OPTIMIZERS[self.optimizer][1]
        unknown = sorted(set(self.optimizer_kwargs) - allowed)
        self.require(not unknown, "optimizer_kwargs",
                     f"{self.optimizer} takes only {', '.join(sorted(allowed))}")
        problem = kwargs_problem(self.optimizer_kwargs)
        self.require(problem is None, "optimizer_kwargs", str(problem))


def regimes(params: dict, source: str = "params.yaml") -> dict[str, Regime]:
    """Every named regime of params `regimes`, validated."""
    if not isinstance(params.get("regimes"), dict) or not params["regimes"]:
        raise RecombError(f"{source}: section 'regimes' is missing or empty")
    return {name: Regime.from_mapping(body, f"{source}: regimes.{name}") for name, body in params["regimes"].items()}


def finetune_config(params: dict, regime: str | None = None, source: str = "params.yaml") -> FinetuneConfig:
    """The `finetune` section with the budget of `regime` (default: `finetune.regime`)."""
    section = params.get("finetune")
    if not isinstance(section, dict):
        raise RecombError(f"{source}: section 'finetune' is missing")
    name = section.get("regime") if regime is None else regime
    known = regimes(params, source)
    if not isinstance(name, str):
        raise RecombError(f"{source}: finetune.regime: must be the name of one of the regimes "
                          f"({', '.join(known)}) (got {name!r})")
    budget = [key for key in Regime.__dataclass_fields__ if key in section]
    if budget:
        raise RecombError(f"{source}: finetune.{budget[0]}: a regime's key; set it in regimes.<name> (the regime "
                          f"finetune.regime picks, now {name!r}) or pick another regime")
    if name not in known:
        raise RecombError(f"{source}: finetune.regime: {name!r} is not one of the regimes ({', '.join(known)})")
    return FinetuneConfig.from_mapping({**section, "regime": name, **known[name].to_dict()}, f"{source}: finetune")


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


def make_targets(q_a: torch.Tensor, q_b: torch.Tensor, cfg: FinetuneConfig, share_a: float = 0.5,
                 sides: torch.Tensor | None = None) -> Targets:
    """The targets of `cfg.teacher_mode`; `balance` says how the child is split between parents.

    In `balanced` mode the `share_a` of disagreement states where A is relatively
    most confident side with A, the rest with B. In `competent` mode, `sides` (per state: 1 where A is the
    more competent parent, −1 where B is, 0 where neither) first gives each decided disagreement to its
    parent; the `share_a` split applies to the undecided ones.
    """
    agree = q_a.argmax(-1) == q_b.argmax(-1)
    balance = {"parents_agree": agree.double().mean().item()}
    if cfg.teacher_mode == "a":
        return Targets(q_a, lambda t: F.log_softmax(q_a / t, -1), {**balance, "weight_a": 1.0})
    if cfg.teacher_mode == "dual":
        w = cfg.weight_a
        mix = lambda t: log_mixture(F.log_softmax(q_a / t, -1), F.log_softmax(q_b / t, -1), w)  # noqa: E731
        return Targets(w * q_a + (1 - w) * q_b, mix, {**balance, "weight_a": w})
    lean = normalised_margin(q_a, q_a) - normalised_margin(q_b, q_b)
    disagree = ~agree
    decided = disagree & (sides != 0) if cfg.teacher_mode == "competent" and sides is not None \
        else torch.zeros_like(agree)
    free = disagree & ~decided
    side_a = decided & (sides == 1) if decided.any() else torch.zeros_like(agree)
    if free.any():
        side_a = side_a | (free & (lean > torch.quantile(lean[free], 1 - share_a)))
    side_b = disagree & ~side_a
    target_q = torch.where(side_a.unsqueeze(-1), q_a, torch.where(side_b.unsqueeze(-1), q_b, (q_a + q_b) / 2))

    def soft(t: float) -> torch.Tensor:
        log_a, log_b = F.log_softmax(q_a / t, -1), F.log_softmax(q_b / t, -1)
        both = log_mixture(log_a, log_b, 0.5)
        mixed = torch.where(side_a.unsqueeze(-1), log_a, torch.where(side_b.unsqueeze(-1), log_b, both))
        return mixed.clamp_min(LOG_FLOOR)

    n_disagree = int(disagree.sum())
    balance.update({
        "share_a": share_a,
        "disagreements_to_a": side_a.double().sum().item() / max(1, n_disagree),
        "disagreements_where_a_more_confident": (disagree & (lean > 0)).double().sum().item() / max(1, n_disagree),
        **({"disagreements_by_competence": decided.double().sum().item() / max(1, n_disagree)}
           if cfg.teacher_mode == "competent" else {}),
    })
    return Targets(target_q, soft, balance)


@dataclass
class FinetuneResult:
    child: QNetwork
    history: list[dict]
    best_epoch: int
    stopped_early: bool
    balance: dict


def finetune(children: list[QNetwork], teacher_a: torch.nn.Module, teacher_b: torch.nn.Module,
             train_states: torch.Tensor, val_states: torch.Tensor, cfg: FinetuneConfig,
             on_epoch: Callable[[int], None] | None = None,
             sides: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[FinetuneResult]:
    """Train each child on `train_states` towards the targets of `cfg.teacher_mode`; keep its best epoch.

    The children train side by side as one `QNetworkStack` (one optimizer step for
    all), and each comes out with the same bits it would have trained alone: every
    per-member computation (forward, loss, gradient, clipping, update) is independent
    of the stack size, which tests check. They share the data order, so the search
    can vectorize a grid. Members cannot have learning rates of their own, so a
    plateau schedule (`lr_schedule_patience`) needs one child per call.

    With `lr_schedule: cosine` the rate decays to 0 over the run: at a constant rate
    the child keeps flipping sides on the states where the parents disagree, and its
    validation primary swings by several points from epoch to epoch.

    The best epoch is chosen on `val_states` (see `selection.epoch_key`: validation
    primary, ties broken by validation loss, with two teachers). In `balanced` mode,
    after every epoch the share of disagreement states given to A moves towards the
    parent the child agrees with less on the validation states (the two parents'
    halves are not equally easy to learn), so validation losses are taken against
    that epoch's targets. Epoch 0 (the child as given) competes too, so fine-tuning
    never returns a child that validates worse than the raw one. `sides` (the `competent` mode's, for the train
    and the validation states) says per state which parent is the more competent in its condition.
    """
    if cfg.lr_schedule_patience and len(children) > 1:
        raise ValueError("a plateau schedule adapts one learning rate: fine-tune one child per call")
    states = torch.cat([train_states, val_states])
    train_idx, val_idx = torch.arange(len(train_states)), torch.arange(len(train_states), len(states))
    with torch.inference_mode():
        q_a, q_b = teacher_a.eval()(states), teacher_b.eval()(states)
    if cfg.teacher_mode == "competent" and sides is None:
        raise ValueError("teacher_mode competent needs each state's side (`sides`)")
    side = torch.cat(sides) if sides is not None else torch.zeros(len(states), dtype=torch.int64)
    counts_a, counts_b = side[val_idx] != -1, side[val_idx] != 1  # where agreeing with each parent counts
    n = len(children)
    shares = [0.5] * n
    members = [make_targets(q_a, q_b, cfg, 0.5, side)] * n
    disagreement = max(1e-3, 1 - members[0].balance["parents_agree"])
    balanced = cfg.teacher_mode == "balanced"
    first = members[0].q[train_idx]
    q_scale = torch.stack([first.var(), (first - first.mean(-1, keepdim=True)).var()]).clamp_min(1e-8).unsqueeze(0)
    arch = children[0].arch
    stack = QNetworkStack(arch, [child.state_dict() for child in children])
    if cfg.quantization_applied != "none":
        stack.weight_transform = fake_quantize_weight
    optimizer = make_optimizer(cfg.optimizer, stack.parameters(), cfg.learning_rate, cfg.optimizer_kwargs)
    plateau = ReduceOnPlateau(optimizer, cfg.lr_schedule_patience, cfg.lr_schedule_factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    bs, n_train = cfg.batch_size, len(train_idx)
    steps = (n_train + bs - 1) // bs

    def stacked(temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, N, A) Q targets and target log-probabilities at `temperature`."""
        return (torch.stack([t.q for t in members]), torch.stack([t.soft(temperature) for t in members]))

    def validate(epoch: int, temperature: float, train_loss: list[float | None]) -> list[dict]:
        target_q, soft = stacked(cfg.temperature)
        stack.eval()
        with torch.no_grad():
            child_q = stack(states[val_idx])
            val_loss = objective(child_q, target_q[:, val_idx], q_scale, cfg, cfg.temperature, soft[:, val_idx])["total"]
        picks = child_q.argmax(-1)
        hits_a, hits_b = picks == q_a[val_idx].argmax(-1), picks == q_b[val_idx].argmax(-1)
        agree_a, agree_b = hits_a.double().mean(-1), hits_b.double().mean(-1)
        # a parent that teaches no validation state does not bound the primary
        goal = torch.minimum(*(hits[:, counts].double().mean(-1) if counts.any()
                               else torch.ones(n, dtype=torch.float64)
                               for hits, counts in ((hits_a, counts_a), (hits_b, counts_b))))
        return [{"epoch": epoch, "temperature": temperature, "lr": optimizer.lr, "train_loss": train_loss[m],
                 "val_loss": val_loss[m].item(), "val_agreement_a": agree_a[m].item(),
                 "val_agreement_b": agree_b[m].item(), "val_primary": goal[m].item(),
                 "share_a": shares[m]} for m in range(n)]

    histories = [[row] for row in validate(0, cfg.temperature, [None] * n)]
    best = [h[0] for h in histories]
    best_state = {k: v.detach().clone() for k, v in stack.params.items()}
    running = [True] * n
    stopped_early = [False] * n
    for epoch in range(1, cfg.epochs + 1):
        temperature = cfg.temperature * cfg.temp_decay ** (epoch - 1)
        order = train_idx[torch.randperm(n_train, generator=gen)]
        dropout = arch.dropout if cfg.train_dropout else 0.0
        # One draw of masks shared by all members: what each would draw alone from `gen`.
        masks = _dropout_masks((2, steps * bs, arch.hidden), dropout, [gen]).expand(n, -1, -1, -1)
        target_q, soft = stacked(temperature)
        stack.train()
        totals = torch.zeros(n, dtype=torch.float64)
        for step in range(steps):
            idx = order[step * bs:(step + 1) * bs]
            child_q = stack(states[idx], dropout_masks=masks[:, :, step * bs:step * bs + len(idx)])
            loss = objective(child_q, target_q[:, idx], q_scale, cfg, temperature, soft[:, idx])["total"]
            if cfg.lr_schedule == "cosine":
                optimizer.lr = cfg.learning_rate * lr_factor((epoch - 1) * steps + step, cfg.epochs * steps,
                                                             "cosine", 0.0)
            optimizer.zero_grad()
            loss.sum().backward()
            stack.per_member_grad_norm_clip_(cfg.max_grad_norm)
            optimizer.step()
            totals += loss.detach().double() * len(idx)
        rows = validate(epoch, temperature, (totals / n_train).tolist())
        if on_epoch:
            on_epoch(epoch)
        for m, row in enumerate(rows):
            if not running[m]:
                continue
            histories[m].append(row)
            if epoch_key(row, cfg.teacher_mode) > epoch_key(best[m], cfg.teacher_mode):
                best[m] = row
                for key, value in stack.params.items():
                    best_state[key][m] = value.detach()[m]
            if balanced:
                # Giving Δ of the disagreements to A moves agreement with A up and with B down
                # by about Δ·disagreement each; go half-way towards equal agreement.
                gap = row["val_agreement_b"] - row["val_agreement_a"]
                shares[m] = min(0.95, max(0.05, shares[m] + 0.5 * gap / (2 * disagreement)))
                members[m] = make_targets(q_a, q_b, cfg, shares[m], side)
            if cfg.early_stopping_patience and epoch - best[m]["epoch"] >= cfg.early_stopping_patience:
                running[m] = False
                stopped_early[m] = epoch < cfg.epochs
        if cfg.lr_schedule_patience:
            plateau.step(rows[0]["val_loss"])
        if not any(running):
            break
    with torch.no_grad():
        for key, value in stack.params.items():
            value.copy_(best_state[key])
    return [FinetuneResult(stack.member(m), histories[m], best[m]["epoch"], stopped_early[m],
                           make_targets(q_a, q_b, cfg, best[m]["share_a"], side).balance) for m in range(n)]


def int8_child(child: QNetwork, states: torch.Tensor, cfg: FinetuneConfig, quant: PTQConfig) -> Int8QNetwork:
    """The int8 child of a quantization-aware regime, as the finetune stage converts it."""
    mode = "static" if cfg.quantization_applied == "ptq_static" else "dynamic"
    calibration = calibration_batches(states, quant.calibration_batches, quant.calibration_batch_size,
                                      quant.calibration_seed)
    return ptq(child, mode, calibration, quant.backend)
