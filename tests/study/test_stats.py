import numpy as np
import pytest
from scipy import stats

from adlab.study.stats import mcnemar_exact, paired_bootstrap, summarize, wilcoxon_paired


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


def _by_hand(right_a, right_b, resamples, seed=0):
    """The bootstrap adlab used before scipy's: resample image indices, the same draw for both variants."""
    rng = np.random.default_rng(seed)
    n = len(right_a)
    draws = [right_a[i].mean() - right_b[i].mean() for i in (rng.integers(0, n, n) for _ in range(resamples))]
    return np.quantile(draws, [0.025, 0.975])


def _pair(rng, n, p_good, p_bad):
    y = rng.integers(0, 3, n)
    good = np.where(rng.random(n) < p_good, y, (y + 1) % 3)
    bad = np.where(rng.random(n) < p_bad, y, (y + 1) % 3)
    return good == y, bad == y


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    right_good, right_bad = _pair(rng, 2000, 0.90, 0.80)
    real = paired_bootstrap(right_good, right_bad, resamples=500)
    assert real.difference == pytest.approx(right_good.mean() - right_bad.mean())
    assert real.significant and real.ci_low > 0.05
    right_same, _ = _pair(np.random.default_rng(1), 2000, 0.90, 0.90)
    noise = paired_bootstrap(right_good, right_same, resamples=500)
    assert noise.ci_low < noise.difference < noise.ci_high
    assert not noise.significant


@pytest.mark.parametrize("p_bad", [0.80, 0.88, 0.90])
def test_scipys_paired_bootstrap_agrees_with_the_one_by_hand(p_bad):
    right_a, right_b = _pair(np.random.default_rng(2), 1500, 0.90, p_bad)
    ours = paired_bootstrap(right_a, right_b, resamples=4000)
    low, high = _by_hand(right_a, right_b, resamples=4000)
    # two independent 4000-draw percentile intervals: their ends agree to Monte Carlo error (~0.002)
    assert ours.ci_low == pytest.approx(low, abs=0.005) and ours.ci_high == pytest.approx(high, abs=0.005)


def test_the_pairing_is_used():
    """Two variants right on mostly the same images: pairing makes the interval far narrower than
    two independent samples of those accuracies would give."""
    rng = np.random.default_rng(3)
    right_a = rng.random(2000) < 0.9
    right_b = right_a.copy()
    flip = rng.choice(2000, 60, replace=False)
    right_b[flip] = ~right_b[flip]
    ours = paired_bootstrap(right_a, right_b, resamples=2000)
    unpaired_half = 1.96 * np.sqrt(right_a.var() / len(right_a) + right_b.var() / len(right_b))
    assert (ours.ci_high - ours.ci_low) / 2 < 0.6 * unpaired_half


def test_identical_variants_give_a_zero_interval():
    right = np.array([True, False, True, True])
    same = paired_bootstrap(right, right)
    assert (same.difference, same.ci_low, same.ci_high, same.significant) == (0.0, 0.0, 0.0, False)


def test_mcnemar_needs_the_same_test_set():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])


def test_wilcoxon_on_per_image_errors():
    rng = np.random.default_rng(4)
    base = rng.random(500)
    better = base * 0.9  # 10% lower error on every image
    result = wilcoxon_paired(better, base)
    assert (result.a_better, result.b_better) == (500, 0) and result.p_value < 1e-50
    noise = wilcoxon_paired(base + rng.normal(0, 0.01, 500), base + rng.normal(0, 0.01, 500))
    assert noise.p_value > 0.05
    assert wilcoxon_paired(base, base).p_value == 1.0
    with pytest.raises(ValueError):
        wilcoxon_paired([1.0, 2.0], [1.0])
