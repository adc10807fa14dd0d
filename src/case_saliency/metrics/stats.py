"""Statistical tests of the diagnostics, thin wrappers around SciPy that state their sidedness.

- :func:`agreement_below`: the paper's class-sensitivity test, a one-sided Wilcoxon signed-rank
  test of ``agreement - threshold`` with alternative "less" (H0: median agreement >= threshold);
  rejecting at alpha means the method separates the top-1 and top-2 classes.
- :func:`paired_wilcoxon`, :func:`paired_ttest`: paired comparisons of two methods on the same
  images (fidelity), two-sided unless told otherwise.
- :func:`holm`: Holm's step-down correction of a family of p-values (the paper applies none).
- :func:`median_difference`: an effect size beside the p-values: the median paired difference with
  a seeded bootstrap confidence interval (``scipy.stats.bootstrap``, percentile method).

NaN values (degenerate pairs, failed rows) are dropped first (pairwise for paired tests) and the
number kept is reported as ``n``. Zero differences are dropped by the Wilcoxon test (SciPy's
default ``zero_method="wilcox"``). When every difference is zero the test has nothing to rank: the
p-value is 1 (no evidence against H0), which is what SciPy's exact method gives
(``wilcoxon(zeros, method="exact")``); its default method gives NaN there (its normal
approximation divides 0 by 0), which would read "n/a" instead of "does not separate".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

ALTERNATIVES = ("two-sided", "less", "greater")


@dataclass
class TestResult:
    """One test: its name and sidedness, sample size, statistic and p-value; for Wilcoxon tests
    also the number of nonzero differences it ranked (zeros are dropped)."""

    test: str
    alternative: str
    n: int
    statistic: float
    pvalue: float
    n_nonzero: int | None = None

    def smallest_pvalue(self) -> float:
        """The smallest p-value this test could give on a sample of this size: for a Wilcoxon test
        2**-n_nonzero one-sided (all signs agree, exact null), twice that two-sided; 0 otherwise."""
        if self.n_nonzero is None:
            return 0.0
        return min(1.0, smallest_one_sided_p(self.n_nonzero) * (2 if self.alternative == "two-sided" else 1))

    def reject(self, alpha: float = 0.05) -> bool:
        """True when the p-value is below ``alpha`` (False for an undefined test)."""
        return bool(np.isfinite(self.pvalue) and self.pvalue < alpha)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r} is not one of {ALTERNATIVES}")


def _finite(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def agreement_below(agreement: ArrayLike, threshold: float = 50.0,
                    alternative: str = "less") -> TestResult:
    """Wilcoxon signed-rank test of ``agreement - threshold`` (percent values), one-sided "less" by
    default: H0 median >= threshold, H1 median < threshold. Needs at least one nonzero difference;
    every difference zero gives p = 1; no finite value gives NaN."""
    _check_alternative(alternative)
    diff = _finite(agreement) - threshold
    nonzero = int(np.count_nonzero(diff))
    if diff.size == 0:
        return TestResult("wilcoxon signed-rank", alternative, 0, float("nan"), float("nan"), 0)
    res = _wilcoxon(diff, alternative, nonzero)
    return TestResult("wilcoxon signed-rank", alternative, int(diff.size), float(res.statistic), float(res.pvalue),
                      nonzero)


def _wilcoxon(diff: np.ndarray, alternative: str, nonzero: int):
    """SciPy's Wilcoxon signed-rank test; with every difference zero, its exact method (p = 1)."""
    if nonzero == 0:
        return sps.wilcoxon(diff, alternative=alternative, method="exact")
    return sps.wilcoxon(diff, alternative=alternative)


def smallest_one_sided_p(n_nonzero: int) -> float:
    """The smallest p-value a one-sided Wilcoxon signed-rank test can reach with ``n_nonzero``
    nonzero differences (exact null distribution: all signs agree, probability 2**-n). With
    n <= 4 it is >= 0.0625, so no sample that small can reject at alpha 0.05."""
    return 0.5 ** max(int(n_nonzero), 0)


def _pairs(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(a, dtype=np.float64).ravel()
    second = np.asarray(b, dtype=np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError(f"paired samples differ in length: {first.size} and {second.size}")
    keep = np.isfinite(first) & np.isfinite(second)
    return first[keep], second[keep]


def paired_wilcoxon(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> TestResult:
    """Wilcoxon signed-rank test of the paired differences ``a - b`` (same images, same order).
    alternative "greater" tests whether a tends to exceed b."""
    _check_alternative(alternative)
    first, second = _pairs(a, b)
    nonzero = int(np.count_nonzero(first - second))
    if first.size == 0:
        return TestResult("paired wilcoxon", alternative, 0, float("nan"), float("nan"), 0)
    res = (_wilcoxon(first - second, alternative, nonzero) if nonzero == 0
           else sps.wilcoxon(first, second, alternative=alternative))
    return TestResult("paired wilcoxon", alternative, int(first.size), float(res.statistic), float(res.pvalue),
                      nonzero)


def paired_ttest(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> TestResult:
    """Paired t-test of ``a - b`` (``scipy.stats.ttest_rel``); NaN with fewer than 2 pairs."""
    _check_alternative(alternative)
    first, second = _pairs(a, b)
    if first.size < 2:
        return TestResult("paired t-test", alternative, int(first.size), float("nan"), float("nan"))
    res = sps.ttest_rel(first, second, alternative=alternative)
    return TestResult("paired t-test", alternative, int(first.size), float(res.statistic), float(res.pvalue))


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values (same order as given): the i-th smallest of m is multiplied by
    (m - i + 1), made monotone, capped at 1. NaN p-values stay NaN and are not counted in m."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


@dataclass
class Effect:
    """The median of the paired differences ``a - b`` over ``n`` finite pairs and its bootstrap
    confidence interval [low, high] at ``confidence`` (NaN where undefined)."""

    n: int
    median: float
    low: float
    high: float
    confidence: float


def median_difference(a: ArrayLike, b: ArrayLike, confidence: float = 0.95, resamples: int = 2000,
                      seed: int = 0) -> Effect:
    """Median paired difference ``a - b`` with a percentile bootstrap interval (``scipy.stats.bootstrap``,
    ``resamples`` draws from a generator seeded with ``seed``: the same inputs give the same interval).
    With fewer than 2 pairs the interval is NaN; with all differences equal it is that value."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    first, second = _pairs(a, b)
    diff = first - second
    if diff.size == 0:
        return Effect(0, float("nan"), float("nan"), float("nan"), confidence)
    middle = float(np.median(diff))
    if diff.size < 2:
        return Effect(1, middle, float("nan"), float("nan"), confidence)
    if np.all(diff == diff[0]):  # SciPy's interval is degenerate (and warns): it is the value itself
        return Effect(int(diff.size), middle, middle, middle, confidence)
    res = sps.bootstrap((diff,), np.median, confidence_level=confidence, n_resamples=resamples,
                        method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return Effect(int(diff.size), middle, float(low), float(high), confidence)


__all__ = ["TestResult", "Effect", "agreement_below", "paired_wilcoxon", "paired_ttest", "holm", "median_difference",
           "ALTERNATIVES"]
