"""The statistics against independent references: SciPy's Wilcoxon (whatever method it picks, with
ties and zeros, n = 1..30 and large n), a brute-force sign enumeration, ``binomtest``, ``ttest_1samp``
(TOST's pieces), the noncentral t and a simulation (the minimum detectable difference), a direct
loop (Holm, the bootstrap), and the equivalence verdicts on constructed cases."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy
from scipy import stats as sps

from case_saliency.metrics.stats import (VERDICTS, bootstrap_interval, compare_paired, holm,
                                         minimum_detectable_difference, paired_wilcoxon, sign_test, signed_rank_null,
                                         signed_rank_test, tost, verdict)

ALTERNATIVES = ("two-sided", "less", "greater")
# The method choice reproduced is SciPy 1.17's (exhaustive sign flips for n <= 13 with ties or zeros);
# older SciPy used the normal approximation there. The enumeration test below needs no SciPy.
RECENT_SCIPY = pytest.mark.skipif(tuple(int(v) for v in scipy.__version__.split(".")[:2]) < (1, 15),
                                  reason="SciPy < 1.15 chooses another method for small samples with ties")


def _scipy_wilcoxon(diff: np.ndarray, alternative: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy warns about ties/zeros in its exact and normal paths
        return sps.wilcoxon(diff, alternative=alternative)


def _samples(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Samples of size n: heavy ties and zeros (small integers), agreement-like steps of 2 points
    around a threshold, and continuous values (no ties)."""
    return [rng.integers(-3, 4, n).astype(float), 2.0 * rng.integers(0, 51, n) - 50.0, rng.normal(0.3, 1.0, n)]


@RECENT_SCIPY
# SciPy's reference takes its permutation path for n = 11-13 with ties (seconds each): those run in the full suite.
@pytest.mark.parametrize("n", [pytest.param(n, marks=pytest.mark.slow) if 10 < n < 14 else n for n in range(1, 31)])
def test_signed_rank_p_values_equal_scipy_on_small_samples_with_ties_and_zeros(n):
    rng = np.random.default_rng(n)
    for diff in _samples(n, rng):
        if not np.any(diff != 0):
            continue  # SciPy's default gives NaN or 1 there; ours 1 (tested below)
        for alternative in ALTERNATIVES:
            ours, ref = signed_rank_test(diff, alternative), _scipy_wilcoxon(diff, alternative)
            assert ours.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
            assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-10, abs=1e-15), (diff, alternative)
            ties_or_zeros = bool(np.any(diff == 0) or len(np.unique(np.abs(diff[diff != 0]))) < np.count_nonzero(diff))
            assert ours.method == ("exact" if (n <= 13 or not ties_or_zeros) else "normal")


@pytest.mark.parametrize("n", [51, 60, 200, 1000])
def test_signed_rank_p_values_equal_scipy_on_large_samples(n):
    rng = np.random.default_rng(n)
    for diff in _samples(n, rng):
        for alternative in ALTERNATIVES:
            ours, ref = signed_rank_test(diff, alternative), _scipy_wilcoxon(diff, alternative)
            assert ours.method == "normal"
            assert ours.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
            assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-10, abs=1e-300)


def test_the_null_distribution_equals_a_brute_force_enumeration_of_signs():
    rng = np.random.default_rng(1)
    for _ in range(20):
        diff = rng.integers(-3, 4, rng.integers(1, 11)).astype(float)
        diff = diff[diff != 0]
        if diff.size == 0:
            continue
        ranks = sps.rankdata(np.abs(diff))  # midranks
        doubled = tuple(sorted(int(2 * r) for r in ranks))
        pmf = signed_rank_null(doubled)
        counts = np.zeros_like(pmf)
        for signs in itertools.product((0, 1), repeat=diff.size):
            counts[int(np.dot(signs, 2 * ranks))] += 1
        assert np.array_equal(pmf, counts / 2 ** diff.size)
    assert signed_rank_null((2, 4)) is signed_rank_null((2, 4))  # cached per set of ranks


def test_every_difference_zero_gives_p_one_and_paired_tests_pair_by_position():
    assert signed_rank_test(np.zeros(20)).pvalue == 1.0  # SciPy's exact method; its default gives NaN at n > 13
    a = np.array([3.0, 1.0, np.nan, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0])
    b = np.array([2.0, 1.0, 0.0, 1.0, 3.0, 5.0, 2.0, 6.0, 5.0, 3.0])
    keep = np.isfinite(a)
    for alternative in ALTERNATIVES:
        ref = _scipy_wilcoxon(a[keep] - b[keep], alternative)
        assert paired_wilcoxon(a, b, alternative).pvalue == pytest.approx(float(ref.pvalue), rel=1e-12)


def test_sign_test_equals_binomtest():
    rng = np.random.default_rng(2)
    for n in (1, 2, 5, 14, 30, 101):
        a, b = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)
        diff = a - b
        positive, nonzero = int(np.sum(diff > 0)), int(np.count_nonzero(diff))
        for alternative in ALTERNATIVES:
            ours = sign_test(a, b, alternative)
            assert ours.statistic == positive and ours.n_nonzero == nonzero
            if nonzero == 0:
                assert ours.pvalue == 1.0
                continue
            ref = sps.binomtest(positive, nonzero, 0.5, alternative=alternative).pvalue
            assert ours.pvalue == pytest.approx(ref, rel=1e-10)


def test_tost_is_the_larger_of_two_one_sided_ttests():
    rng = np.random.default_rng(3)
    for mean, n, margin in ((0.5, 40, 5.0), (-3.0, 14, 5.0), (7.0, 30, 5.0), (1.0, 200, 2.0)):
        diff = rng.normal(mean, 6.0, n)
        p, lower, upper = tost(diff, margin)
        ref_lower = sps.ttest_1samp(diff, -margin, alternative="greater")
        ref_upper = sps.ttest_1samp(diff, margin, alternative="less")
        assert lower.statistic == pytest.approx(ref_lower.statistic, rel=1e-12)
        assert lower.pvalue == pytest.approx(ref_lower.pvalue, rel=1e-10)
        assert upper.pvalue == pytest.approx(ref_upper.pvalue, rel=1e-10)
        assert p == max(lower.pvalue, upper.pvalue)
        # the same decision as the 90% t interval inside the margin
        low, high = sps.t.interval(0.90, n - 1, loc=diff.mean(), scale=sps.sem(diff))
        assert (p < 0.05) == (-margin < low and high < margin)
    assert tost(np.full(5, 1.0))[0] == 0.0 and tost(np.full(5, 6.0))[0] == 1.0  # no spread: inside / outside
    with pytest.raises(ValueError, match="margin"):
        tost(np.ones(3), margin=0)


def test_minimum_detectable_difference_has_the_stated_power():
    sd, n, alpha = 11.0, 20, 0.05
    mdd = minimum_detectable_difference(sd, n, alpha, power=0.8)
    # reference: the power of the two-sided t-test from SciPy's noncentral t distribution
    critical = sps.t.ppf(1 - alpha / 2, n - 1)
    nc = mdd * math.sqrt(n) / sd
    power = sps.nct.sf(critical, n - 1, nc) + sps.nct.cdf(-critical, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert mdd > (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd / math.sqrt(n)  # t is wider than the z rule
    # and a simulation: normal differences with that mean are detected ~80% of the time
    rng = np.random.default_rng(4)
    draws = rng.normal(mdd, sd, size=(4000, n))
    rejected = sps.ttest_1samp(draws, 0.0, axis=1).pvalue < alpha
    assert rejected.mean() == pytest.approx(0.8, abs=0.025)
    assert math.isnan(minimum_detectable_difference(sd, 1)) and minimum_detectable_difference(0.0, 10) == 0.0
    assert minimum_detectable_difference(sd, 200) < mdd  # more images, smaller detectable differences


def test_holm_equals_a_direct_step_down_loop():
    rng = np.random.default_rng(5)
    for m in (1, 2, 5, 12):
        p = rng.uniform(0, 0.1, m) ** rng.uniform(0.5, 2, m)
        order = np.argsort(p, kind="stable")
        expected = np.empty(m)
        running = 0.0
        for i, index in enumerate(order):
            running = max(running, min(1.0, (m - i) * p[index]))
            expected[index] = running
        assert np.allclose(holm(p), expected, rtol=0, atol=1e-15)


def test_bootstrap_interval_equals_a_direct_loop_with_the_same_generator():
    rng = np.random.default_rng(6)
    values = np.round(rng.normal(-2.0, 9.0, 37), 0)
    for statistic, reduce in (("mean", np.mean), ("median", np.median)):
        low, high = bootstrap_interval(values, statistic, 0.95, resamples=1500, seed=9)
        generator = np.random.default_rng(9)
        estimates = [reduce(values[generator.integers(0, values.size, values.size)]) for _ in range(1500)]
        ref_low, ref_high = np.quantile(estimates, [0.025, 0.975])
        assert (low, high) == pytest.approx((ref_low, ref_high), rel=1e-12)  # same draws; sums in another order
    assert bootstrap_interval(values, "mean", resamples=1500, seed=9) == bootstrap_interval(values, "mean",
                                                                                            resamples=1500, seed=9)
    assert all(math.isnan(v) for v in bootstrap_interval([1.0]))
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_interval(values, "mode")


def test_the_equivalence_verdicts_on_constructed_cases():
    rng = np.random.default_rng(7)
    baseline = rng.uniform(20, 80, 120)
    cases = {
        "equal": baseline + rng.normal(0.3, 3.0, 120),  # clearly within ±5 points
        "lower": baseline - 12 + rng.normal(0, 3.0, 120),  # clearly lower agreement: more class-specific
        "higher": baseline + 12 + rng.normal(0, 3.0, 120),
    }
    for expected, method in cases.items():
        comparison = compare_paired(method, baseline)
        assert verdict(comparison) == expected, comparison
        assert comparison.mean_low < comparison.mean < comparison.mean_high
    few = compare_paired(baseline[:6] + rng.normal(-2, 10, 6), baseline[:6])  # too small n to say either
    assert verdict(few) == "undetermined" and few.mdd > 5
    assert verdict(compare_paired(baseline, baseline)) == "identical"
    assert verdict(compare_paired([1.0], [2.0])) == "undetermined"
    # Holm-corrected p-values passed in decide: a p above alpha leaves an otherwise-significant case undetermined
    # unless TOST shows equality
    small = compare_paired(baseline + 0.8 + rng.normal(0, 1.0, 120), baseline)
    assert verdict(small) == "higher" and verdict(small, p=0.2) == "equal"
    assert set(VERDICTS) == {"lower", "higher", "equal", "identical", "undetermined"}


def test_minimum_detectable_difference_at_alpha_zero_is_infinite_not_a_hang():
    """A run stored with alpha 0 (kept as 0, not replaced by 0.05): no level-0 test rejects, so no
    difference is detectable; the bisection must not search for ever."""
    import math

    from case_saliency.metrics.stats import minimum_detectable_difference

    assert minimum_detectable_difference(3.0, 20, alpha=0.0) == math.inf
    assert math.isfinite(minimum_detectable_difference(3.0, 20, alpha=0.05))
