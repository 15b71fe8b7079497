"""Statistics for honest comparisons between runs.

- Several seeds of one variant: mean, sample standard deviation and a 95% t-interval of the mean.
- Two variants scored on the same test set: McNemar's exact test on the discordant pairs
  (classification), Wilcoxon's signed-rank test on per-image errors (reconstruction), and scipy's
  paired bootstrap interval of the difference of the means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

import numpy as np


def finite_number(value: object) -> TypeGuard[float]:
    """A number to compute with or draw: not None, text or a bool, and neither NaN nor infinite (a
    damaged metrics.json, a diverged epoch's loss)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(float(value)))


@dataclass
class Summary:
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


def summarize(values, confidence: float = 0.95) -> Summary:
    """Mean, sample std (ddof=1) and the t-interval of the mean; with one value the interval is the value."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, 0.0, mean, mean, 1)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n))
    return Summary(mean, std, mean - half, mean + half, n)


def single_run_range(values, confidence: float = 0.95) -> tuple[float, float] | None:
    """Where one more run of the same variant would land (a t prediction interval: mean ± t·std·√(1 + 1/n)),
    the seed-to-seed spread a single published figure is compared with; None with fewer than two values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return None
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) * np.sqrt(1 + 1 / n))
    return float(x.mean()) - half, float(x.mean()) + half


def _same_images(values_a, values_b, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Two variants' per-image values as arrays; a paired test needs them on the same test images."""
    a, b = np.asarray(values_a, dtype=dtype), np.asarray(values_b, dtype=dtype)
    if a.shape != b.shape:
        raise ValueError("both variants must be scored on the same test images")
    return a, b


@dataclass
class McNemar:
    only_a_correct: int  # b: A right, B wrong
    only_b_correct: int  # c: A wrong, B right
    p_value: float


def mcnemar_exact(correct_a, correct_b) -> McNemar:
    """Exact (binomial) McNemar test: under H0 the discordant pairs split 50/50."""
    from scipy.stats import binomtest

    a, b = _same_images(correct_a, correct_b, bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    return McNemar(only_a, only_b, p)


@dataclass
class BootstrapDifference:
    difference: float  # metric(A) - metric(B) on the full test set
    ci_low: float
    ci_high: float
    resamples: int

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def paired_bootstrap(
    per_image_a, per_image_b, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> BootstrapDifference:
    """Percentile interval of mean(A) - mean(B) over the same test images (per-image correctness gives
    the accuracy difference, per-image errors the error difference): scipy's paired bootstrap resamples
    images, so both variants see the same draw each time."""
    from scipy.stats import bootstrap

    right_a, right_b = _same_images(per_image_a, per_image_b, float)
    difference = float(right_a.mean() - right_b.mean())
    if np.array_equal(right_a, right_b):  # nothing differs: every resample gives 0 (scipy warns of a degenerate sample)
        return BootstrapDifference(difference, 0.0, 0.0, resamples)
    result = bootstrap(
        (right_a, right_b),
        _mean_difference,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return BootstrapDifference(difference, float(interval.low), float(interval.high), resamples)


def _mean_difference(a, b, axis=-1):
    return a.mean(axis=axis) - b.mean(axis=axis)


@dataclass
class SignedRank:
    a_better: int  # images where A's error is lower
    b_better: int
    p_value: float


def wilcoxon_paired(errors_a, errors_b) -> SignedRank:
    """Wilcoxon's signed-rank test of per-image errors of two variants on the same images (two-sided)."""
    from scipy.stats import wilcoxon

    a, b = _same_images(errors_a, errors_b, float)
    differences = a - b
    if not np.any(differences):
        return SignedRank(0, 0, 1.0)
    return SignedRank(int(np.sum(differences < 0)), int(np.sum(differences > 0)), float(wilcoxon(differences).pvalue))
