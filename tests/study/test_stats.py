import numpy as np
import pytest
from scipy import stats

from adlab.study.stats import accuracy_difference, mcnemar_exact, paired_bootstrap, summarize


def test_summarize_matches_the_t_interval():
    values = [0.91, 0.93, 0.92, 0.95, 0.90]
    s = summarize(values)
    assert s.mean == pytest.approx(np.mean(values)) and s.std == pytest.approx(np.std(values, ddof=1))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    one = summarize([0.5])
    assert one.std == 0 and one.ci_low == one.ci_high == 0.5


def test_mcnemar_exact_against_binomtest_by_hand():
    # 10 images only A gets right, 2 only B: p = binomtest(10, 12, 0.5)
    a = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 5, dtype=bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 5, dtype=bool)
    result = mcnemar_exact(a, b)
    assert (result.only_a_correct, result.only_b_correct) == (10, 2)
    assert result.p_value == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)
    assert result.p_value == pytest.approx(0.0385742, abs=1e-6)  # 2 * sum_{k<=2} C(12,k) / 2^12
    assert mcnemar_exact(a, a).p_value == 1.0


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    good = np.where(rng.random(2000) < 0.90, y, (y + 1) % 3)
    bad = np.where(rng.random(2000) < 0.80, y, (y + 1) % 3)
    real = paired_bootstrap(accuracy_difference(good == y, bad == y), len(y), resamples=500)
    assert real.difference == pytest.approx((good == y).mean() - (bad == y).mean())
    assert real.significant and real.ci_low > 0.05
    same = np.where(rng.random(2000) < 0.90, y, (y + 1) % 3)
    noise = paired_bootstrap(accuracy_difference(good == y, same == y), len(y), resamples=500)
    assert noise.ci_low < noise.difference < noise.ci_high
    assert not noise.significant


def test_mcnemar_needs_the_same_test_set():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])
