"""Offline fidelity metrics between two sets of Q-values over the same states.

All take tensors of shape (N, A) (reference first) and return Python floats, so
reports never carry tensors. KL is KL(reference ‖ other) on softmax(Q / T).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def action_agreement(ref_q: torch.Tensor, other_q: torch.Tensor) -> float:
    """Fraction of states where both pick the same greedy action."""
    return (ref_q.argmax(-1) == other_q.argmax(-1)).double().mean().item()


def topk_agreement(ref_q: torch.Tensor, other_q: torch.Tensor, k: int) -> float:
    """Fraction of states where the reference's greedy action is in the other's top k."""
    k = min(k, other_q.shape[-1])
    top = other_q.topk(k, dim=-1).indices
    return (top == ref_q.argmax(-1, keepdim=True)).any(-1).double().mean().item()


def kl_divergence(ref_q: torch.Tensor, other_q: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean over states of KL(softmax(ref/T) ‖ softmax(other/T))."""
    log_p = F.log_softmax(ref_q.double() / temperature, -1)
    log_q = F.log_softmax(other_q.double() / temperature, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()


def prob_similarity(ref_q: torch.Tensor, other_q: torch.Tensor) -> float:
    """1 − mean |p_ref − p_other| over states and actions (softmax at T = 1)."""
    return 1.0 - (F.softmax(ref_q.double(), -1) - F.softmax(other_q.double(), -1)).abs().mean().item()


def q_fidelity(ref_q: torch.Tensor, other_q: torch.Tensor) -> dict[str, float]:
    """Q-value closeness: MSE (also relative to the reference's Q variance), MAE, cosines.

    `cosine` is the per-state cosine of raw Q vectors (the seeds' metric); on
    tasks where all actions share a large value (CartPole's Q ≈ 1/(1−γ)) it is
    near 1 for any network, so `centered_cosine` (Q minus its per-state mean,
    i.e. the advantages) is reported alongside.
    """
    ref, other = ref_q.double(), other_q.double()
    mse = (ref - other).pow(2).mean().item()
    variance = ref.var().item()
    centred_ref = ref - ref.mean(-1, keepdim=True)
    centred_other = other - other.mean(-1, keepdim=True)
    return {
        "mse": mse,
        "relative_mse": mse / variance if variance > 0 else float("inf"),
        "mae": (ref - other).abs().mean().item(),
        "cosine": F.cosine_similarity(ref, other, dim=-1).mean().item(),
        "centered_cosine": F.cosine_similarity(centred_ref, centred_other, dim=-1, eps=1e-12).mean().item(),
    }


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
            "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
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
