"""Statistics: equal to SciPy's on the same numbers, NaN handling, sidedness, Holm by hand, and the
per-method summary tables built on them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from case_saliency.runs.summary import summarize_diagnose, summarize_fidelity
from case_saliency.metrics.stats import agreement_below, holm, paired_ttest, paired_wilcoxon, smallest_one_sided_p

RNG = np.random.default_rng(0)
AGREEMENT = np.round(RNG.uniform(0, 100, 40), 1)


def test_agreement_below_equals_scipy():
    for threshold in (50.0, 70.0):
        ours = agreement_below(AGREEMENT, threshold)
        ref = sps.wilcoxon(AGREEMENT - threshold, alternative="less")
        assert ours.alternative == "less" and ours.n == 40
        assert ours.statistic == ref.statistic and ours.pvalue == ref.pvalue


def test_smallest_one_sided_p_is_attained_by_scipy():
    for n in (3, 4, 5, 8):
        all_below = -np.arange(1.0, n + 1)  # every difference negative: the most extreme sample
        assert sps.wilcoxon(all_below, alternative="less").pvalue == pytest.approx(smallest_one_sided_p(n))


def test_summarize_diagnose_says_when_the_sample_is_too_small():
    def table(values):
        rows = [{"image_id": f"i{i}", "method": "case", "k_percent": 5.0, "agreement": v, "spearman": 0.1,
                 "ssim": 0.2, "degenerate": False, "error": ""} for i, v in enumerate(values)]
        return summarize_diagnose(pd.DataFrame(rows), threshold=50.0, alpha=0.05).iloc[0]

    four = table([10.0, 20.0, 30.0, 40.0])  # all below 50%, yet p = 1/16 > 0.05
    assert four["pvalue"] == pytest.approx(1 / 16)
    assert four["conclusion"].startswith("too few images to decide (n=4")
    assert table([10.0, 20.0, 30.0, 40.0, 45.0])["conclusion"].startswith("separates")
    assert table([60.0, 70.0, 80.0, 90.0, 95.0, 99.0])["conclusion"] == "does not separate"


def test_a_method_with_circular_pairs_is_compared_with_gradcam_on_its_other_pairs():
    """The fair comparison of a contrast that is circular on some pairs: Grad-CAM's mean on the method's
    other images and a paired two-sided Wilcoxon test (SciPy's, the reference) of the two there."""
    rng = np.random.default_rng(0)
    n = 40
    circular = np.arange(n) % 3 == 0
    gradcam = rng.uniform(0, 60, n)
    case = np.where(circular, 0.0, gradcam + rng.uniform(-2, 8, n))  # ~0 where circular, higher elsewhere
    rows = [{"image_id": f"i{i}", "method": m, "k_percent": 5.0, "agreement": a, "spearman": 0.1, "ssim": 0.2,
             "other_in_contrast": c, "degenerate": False, "error": ""}
            for m, values, flags in (("gradcam", gradcam, [False] * n), ("case", case, circular))
            for i, (a, c) in enumerate(zip(values, flags, strict=True))]
    rows.append({**rows[1], "image_id": "failed", "error": "boom"})  # a failed row is never scored
    table = summarize_diagnose(pd.DataFrame(rows), threshold=50.0, alpha=0.05).set_index("method")
    keep = ~circular
    row = table.loc["case"]
    assert row["n_without"] == keep.sum() and row["mean_without"] == pytest.approx(case[keep].mean())
    assert row["baseline_without"] == pytest.approx(gradcam[keep].mean())
    assert row["p_vs_baseline"] == pytest.approx(sps.wilcoxon(case[keep], gradcam[keep]).pvalue)
    assert row["mean"] < table.loc["gradcam", "mean"] < row["baseline_without"] + 100  # lower overall ...
    assert row["mean_without"] > row["baseline_without"]  # ... higher than Grad-CAM on the same other images
    assert math.isnan(table.loc["gradcam", "p_vs_baseline"])  # the baseline is not compared with itself
    assert math.isnan(summarize_diagnose(pd.DataFrame(rows), baseline=None).set_index("method").loc[
        "case", "baseline_without"])


def test_agreement_below_drops_nan_and_decides():
    low = np.array([5.0, 10.0, 20.0, 12.0, 8.0, 30.0, 3.0, 15.0, np.nan, 25.0, 18.0])
    result = agreement_below(low, 50.0)
    ref = sps.wilcoxon(low[~np.isnan(low)] - 50.0, alternative="less")
    assert result.n == 10 and result.pvalue == ref.pvalue
    assert result.reject(0.05)
    assert not agreement_below(100 - low, 50.0).reject(0.05)
    assert math.isnan(agreement_below([np.nan], 50.0).pvalue)  # nothing to test: undefined, never "rejects"


def test_wilcoxon_with_every_difference_zero_gives_p_one():
    # SciPy's exact method: no nonzero difference, p = 1 (its default method would give NaN, 0/0).
    at_threshold = np.full(14, 50.0)
    ours = agreement_below(at_threshold, 50.0)
    ref = sps.wilcoxon(at_threshold - 50.0, alternative="less", method="exact")
    assert ref.pvalue == 1.0 and (ours.statistic, ours.pvalue) == (ref.statistic, ref.pvalue)
    assert ours.n == 14 and ours.n_nonzero == 0 and not ours.reject()
    paired = paired_wilcoxon(np.arange(5.0), np.arange(5.0))
    assert paired.pvalue == sps.wilcoxon(np.zeros(5), method="exact").pvalue == 1.0
    rows = [{"image_id": f"i{i}", "method": "case", "k_percent": 5.0, "agreement": 50.0, "spearman": 0.1,
             "ssim": 0.2, "degenerate": False, "error": ""} for i in range(14)]
    summary = summarize_diagnose(pd.DataFrame(rows), threshold=50.0, alpha=0.05).iloc[0]
    assert summary["pvalue"] == 1.0 and summary["conclusion"] == "does not separate"


def test_paired_tests_equal_scipy():
    a = RNG.normal(0.2, 0.1, 30)
    b = a + RNG.normal(0.02, 0.05, 30)
    for alternative in ("two-sided", "less", "greater"):
        w = paired_wilcoxon(a, b, alternative)
        t = paired_ttest(a, b, alternative)
        ref_w = sps.wilcoxon(a, b, alternative=alternative)
        ref_t = sps.ttest_rel(a, b, alternative=alternative)
        assert (w.statistic, w.pvalue) == (ref_w.statistic, ref_w.pvalue)
        assert (t.statistic, t.pvalue) == pytest.approx((ref_t.statistic, ref_t.pvalue), rel=1e-12)
        assert w.alternative == t.alternative == alternative
    a_nan = a.copy()
    a_nan[3] = np.nan
    kept = np.arange(30) != 3
    assert paired_ttest(a_nan, b).pvalue == pytest.approx(sps.ttest_rel(a[kept], b[kept]).pvalue, rel=1e-12)
    with pytest.raises(ValueError, match="length"):
        paired_wilcoxon(a, b[:-1])
    with pytest.raises(ValueError, match="alternative"):
        paired_ttest(a, b, "bigger")


def test_holm_by_hand():
    # sorted: .01 (x4 = .04), .03 (x3 = .09), .04 (x2 = .08 -> .09 by monotonicity), .2 (x1)
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.2])
    assert np.allclose(adjusted[[0, 1, 2, 4]], [0.04, 0.09, 0.09, 0.2])
    assert np.isnan(adjusted[3])
    assert np.allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1


def test_summarize_diagnose_table():
    rows = []
    for i, value in enumerate(AGREEMENT):
        rows.append({"image_id": f"i{i}", "method": "gradcam", "k_percent": 5.0, "agreement": value, "spearman": 0.5,
                     "ssim": 0.4, "degenerate": False, "error": ""})
        low = value / 4
        rows.append({"image_id": f"i{i}", "method": "case", "k_percent": 5.0, "agreement": low, "spearman": 0.1,
                     "ssim": 0.2, "degenerate": False, "error": ""})
    rows.append({"image_id": "z", "method": "case", "k_percent": 5.0, "agreement": np.nan, "spearman": np.nan,
                 "ssim": np.nan, "degenerate": True, "error": ""})
    rows.append({"image_id": "e", "method": "case", "k_percent": 5.0, "agreement": np.nan, "spearman": np.nan,
                 "ssim": np.nan, "degenerate": False, "error": "RuntimeError: boom"})
    table = summarize_diagnose(pd.DataFrame(rows), threshold=50.0, alpha=0.05, correction="holm").set_index("method")
    case = table.loc["case"]
    assert case["n"] == 40 and case["degenerate"] == 1 and case["errors"] == 1
    assert case["mean"] == pytest.approx(np.mean(AGREEMENT / 4))
    assert case["sd"] == pytest.approx(np.std(AGREEMENT / 4, ddof=1))
    assert case["median"] == pytest.approx(np.median(AGREEMENT / 4))
    ref = sps.wilcoxon(AGREEMENT / 4 - 50.0, alternative="less")
    assert case["statistic"] == ref.statistic and case["pvalue"] == ref.pvalue
    low, high = sorted(table["pvalue"])  # two tests: the smaller p doubled, the larger kept (monotone)
    assert sorted(table["p_holm"]) == pytest.approx([min(1.0, 2 * low), max(min(1.0, 2 * low), high)])
    assert case["conclusion"].startswith("separates")


def test_summarize_fidelity_pairs_by_image():
    a = RNG.uniform(0, 1, 20)
    b = RNG.uniform(0, 1, 20)
    rows = [{"image_id": f"i{i}", "method": "case", "drop_relative": a[i], "drop_absolute": a[i], "deletion_auc": a[i],
             "insertion_auc": a[i], "error": ""} for i in range(20)]
    # the other method's rows come in reverse order, and one image failed: pairing must follow ids
    rows += [{"image_id": f"i{i}", "method": "gradcam", "drop_relative": b[i], "drop_absolute": b[i],
              "deletion_auc": b[i], "insertion_auc": b[i], "error": "" if i != 7 else "ValueError: x"}
             for i in reversed(range(20))]
    means, tests = summarize_fidelity(pd.DataFrame(rows))
    keep = np.arange(20) != 7
    test = tests[tests["measure"] == "drop_relative"].iloc[0]
    assert test["n"] == 19
    assert test["wilcoxon_p"] == sps.wilcoxon(a[keep], b[keep]).pvalue
    assert test["t_p"] == pytest.approx(sps.ttest_rel(a[keep], b[keep]).pvalue, rel=1e-12)
    assert test["mean_difference"] == pytest.approx(np.mean(a[keep] - b[keep]))
    assert test["median_difference"] == pytest.approx(np.median(a[keep] - b[keep]))
    assert test["ci_low"] < test["median_difference"] < test["ci_high"]
    assert means.set_index("method").loc["gradcam", "errors"] == 1


def test_median_difference_interval_against_a_plain_bootstrap():
    from case_saliency.metrics.stats import median_difference

    a = RNG.normal(0.3, 1.0, 80)
    b = RNG.normal(0.0, 1.0, 80)
    b[5] = np.nan  # dropped pairwise
    effect = median_difference(a, b, resamples=4000, seed=3)
    keep = np.isfinite(b)
    diff = a[keep] - b[keep]
    assert effect.n == 79 and effect.median == pytest.approx(np.median(diff))
    # An independent percentile bootstrap (plain NumPy resampling) agrees within Monte Carlo error.
    draws = np.random.default_rng(11).integers(0, diff.size, size=(4000, diff.size))
    low, high = np.percentile(np.median(diff[draws], axis=1), [2.5, 97.5])
    spread = high - low
    assert effect.low == pytest.approx(low, abs=0.1 * spread) and effect.high == pytest.approx(high, abs=0.1 * spread)
    assert median_difference(a, b, resamples=4000, seed=3) == effect  # seeded: reproducible
    assert median_difference(a, b, confidence=0.5, resamples=4000).high - median_difference(
        a, b, confidence=0.5, resamples=4000).low < spread  # a lower level gives a narrower interval
    same = median_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert (same.median, same.low, same.high) == (0.5, 0.5, 0.5)
    assert np.isnan(median_difference([1.0], [0.0]).low)
    with pytest.raises(ValueError, match="confidence"):
        median_difference(a, b, confidence=95)
