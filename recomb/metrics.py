"""Offline fidelity metrics between two sets of Q-values over the same states.

All take tensors of shape (N, A) (reference first) and return Python floats, so
reports never carry tensors. KL is KL(reference ‖ other) on softmax(Q / T).
"""

from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F


def action_agreement(ref_q: torch.Tensor, other_q: torch.Tensor) -> float:
    """Fraction of states where both pick the same greedy action."""
    return (ref_q.argmax(-1) == other_q.argmax(-1)).double().mean().item()


def bound(parents_agreement):
    """U = a + (1 − a)/2: where the parents disagree a child matches only one, so min(agree_A, agree_B) ≤ U.

    Works on a float or an array of resampled agreements alike.
    """
    return parents_agreement + (1 - parents_agreement) / 2


def parents_reference(parent_a, parent_b, states: torch.Tensor) -> dict[str, float]:
    """What a child's primary on these states is read against: the parents' own agreement a, and U."""
    with torch.inference_mode():
        a = action_agreement(parent_a(states), parent_b(states))
    return {"U": bound(a), "parents' agreement": a}


def topk_hits(ref_q: torch.Tensor, other_q: torch.Tensor, k: int) -> torch.Tensor:
    """Per state: the reference's greedy action is among the other's k best."""
    top = other_q.topk(k, dim=-1).indices
    return (top == ref_q.argmax(-1, keepdim=True)).any(-1)


def topk_agreement(ref_q: torch.Tensor, other_q: torch.Tensor, k: int) -> float:
    """Fraction of states where the reference's greedy action is in the other's top k."""
    return topk_hits(ref_q, other_q, min(k, other_q.shape[-1])).double().mean().item()


def kl_per_state(ref_q: torch.Tensor, other_q: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(ref/T) ‖ softmax(other/T)) of each state, in float64 (no `exp`: see `recomb.portable`)."""
    log_p = F.log_softmax(ref_q.double() / temperature, -1)
    log_q = F.log_softmax(other_q.double() / temperature, -1)
    return (F.softmax(ref_q.double() / temperature, -1) * (log_p - log_q)).sum(-1)


def kl_divergence(ref_q: torch.Tensor, other_q: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean over states of KL(softmax(ref/T) ‖ softmax(other/T))."""
    return kl_per_state(ref_q, other_q, temperature).mean().item()


def prob_similarity(ref_q: torch.Tensor, other_q: torch.Tensor) -> float:
    """1 − mean |p_ref − p_other| over states and actions (softmax at T = 1)."""
    return 1.0 - (F.softmax(ref_q.double(), -1) - F.softmax(other_q.double(), -1)).abs().mean().item()


def advantages(q: torch.Tensor) -> torch.Tensor:
    """Q minus its per-state mean over actions: what the greedy choice depends on.

    On CartPole all actions share a value near 1/(1−γ) ≈ 100 and differ by a fraction
    of 1, so any figure of raw Q is dominated by that shared value; advantages drop it.
    """
    return q - q.mean(-1, keepdim=True)


def q_fidelity(ref_q: torch.Tensor, other_q: torch.Tensor) -> dict[str, float]:
    """Q-value closeness: MSE (also relative to the reference's Q variance), MAE, cosines,
    and the advantage error that the validation gates use.

    `cosine` (the seeds' metric) and `relative_mse` are computed on raw Q, where the
    value all actions share dominates: the cosine is near 1 for any network, and the
    MSE mostly measures that value, not the action gaps; they are reported but do not
    gate. `centered_cosine` is the per-state cosine of the advantages: their direction
    (with two actions it is 2·agreement − 1, ties aside). `advantage_relative_mse` is
    the MSE of the advantages over their variance in the reference (1 − R² of the
    advantages: 0 for a copy, 1 for a network without action preferences, about 2
    for an unrelated one of the same spread), so it also sees how far the action
    gaps are off in size. `advantage_correlation` (pooled over states and actions)
    sees whether the gaps grow and shrink together across states, whatever their
    overall size: a student trained with hard targets has deliberately wider gaps
    than its teacher, which the relative MSE counts as error.
    """
    ref, other = ref_q.double(), other_q.double()
    mse = (ref - other).pow(2).mean().item()
    variance = ref.var().item()
    ref_adv, other_adv = advantages(ref), advantages(other)
    advantage_variance = ref_adv.pow(2).mean().item()  # advantages have mean 0 in every state
    advantage_mse = (ref_adv - other_adv).pow(2).mean().item()
    return {
        "mse": mse,
        "relative_mse": mse / variance if variance > 0 else float("inf"),
        "mae": (ref - other).abs().mean().item(),
        "cosine": F.cosine_similarity(ref, other, dim=-1).mean().item(),
        "centered_cosine": F.cosine_similarity(ref_adv, other_adv, dim=-1, eps=1e-12).mean().item(),
        "advantage_relative_mse": advantage_mse / advantage_variance if advantage_variance > 0 else float("inf"),
        "advantage_correlation": _correlation(ref_adv.flatten(), other_adv.flatten()),
    }


def _correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation; 0 when either side is constant (no preference to correlate with)."""
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt((x.pow(2).sum() * y.pow(2).sum()).item())
    return (x * y).sum().item() / norm if norm > 0 else 0.0


def compare(ref_q: torch.Tensor, other_q: torch.Tensor, top_k: int, temperature: float = 1.0) -> dict[str, float]:
    """The full offline comparison used by every validation stage."""
    return {
        "action_agreement": action_agreement(ref_q, other_q),
        f"top{top_k}_agreement": topk_agreement(ref_q, other_q, top_k),
        "kl_divergence": kl_divergence(ref_q, other_q, temperature),
        "prob_similarity": prob_similarity(ref_q, other_q),
        **q_fidelity(ref_q, other_q),
    }


def batch1_latency_ms(models: dict[str, torch.nn.Module], states: torch.Tensor, repeats: int,
                      warmup: int = 20) -> dict[str, dict[str, float]]:
    """Median / mean / p95 wall time of single-state forward passes per model, in milliseconds.

    The models take turns on each state, so drifts in machine load hit all of them
    alike and their ratio is fair. Timing figures vary between runs, so callers keep
    them out of hashed outputs.
    """
    rows = [states[i % len(states)].unsqueeze(0) for i in range(repeats + warmup)]
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for i, row in enumerate(rows):
            for name, model in models.items():
                start = time.perf_counter()
                model(row)
                if i >= warmup:
                    samples[name].append((time.perf_counter() - start) * 1e3)
    stats = {}
    for name, times in samples.items():
        times.sort()
        stats[name] = {
            "median_ms": statistics.median(times),
            "mean_ms": statistics.fmean(times),
            "p95_ms": times[math.ceil(0.95 * len(times)) - 1],  # nearest rank: the smallest at or above 95 %
        }
    return stats


def throughput(model: torch.nn.Module, states: torch.Tensor, batch_size: int, repeats: int) -> float:
    """States per second through `model` in batches of `batch_size` (median of `repeats` passes)."""
    batch = states[torch.arange(batch_size) % len(states)]
    times = []
    with torch.inference_mode():
        model(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)
