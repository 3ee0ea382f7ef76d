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
from .metrics import bound


@dataclass(frozen=True)
class UncertaintyConfig(Section):
    """The `uncertainty` params section: how every interval is computed."""

    sections = ("uncertainty",)

    confidence: float   # e.g. 0.95
    resamples: int      # bootstrap resamples per interval
    seed: int

    def check(self) -> None:
        self.require(0.5 <= self.confidence < 1, "confidence", "must be in [0.5, 1)")
        self.require(self.resamples >= 100, "resamples", "must be ≥ 100")


def _resampleable(sample) -> np.ndarray:
    """Per-state hits (bool) as uint8, everything else as float64: means are the same numbers, and the
    bootstrap gathers an eighth of the bytes."""
    array = np.asarray(sample)
    return array.astype(np.uint8) if array.dtype == bool else array.astype(np.float64)


def intervals(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray],
              cfg: UncertaintyConfig, methods: tuple[str, ...] = ("BCa", "percentile"),
              batch: int = 250) -> list[tuple[float, float]]:
    """The bootstrap interval of each figure `statistic(*samples, axis=-1)` returns (a scalar or a vector).

    Samples are aligned 1-D arrays (one entry per state or episode); resampling them
    together (paired) keeps each state's figures side by side, which is what a
    difference between two networks scored on the same states needs. The figures of one
    call share one draw of resamples (the draw depends only on the seed and the number of
    states), so asking for k figures at once gives the intervals k calls would, for the
    price of one. Constant samples have no spread: the interval is the point; so is a
    figure for which neither BCa nor the percentile method finds finite bounds.
    `methods: ("percentile",)` skips BCa, whose jackknife recomputes the statistic once per state: for
    hundreds of figures over thousands of states, that is minutes. `batch`: resamples held in memory at once.
    """
    from scipy import stats  # here, not at the top: scipy.stats takes ~0.6 s to import, most stages never bootstrap

    arrays = tuple(_resampleable(s) for s in samples)
    points = np.atleast_1d(statistic(*arrays, axis=-1)).astype(np.float64)
    found: list[tuple[float, float] | None] = [None] * len(points)
    if len(arrays[0]) >= 2 and not all(np.ptp(a) == 0 for a in arrays):
        for method in methods:
            if all(found):
                break
            with warnings.catch_warnings():  # BCa announces its own failure; the percentile method then answers
                warnings.simplefilter("ignore", (stats.DegenerateDataWarning, RuntimeWarning))
                result = stats.bootstrap(arrays, statistic, n_resamples=cfg.resamples, batch=batch, vectorized=True,
                                         paired=True, axis=-1, confidence_level=cfg.confidence, method=method,
                                         rng=np.random.default_rng(cfg.seed))
            lows, highs = (np.atleast_1d(bound) for bound in result.confidence_interval)
            for i, (low, high, point) in enumerate(zip(lows, highs, points)):
                if found[i] is None and np.isfinite(low) and np.isfinite(high):
                    found[i] = (min(float(low), point), max(float(high), point))
    return [f if f is not None else (float(p), float(p)) for f, p in zip(found, points)]


def interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray],
             cfg: UncertaintyConfig) -> tuple[float, float]:
    """The bootstrap interval of the one figure `statistic(*samples, axis=-1)` (see `intervals`)."""
    return intervals(samples, statistic, cfg)[0]


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis)


def _primary(hits_a: np.ndarray, hits_b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.minimum(hits_a.mean(axis=axis), hits_b.mean(axis=axis))


def _primary_difference(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray, axis: int = -1) -> np.ndarray:
    return _primary(a1, b1, axis) - _primary(a2, b2, axis)


def mean_interval(values: np.ndarray, cfg: UncertaintyConfig) -> dict:
    """Mean, standard deviation and interval of per-state hits or per-episode returns."""
    low, high = interval((values,), _mean, cfg)
    values = np.asarray(values, dtype=np.float64)
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
    samples = tuple(_resampleable(s) for s in (hits_a, hits_b, parents_agree))
    low, high = interval(samples, _primary_over_bound, cfg)
    return {"value": float(_primary_over_bound(*samples)), "low": low, "high": high}


def _gain_over_copy(hits_a: np.ndarray, hits_b: np.ndarray, parents_agree: np.ndarray, axis: int = -1) -> np.ndarray:
    """(primary − a) / (U − a): 0 for a copy of either parent (its primary is the parents' agreement a), 1 at U.

    primary / U cannot tell recombination from copying when the parents mostly agree (a copy scores a / U,
    0.91 at a = 0.83); this share of the gain a child can make over a copy can. Parents that agree
    everywhere leave no gain to make: 0.
    """
    a = np.asarray(parents_agree.mean(axis=axis), dtype=np.float64)
    room = bound(a) - a
    return np.divide(_primary(hits_a, hits_b, axis) - a, room, out=np.zeros_like(a), where=room > 0)


def _agreement_figures(hits_a: np.ndarray, hits_b: np.ndarray, parents_agree: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.stack([hits_a.mean(axis=axis), hits_b.mean(axis=axis), _primary(hits_a, hits_b, axis),
                     _primary_over_bound(hits_a, hits_b, parents_agree, axis),
                     _gain_over_copy(hits_a, hits_b, parents_agree, axis)])


AGREEMENT_FIGURES = ("agreement_a", "agreement_b", "primary", "primary_over_bound", "gain_over_copy")


def agreement_intervals(hits_a: np.ndarray, hits_b: np.ndarray, parents_agree: np.ndarray,
                        cfg: UncertaintyConfig) -> dict[str, dict]:
    """Agreement with A and with B, primary and primary / U, each `{value, low, high}`, from one draw of
    resamples: the intervals `mean_interval`, `primary_interval` and `primary_over_bound_interval` give."""
    samples = tuple(_resampleable(s) for s in (hits_a, hits_b, parents_agree))
    values = _agreement_figures(*samples)
    bounds = intervals(samples, _agreement_figures, cfg)
    return {name: {"value": float(value), "low": low, "high": high}
            for name, value, (low, high) in zip(AGREEMENT_FIGURES, values, bounds)}


def primary_difference_interval(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
                                cfg: UncertaintyConfig) -> tuple[float, float]:
    """Paired interval of primary(first) − primary(second), both scored on the same states."""
    return interval((*first, *second), _primary_difference, cfg)
