"""Confidence intervals for the figures that decide between networks.

A share of states (agreement) or a mean over episodes (return) is a sample
estimate: two children one state apart in 2000 are not different. Every interval
here is a seeded bootstrap (`scipy.stats.bootstrap`, BCa, falling back to the
percentile method when BCa is undefined) over states or episodes, so the same
inputs always give the same interval.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import Section
from .evaluation.metrics import bound


@dataclass(frozen=True)
class UncertaintyConfig(Section):
    """The `uncertainty` params section: how every interval is computed."""

    confidence: float   # e.g. 0.95
    resamples: int      # bootstrap resamples per interval
    seed: int

    def check(self) -> None:
        self.require(0.5 <= self.confidence < 1, "confidence", "must be in [0.5, 1)")
        self.require(self.resamples >= 100, "resamples", "must be ≥ 100")


def interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray],
             cfg: UncertaintyConfig) -> tuple[float, float]:
    """The bootstrap interval of `statistic(*samples, axis=-1)`, resampling the samples' rows together.

    Samples are aligned 1-D arrays (one entry per state or episode); resampling them
    together (paired) keeps each state's figures side by side, which is what a
    difference between two networks scored on the same states needs. Constant
    samples have no spread: the interval is the point.
    """
    from scipy import stats  # here, not at the top: scipy.stats takes ~0.6 s to import, most stages never bootstrap

    arrays = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    point = float(statistic(*arrays, axis=-1))
    if len(arrays[0]) < 2 or all(np.ptp(a) == 0 for a in arrays):
        return point, point
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # BCa announces its own failure; the percentile method then answers
            warnings.simplefilter("ignore", (stats.DegenerateDataWarning, RuntimeWarning))
            result = stats.bootstrap(arrays, statistic, n_resamples=cfg.resamples, batch=250, vectorized=True,
                                     paired=True, axis=-1, confidence_level=cfg.confidence, method=method,
                                     rng=np.random.default_rng(cfg.seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return min(low, point), max(high, point)
    return point, point


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis)


def _primary(hits_a: np.ndarray, hits_b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.minimum(hits_a.mean(axis=axis), hits_b.mean(axis=axis))


def _primary_difference(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray, axis: int = -1) -> np.ndarray:
    return _primary(a1, b1, axis) - _primary(a2, b2, axis)


def mean_interval(values: np.ndarray, cfg: UncertaintyConfig) -> dict:
    """Mean, standard deviation and interval of per-state hits or per-episode returns."""
    values = np.asarray(values, dtype=np.float64)
    low, high = interval((values,), _mean, cfg)
    return {"mean": float(values.mean()), "std": float(values.std()), "low": low, "high": high}


def primary_interval(hits_a: np.ndarray, hits_b: np.ndarray, cfg: UncertaintyConfig) -> dict:
    """min(agreement A, agreement B) and its interval, from per-state hits against A and B."""
    low, high = interval((hits_a, hits_b), _primary, cfg)
    return {"value": float(_primary(np.asarray(hits_a, float), np.asarray(hits_b, float))), "low": low, "high": high}


def _primary_over_bound(hits_a: np.ndarray, hits_b: np.ndarray, parents_agree: np.ndarray, axis: int = -1) -> np.ndarray:
    return _primary(hits_a, hits_b, axis) / bound(parents_agree.mean(axis=axis))


def primary_over_bound_interval(hits_a: np.ndarray, hits_b: np.ndarray, parents_agree: np.ndarray,
                                cfg: UncertaintyConfig) -> dict:
    """primary / U and its interval; U is recomputed on every resample, from the parents' per-state agreement."""
    samples = tuple(np.asarray(s, dtype=np.float64) for s in (hits_a, hits_b, parents_agree))
    low, high = interval(samples, _primary_over_bound, cfg)
    return {"value": float(_primary_over_bound(*samples)), "low": low, "high": high}


def primary_difference_interval(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
                                cfg: UncertaintyConfig) -> tuple[float, float]:
    """Paired interval of primary(first) − primary(second), both scored on the same states."""
    return interval((*first, *second), _primary_difference, cfg)
