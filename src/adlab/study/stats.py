"""Statistics for honest comparisons between runs.

- Several seeds of one variant: mean, sample standard deviation and a 95% t-interval of the mean.
- Two variants scored on the same test set: McNemar's exact test on the discordant pairs
  (classification), and a paired bootstrap interval of the metric difference (any metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


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


@dataclass
class McNemar:
    only_a_correct: int  # b: A right, B wrong
    only_b_correct: int  # c: A wrong, B right
    p_value: float


def mcnemar_exact(correct_a, correct_b) -> McNemar:
    """Exact (binomial) McNemar test: under H0 the discordant pairs split 50/50."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("both variants must be scored on the same test images")
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


def paired_bootstrap(metric: Callable[[np.ndarray], float], n_items: int, resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> BootstrapDifference:
    """Percentile interval of `metric(indices)`, a paired difference A - B computed on the same
    resampled test images (so both variants see the same draw each time)."""
    rng = np.random.default_rng(seed)
    full = float(metric(np.arange(n_items)))
    draws = np.array([metric(rng.integers(0, n_items, n_items)) for _ in range(resamples)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return BootstrapDifference(full, float(low), float(high), resamples)


def accuracy_difference(correct_a, correct_b) -> Callable[[np.ndarray], float]:
    """A metric for `paired_bootstrap`: accuracy(A) - accuracy(B) on the drawn test images, from
    per-image correctness."""
    right_a = np.asarray(correct_a, dtype=bool)
    right_b = np.asarray(correct_b, dtype=bool)
    return lambda idx: float(right_a[idx].mean() - right_b[idx].mean())
