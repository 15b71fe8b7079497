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


# --- every statistic against scipy's own (and a few known values), on several data sets ----------------

from math import comb  # noqa: E402

from adlab.study.stats import BootstrapDifference, single_run_range  # noqa: E402


def _exact_mcnemar(b: int, c: int) -> float:
    n = b + c
    return min(1.0, 2 * sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n)


def _pairs(only_a: int, only_b: int, both: int = 7, neither: int = 3):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return a, b


@pytest.mark.parametrize(
    "only_a, only_b", [(10, 2), (2, 10), (0, 5), (5, 0), (3, 3), (1, 0), (0, 1), (25, 13), (40, 1), (7, 8)]
)
def test_mcnemar_against_scipy_and_by_hand(only_a, only_b):
    a, b = _pairs(only_a, only_b)
    result = mcnemar_exact(a, b)
    assert (result.only_a_correct, result.only_b_correct) == (only_a, only_b)
    assert result.p_value == pytest.approx(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-12)
    assert result.p_value == pytest.approx(_exact_mcnemar(only_a, only_b), rel=1e-9)


def test_mcnemar_known_values_and_types():
    assert mcnemar_exact(*_pairs(0, 5)).p_value == pytest.approx(0.0625)  # 2 / 2^5
    assert mcnemar_exact(*_pairs(5, 0)).p_value == pytest.approx(0.0625)
    assert mcnemar_exact(*_pairs(1, 0)).p_value == 1.0
    assert mcnemar_exact(*_pairs(0, 0)).p_value == 1.0
    result = mcnemar_exact([1, 0, 2, 0], [0, 0, 0, 1])  # any truthy value is "right"
    assert (result.only_a_correct, result.only_b_correct) == (2, 1)
    assert type(result.only_a_correct) is int and type(result.p_value) is float


WILCOXON_SETS = {
    "a better everywhere": (
        np.arange(1, 9) * 0.1,
        np.arange(1, 9) * 0.1 + np.array([0.3, 0.1, 0.4, 0.15, 0.5, 0.9, 0.2, 0.6]),
    ),
    "b better everywhere": (
        np.arange(1, 9) * 0.1 + np.array([0.3, 0.1, 0.4, 0.15, 0.5, 0.9, 0.2, 0.6]),
        np.arange(1, 9) * 0.1,
    ),
    "mixed": (
        np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]),
        np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]),
    ),
    "ties": (np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), np.array([2.0, 3.0, 4.0, 5.0, 4.0, 5.0, 8.0])),
    "zeros": (np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), np.array([1.0, 2.5, 3.0, 4.75, 5.5, 6.0, 7.5, 8.25])),
    "large": (np.random.default_rng(5).random(300), np.random.default_rng(5).random(300) * 0.95 + 0.04),
}


@pytest.mark.parametrize("name", list(WILCOXON_SETS))
def test_wilcoxon_against_scipy_two_sided(name):
    a, b = WILCOXON_SETS[name]
    d = a - b
    result = wilcoxon_paired(a, b)
    assert (result.a_better, result.b_better) == (int(np.sum(d < 0)), int(np.sum(d > 0)))
    assert result.p_value == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-12)
    assert result.p_value == pytest.approx(stats.wilcoxon(a, b, alternative="two-sided").pvalue, rel=1e-12)
    # two-sided: the same p whichever variant is called A, and never the one-sided halves
    assert wilcoxon_paired(b, a).p_value == pytest.approx(result.p_value, rel=1e-12)
    for side in ("less", "greater"):
        one_sided = stats.wilcoxon(d, alternative=side).pvalue
        if not np.isclose(one_sided, result.p_value):
            assert result.p_value != pytest.approx(one_sided)


def test_wilcoxon_known_exact_values():
    # 6 differences, all A better: the two-sided exact p is 2 / 2^6
    a, b = np.arange(6) * 0.1, np.arange(6) * 0.1 + np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    result = wilcoxon_paired(a, b)
    assert (result.a_better, result.b_better) == (6, 0) and result.p_value == pytest.approx(0.03125)
    assert wilcoxon_paired(b, a).p_value == pytest.approx(0.03125)
    # ranks 1..5 with signs + - + - +: W- = 2 + 4 = 6; 13 of the 32 sign patterns give W <= 6: p = 2 * 13/32
    d = np.array([1.0, -2.0, 3.0, -4.0, 5.0])
    result = wilcoxon_paired(d, np.zeros(5))
    assert (result.a_better, result.b_better) == (2, 3) and result.p_value == pytest.approx(0.8125)


def test_wilcoxon_counts_leave_zero_differences_out():
    a, b = WILCOXON_SETS["zeros"]
    result = wilcoxon_paired(a, b)
    assert (result.a_better, result.b_better) == (5, 0)
    assert wilcoxon_paired([1.0, 2.0], [1.0, 2.0]) == wilcoxon_paired([0.0], [0.0])
    assert wilcoxon_paired([1.0, 2.0], [1.0, 2.0]).p_value == 1.0
    assert (wilcoxon_paired([1.0, 2.0], [1.0, 2.0]).a_better, wilcoxon_paired([1.0, 2.0], [1.0, 2.0]).b_better) == (
        0,
        0,
    )
    assert type(result.p_value) is float and type(result.a_better) is int


@pytest.mark.parametrize(
    "values, confidence",
    [([0.91, 0.93, 0.92, 0.95, 0.90], 0.95), ([1.0, 3.0], 0.95), ([0.5, 0.7, 0.9], 0.90), ([2.0, 2.0, 2.0, 2.5], 0.99)],
)
def test_summarize_against_scipy(values, confidence):
    s = summarize(values, confidence)
    x = np.array(values)
    low, high = stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (s.mean, s.std, s.n) == (pytest.approx(x.mean()), pytest.approx(x.std(ddof=1)), len(x))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high), rel=1e-12)


def test_summarize_edge_cases():
    with pytest.raises(ValueError, match="^no values to summarize$"):
        summarize([])
    one = summarize([0.25])
    assert (one.mean, one.std, one.ci_low, one.ci_high, one.n) == (0.25, 0.0, 0.25, 0.25, 1)
    same = summarize([0.5, 0.5, 0.5])
    assert (same.std, same.ci_low, same.ci_high) == (0.0, 0.5, 0.5)


@pytest.mark.parametrize(
    "values, confidence", [([0.91, 0.93, 0.92, 0.95, 0.90], 0.95), ([1.0, 3.0], 0.95), ([0.5, 0.7, 0.9], 0.80)]
)
def test_single_run_range_is_the_t_prediction_interval(values, confidence):
    x = np.array(values)
    n = len(x)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) * np.sqrt(1 + 1 / n)
    low, high = single_run_range(values, confidence)
    assert (low, high) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    assert single_run_range([1.0, 3.0]) == pytest.approx(
        (2 - 12.706204736 * np.sqrt(2) * np.sqrt(1.5), 2 + 12.706204736 * np.sqrt(2) * np.sqrt(1.5))
    )
    assert single_run_range([0.5]) is None and single_run_range([]) is None


@pytest.mark.parametrize("resamples, confidence, seed", [(500, 0.95, 0), (300, 0.90, 7), (1000, 0.99, 3)])
def test_paired_bootstrap_is_scipys_paired_percentile_bootstrap(resamples, confidence, seed):
    right_a, right_b = _pair(np.random.default_rng(9), 400, 0.85, 0.80)
    ours = paired_bootstrap(right_a, right_b, resamples=resamples, confidence=confidence, seed=seed)
    expected = stats.bootstrap(
        (right_a.astype(float), right_b.astype(float)),
        lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    assert (ours.ci_low, ours.ci_high) == (
        pytest.approx(expected.low, abs=1e-12),
        pytest.approx(expected.high, abs=1e-12),
    )
    assert ours.resamples == resamples and ours.difference == pytest.approx(right_a.mean() - right_b.mean())
    assert paired_bootstrap(right_a, right_b, resamples=resamples, confidence=confidence, seed=seed) == ours


def test_paired_bootstrap_defaults_and_errors():
    right_a, right_b = _pair(np.random.default_rng(10), 300, 0.9, 0.8)
    default = paired_bootstrap(right_a, right_b)
    assert default.resamples == 2000
    assert default == paired_bootstrap(right_a, right_b, resamples=2000, confidence=0.95, seed=0)
    assert default != paired_bootstrap(right_a, right_b, seed=1)
    same = paired_bootstrap(right_a, right_a, resamples=17)
    assert same == BootstrapDifference(0.0, 0.0, 0.0, 17)
    with pytest.raises(ValueError, match="^both variants must be scored on the same test images$"):
        paired_bootstrap([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="same test images"):
        wilcoxon_paired([[1.0, 2.0]], [1.0, 2.0])


@pytest.mark.parametrize(
    "low, high, significant",
    [(0.01, 0.2, True), (-0.2, -0.01, True), (0.0, 0.2, False), (-0.2, 0.0, False), (-0.1, 0.1, False)],
)
def test_significant_means_the_interval_leaves_out_zero(low, high, significant):
    assert BootstrapDifference(0.05, low, high, 10).significant is significant


def test_statistics_are_computed_in_double_precision():
    """float32 inputs (a metric read from a tensor) are summarised as float64: float32 sums of these
    values are off in the last digits."""
    values = np.array([1e7 + 1, 1e7 + 2, 1e7 + 4], dtype=np.float32)
    exact = values.astype(np.float64)
    s = summarize(values)
    assert s.mean == pytest.approx(exact.mean(), rel=0, abs=1e-9)
    assert s.std == pytest.approx(exact.std(ddof=1), rel=1e-12)
    low, high = single_run_range(values)
    half = stats.t.ppf(0.975, 2) * exact.std(ddof=1) * np.sqrt(1 + 1 / 3)
    assert (low, high) == (
        pytest.approx(exact.mean() - half, rel=0, abs=1e-6),
        pytest.approx(exact.mean() + half, rel=0, abs=1e-6),
    )


def test_paired_tests_take_float32_errors_and_booleans_as_float64():
    """Per-image errors straight from a float32 tensor, or per-image correctness as booleans, give the
    same numbers as the same values in float64."""
    rng = np.random.default_rng(11)
    a32 = (rng.random(300) * 1e3 + 1e7).astype(np.float32)
    b32 = (a32 - rng.integers(0, 3, 300)).astype(np.float32)
    a64, b64 = a32.astype(np.float64), b32.astype(np.float64)
    ours, exact = paired_bootstrap(a32, b32, resamples=200), paired_bootstrap(a64, b64, resamples=200)
    assert (ours.difference, ours.ci_low, ours.ci_high) == pytest.approx(
        (exact.difference, exact.ci_low, exact.ci_high), rel=0, abs=1e-9
    )
    right_a, right_b = _pair(np.random.default_rng(12), 200, 0.9, 0.7)
    assert wilcoxon_paired(right_a, right_b) == wilcoxon_paired(right_a.astype(float), right_b.astype(float))
    assert wilcoxon_paired(list(right_a), list(right_b)).p_value == pytest.approx(
        stats.wilcoxon(right_a.astype(float) - right_b.astype(float)).pvalue, rel=1e-12
    )


def test_finite_number_is_a_real_finite_number_only():
    from adlab.study.stats import finite_number

    assert finite_number(0) and finite_number(0.5) and finite_number(-3) and finite_number(np.float64(1.5))
    for value in (None, True, False, "0.5", float("nan"), float("inf"), -float("inf"), [1.0], {"a": 1}):
        assert not finite_number(value), value
