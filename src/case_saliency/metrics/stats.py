"""Statistical tests of the diagnostics: pure NumPy and ``scipy.special`` (no ``scipy.stats`` import,
no torch), each equal to its SciPy counterpart and stating its sidedness.

- :func:`signed_rank_test`: the Wilcoxon signed-rank test with the method ``scipy.stats.wilcoxon``
  (SciPy 1.17, ``method="auto"``) chooses, and its p-values: exact for n <= 50 without ties or zeros;
  exact (SciPy: a permutation test that enumerates all 2**n sign flips) for n <= 13 with ties or
  zeros; the normal approximation with the tie correction otherwise. The exact null distribution of
  the signed-rank sum is computed by a recurrence over the (mid)ranks, doubled to integers, and
  cached per set of ranks, so a sample with ties costs microseconds, not a permutation loop.
- :func:`agreement_below`: the paper's class-sensitivity test, a one-sided signed-rank test of
  ``agreement - threshold`` with alternative "less" (H0: median agreement >= threshold);
  rejecting at alpha means the method separates the top-1 and top-2 classes.
- :func:`paired_wilcoxon`, :func:`paired_ttest`, :func:`sign_test`: paired comparisons of two
  methods on the same images, two-sided unless told otherwise.
- :func:`tost`, :func:`minimum_detectable_difference`: equivalence within a margin and the
  smallest difference a run of this size detects (paired t).
- :func:`compare_paired`, :func:`verdict`: a method against a baseline on the same images (see
  :class:`Comparison` for the one statistic that gives both direction and significance).
- :func:`holm`: Holm's step-down correction of a family of p-values.
- :func:`bootstrap_interval`, :func:`median_difference`: seeded, vectorised percentile bootstrap
  intervals.

NaN values (degenerate pairs, failed rows) are dropped first (pairwise for paired tests) and the
number kept is reported as ``n``. Zero differences are dropped by the signed-rank test (SciPy's
default ``zero_method="wilcox"``). When every difference is zero the test has nothing to rank: the
p-value is 1 (no evidence against H0), which is what SciPy's exact method gives
(``wilcoxon(zeros, method="exact")``); its default method gives NaN there for n > 13 (its normal
approximation divides 0 by 0), which would read "n/a" instead of "does not separate".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

ALTERNATIVES = ("two-sided", "less", "greater")
EXACT_MAX_N = 50  # SciPy: above this many differences "auto" uses the normal approximation
EXACT_WITH_TIES_MAX_N = 13  # SciPy: with ties or zeros, 2**n sign flips are enumerated up to here


@dataclass
class TestResult:
    """One test: its name and sidedness, sample size, statistic and p-value; for Wilcoxon tests
    also the number of nonzero differences it ranked (zeros are dropped) and the method used
    ("exact" or "normal")."""

    test: str
    alternative: str
    n: int
    statistic: float
    pvalue: float
    n_nonzero: int | None = None
    method: str | None = None

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


# ---------------------------------------------------------------------------------------------
# The signed-rank test.


def _midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(average ranks of ``values`` (1-based, ties share their mean rank), size of each tie group).
    NaNs rank last and never tie (as in SciPy's ``_rankdata``)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.concatenate([[True], ordered[:-1] != ordered[1:]])
    first = np.flatnonzero(starts)
    counts = np.diff(np.append(first, values.size))
    mean_rank = first + 1 + (counts - 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks, counts


@lru_cache(maxsize=256)
def signed_rank_null(doubled_ranks: tuple[int, ...]) -> np.ndarray:
    """The exact null distribution of twice the signed-rank sum ``2 * R+`` for these ranks.

    Under H0 each difference's sign is + or - with probability 1/2, independently, so ``2 * R+`` is
    the sum of a random subset of the doubled ranks. The recurrence adds one rank at a time:
    ``pmf_j(s) = (pmf_{j-1}(s) + pmf_{j-1}(s - r_j)) / 2``. Doubling makes midranks (x.5) integers.
    Cached per tuple of doubled ranks (sorted by the caller), so repeated samples cost nothing.

    Args:
        doubled_ranks: twice the (mid)ranks of the nonzero differences, as integers, sorted.

    Returns:
        (sum(doubled_ranks) + 1,) float64 array: ``pmf[s] = P(2 R+ = s)``; dyadic, exact in float64
        for up to 53 ranks. Read-only (it is shared by the cache).
    """
    pmf = np.zeros(sum(doubled_ranks) + 1, dtype=np.float64)
    pmf[0] = 1.0
    top = 0
    for rank in doubled_ranks:
        shifted = pmf[: top + 1].copy()
        pmf[: top + 1] *= 0.5
        pmf[rank: rank + top + 1] += 0.5 * shifted
        top += rank
    pmf.flags.writeable = False
    return pmf


def signed_rank_test(differences: ArrayLike, alternative: str = "two-sided") -> TestResult:
    """Wilcoxon signed-rank test of ``differences`` (H0: symmetric about 0; it tests the
    pseudo-median, not the median), with the method and the p-value of ``scipy.stats.wilcoxon``'s
    default (``method="auto"``, ``zero_method="wilcox"``, no continuity correction) in SciPy 1.17:

    - more than 50 differences: the normal approximation, with the tie correction;
    - up to 50, no ties and no zeros: the exact null distribution;
    - up to 13 with ties or zeros: exact over all sign flips (SciPy's permutation test, which
      enumerates them; here :func:`signed_rank_null`'s recurrence gives the same distribution);
    - 14 to 50 with ties or zeros: the normal approximation.

    Zeros are dropped (``n_nonzero`` counts the rest); every difference zero gives p = 1.

    Args:
        differences: (n,) values; NaNs are dropped.
        alternative: "two-sided", "less" (the differences tend to be negative) or "greater".

    Returns:
        TestResult with statistic ``R+`` one-sided, ``min(R+, R-)`` two-sided (SciPy's), and
        ``method`` "exact" or "normal".
    """
    _check_alternative(alternative)
    diff = _finite(differences)
    n = int(diff.size)
    if n == 0:
        return TestResult("wilcoxon signed-rank", alternative, 0, math.nan, math.nan, 0)
    zero = diff == 0
    nonzero = int(n - zero.sum())
    # SciPy ranks |d| with zeros set to NaN (they rank last, never tie), then sums the ranks of each sign.
    magnitude = np.where(zero, np.nan, np.abs(diff))
    ranks, counts = _midranks(magnitude)
    r_plus = float(np.sum((diff > 0) * ranks))
    r_minus = float(np.sum((diff < 0) * ranks))
    statistic = min(r_plus, r_minus) if alternative == "two-sided" else r_plus
    if nonzero == 0:
        return TestResult("wilcoxon signed-rank", alternative, n, statistic, 1.0, 0, "exact")
    ties = bool(np.any(counts > 1))  # zeros (NaN) never tie
    exact = n <= EXACT_MAX_N and (not (ties or nonzero < n) or n <= EXACT_WITH_TIES_MAX_N)
    if exact:
        doubled = tuple(sorted(int(round(2 * r)) for r in ranks[~zero]))
        pmf = signed_rank_null(doubled)
        observed = int(round(2 * r_plus))
        less = float(pmf[: observed + 1].sum())
        greater = float(pmf[observed:].sum())
        p = {"less": less, "greater": greater, "two-sided": min(1.0, 2 * min(less, greater))}[alternative]
        return TestResult("wilcoxon signed-rank", alternative, n, statistic, p, nonzero, "exact")
    count = float(nonzero)
    mean = count * (count + 1.0) * 0.25
    tie_correction = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    se = math.sqrt((count * (count + 1.0) * (2.0 * count + 1.0) - tie_correction / 2) / 24)
    z = (r_plus - mean) / se
    p = {"less": special.ndtr(z), "greater": special.ndtr(-z), "two-sided": 2 * special.ndtr(-abs(z))}[alternative]
    return TestResult("wilcoxon signed-rank", alternative, n, statistic, float(min(p, 1.0)), nonzero, "normal")


def agreement_below(agreement: ArrayLike, threshold: float = 50.0,
                    alternative: str = "less") -> TestResult:
    """Wilcoxon signed-rank test of ``agreement - threshold`` (percent values), one-sided "less" by
    default: H0 median >= threshold, H1 median < threshold. Needs at least one nonzero difference;
    every difference zero gives p = 1; no finite value gives NaN.

    Args:
        agreement: (n,) agreements in percent; NaNs are dropped.
        threshold: the percent the agreement is tested against.
        alternative: see :func:`signed_rank_test`.

    Returns:
        TestResult (test "wilcoxon signed-rank").
    """
    _check_alternative(alternative)
    return signed_rank_test(_finite(agreement) - threshold, alternative)


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
    alternative "greater" tests whether a tends to exceed b. Equal to ``scipy.stats.wilcoxon(a, b)``.

    Args:
        a, b: (n,) paired values; pairs with a NaN are dropped.
        alternative: "two-sided", "less" or "greater".

    Returns:
        TestResult (test "paired wilcoxon").
    """
    _check_alternative(alternative)
    first, second = _pairs(a, b)
    result = signed_rank_test(first - second, alternative)
    result.test = "paired wilcoxon"
    return result


def _t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    return float(special.stdtr(df, -t))


def paired_ttest(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> TestResult:
    """Paired t-test of ``a - b``, equal to ``scipy.stats.ttest_rel``; NaN with fewer than 2 pairs.

    Args:
        a, b: (n,) paired values; pairs with a NaN are dropped.
        alternative: "two-sided", "less" or "greater".

    Returns:
        TestResult (test "paired t-test"), statistic t with n - 1 degrees of freedom.
    """
    _check_alternative(alternative)
    first, second = _pairs(a, b)
    return _one_sample_t(first - second, 0.0, alternative, "paired t-test")


def _one_sample_t(diff: np.ndarray, mu: float, alternative: str, name: str) -> TestResult:
    n = int(diff.size)
    if n < 2:
        return TestResult(name, alternative, n, math.nan, math.nan)
    df = n - 1
    mean = float(np.mean(diff))
    se = float(np.std(diff, ddof=1)) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = float(np.divide(mean - mu, se))
    if math.isnan(t):
        return TestResult(name, alternative, n, t, math.nan)
    p = {"less": _t_sf(-t, df), "greater": _t_sf(t, df), "two-sided": 2 * _t_sf(abs(t), df)}[alternative]
    return TestResult(name, alternative, n, t, min(p, 1.0))


def sign_test(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> TestResult:
    """Sign test of the paired differences ``a - b`` (H0: median difference 0): the number of positive
    differences among the nonzero ones against Binomial(n_nonzero, 1/2); zeros are dropped. Equal to
    ``scipy.stats.binomtest(positives, n_nonzero)``; no nonzero difference gives p = 1.

    Args:
        a, b: (n,) paired values; pairs with a NaN are dropped.
        alternative: "two-sided", "less" (fewer positives than negatives) or "greater".

    Returns:
        TestResult (test "sign test"), statistic = the number of positive differences.
    """
    _check_alternative(alternative)
    first, second = _pairs(a, b)
    diff = first - second
    positive, nonzero = int(np.sum(diff > 0)), int(np.count_nonzero(diff))
    if nonzero == 0:
        p = 1.0 if diff.size else math.nan
    elif alternative == "less":
        p = float(special.bdtr(positive, nonzero, 0.5))
    elif alternative == "greater":
        p = float(special.bdtrc(positive - 1, nonzero, 0.5)) if positive > 0 else 1.0
    else:  # symmetric null: twice the smaller tail
        p = min(1.0, 2 * float(special.bdtr(min(positive, nonzero - positive), nonzero, 0.5)))
    return TestResult("sign test", alternative, int(diff.size), float(positive), p, nonzero)


def tost(differences: ArrayLike, margin: float = 5.0) -> tuple[float, TestResult, TestResult]:
    """Two one-sided t-tests of equivalence: H0 ``mean <= -margin`` or ``mean >= +margin``, H1 the mean
    difference lies inside (-margin, +margin). Its p-value is the larger of the two one-sided tests'
    (``scipy.stats.ttest_1samp(d, -margin, alternative="greater")`` and
    ``ttest_1samp(d, margin, alternative="less")``); rejecting at alpha is the same as the
    (1 - 2 alpha) t interval of the mean lying inside the margin.

    Args:
        differences: (n,) paired differences; NaNs are dropped.
        margin: the equivalence margin, > 0, in the differences' unit (agreement points).

    Returns:
        (p, lower test, upper test). With fewer than 2 differences p is NaN; with all differences
        equal (no spread) p is 0 inside the margin and 1 outside it.
    """
    if not margin > 0:
        raise ValueError(f"margin={margin} must be positive, e.g. 5 (agreement points)")
    diff = _finite(differences)
    lower = _one_sample_t(diff, -margin, "greater", "tost lower")
    upper = _one_sample_t(diff, margin, "less", "tost upper")
    if diff.size >= 2 and np.all(diff == diff[0]):
        inside = -margin < float(diff[0]) < margin
        return (0.0 if inside else 1.0), lower, upper
    return max(lower.pvalue, upper.pvalue), lower, upper


def _t_power(effect: float, n: int, sd: float, alpha: float) -> float:
    """Power of the two-sided one-sample t-test at level alpha for a true mean ``effect``."""
    df = n - 1
    critical = float(special.stdtrit(df, 1 - alpha / 2))
    noncentrality = effect * math.sqrt(n) / sd
    return float(1 - special.nctdtr(df, noncentrality, critical) + special.nctdtr(df, noncentrality, -critical))


def minimum_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean paired difference that a two-sided paired t-test at ``alpha`` detects
    with probability ``power`` on ``n`` pairs whose differences have standard deviation ``sd``.

    Method: the exact power of the t-test under the noncentral t distribution (noncentrality
    ``delta * sqrt(n) / sd``, n - 1 degrees of freedom), solved for delta by bisection. It treats the
    observed SD as the true one (a planning approximation, not a test) and uses the uncorrected alpha.

    Args:
        sd: standard deviation of the paired differences (e.g. the run's observed SD).
        n: number of pairs.
        alpha: two-sided level.
        power: the probability of detection, in (alpha, 1).

    Returns:
        The difference in the unit of ``sd``; NaN with n < 2 or a non-finite sd; 0 when sd is 0; inf
        when alpha is 0 (nothing is detectable).
    """
    if not alpha < power < 1:
        raise ValueError(f"power={power} must lie in (alpha={alpha}, 1), e.g. 0.8")
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    if alpha <= 0:  # a test at level 0 never rejects: no difference is detectable
        return math.inf
    low, high = 0.0, sd
    while _t_power(high, n, sd, alpha) < power:
        high *= 2
        if high > sd * 1e12:  # power cannot reach the target (alpha too small for this n)
            return math.inf
    for _ in range(60):  # bisection to ~1e-15 relative: power is increasing in the difference
        middle = (low + high) / 2
        if _t_power(middle, n, sd, alpha) < power:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values (same order as given): the i-th smallest of m is multiplied by
    (m - i + 1), made monotone, capped at 1. NaN p-values stay NaN and are not counted in m.

    Args:
        pvalues: (m,) p-values.

    Returns:
        (m,) adjusted p-values.
    """
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


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals.

_STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}
_BOOTSTRAP_CHUNK = 4_000_000  # values resampled per block: bounds memory for large n


def bootstrap_interval(values: ArrayLike, statistic: str = "mean", confidence: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean or median of ``values``, vectorised.

    Draws ``resamples`` samples with replacement as one (resamples, n) index array from
    ``numpy.random.default_rng(seed)`` (in blocks for large n; the draws are the same as drawing
    each resample in turn), computes the statistic of each row, and takes the (1 - confidence)/2
    and (1 + confidence)/2 quantiles (NumPy's linear interpolation).

    Args:
        values: (n,) values; NaNs are dropped.
        statistic: "mean" or "median".
        confidence: in (0, 1).
        resamples: number of bootstrap samples.
        seed: the generator's seed: the same inputs give the same interval.

    Returns:
        (low, high); NaN with fewer than 2 values; the value itself when all values are equal.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic={statistic!r} is not one of {sorted(_STATISTICS)}")
    sample = _finite(values)
    n = sample.size
    if n < 2:
        return math.nan, math.nan
    if np.all(sample == sample[0]):
        return float(sample[0]), float(sample[0])
    rng = np.random.default_rng(seed)
    reduce = _STATISTICS[statistic]
    rows = max(1, _BOOTSTRAP_CHUNK // n)
    estimates = np.concatenate([reduce(sample[rng.integers(0, n, size=(min(rows, resamples - start), n))], axis=1)
                                for start in range(0, resamples, rows)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


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
    """Median paired difference ``a - b`` with a percentile bootstrap interval
    (:func:`bootstrap_interval`, ``resamples`` draws from a generator seeded with ``seed``).
    With fewer than 2 pairs the interval is NaN; with all differences equal it is that value.

    Args:
        a, b: (n,) paired values; pairs with a NaN are dropped.
        confidence, resamples, seed: see :func:`bootstrap_interval`.

    Returns:
        Effect.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    first, second = _pairs(a, b)
    diff = first - second
    if diff.size == 0:
        return Effect(0, math.nan, math.nan, math.nan, confidence)
    low, high = bootstrap_interval(diff, "median", confidence, resamples, seed)
    return Effect(int(diff.size), float(np.median(diff)), low, high, confidence)


# ---------------------------------------------------------------------------------------------
# A method against a baseline on the same images.


@dataclass
class Comparison:
    """A method against a baseline on the same ``n`` images: the paired differences
    ``d = method - baseline``.

    The one statistic: the **mean** paired difference. Its sign gives the direction, the paired
    t-test of it (two-sided) the significance (``p``, Holm-corrected across a run's methods by the
    caller), TOST of it the equivalence (``tost_p``), and the paired t power the minimum detectable
    difference (``mdd``); ``mean_low``/``mean_high`` is its percentile bootstrap interval. The
    median with its bootstrap interval, the Wilcoxon signed-rank p (it tests the pseudo-median) and
    the sign test p (the median) are reported beside it as checks; they never decide a verdict.

    Attributes:
        n: pairs with a finite value on both sides.
        mean, sd: mean and SD (ddof 1) of d; median: median of d.
        mean_low, mean_high, median_low, median_high: bootstrap intervals at ``confidence``.
        p: two-sided paired t-test of mean 0; wilcoxon_p, sign_p: two-sided checks.
        tost_p: equivalence within ``margin`` (two one-sided t-tests).
        mdd: minimum detectable difference at ``alpha`` and 80 % power (paired t, the observed SD).
        identical: every difference is exactly 0 (e.g. a method equal to the baseline by construction).
    """

    n: int
    mean: float
    sd: float
    median: float
    mean_low: float
    mean_high: float
    median_low: float
    median_high: float
    p: float
    wilcoxon_p: float
    sign_p: float
    tost_p: float
    mdd: float
    margin: float
    alpha: float
    confidence: float
    identical: bool

    def as_dict(self) -> dict:
        return asdict(self)


def compare_paired(method: ArrayLike, baseline: ArrayLike, margin: float = 5.0, alpha: float = 0.05,
                   confidence: float = 0.95, power: float = 0.8, resamples: int = 2000,
                   seed: int = 0) -> Comparison:
    """Compare a method with a baseline on the same images (see :class:`Comparison`).

    Args:
        method, baseline: (n,) paired values (e.g. agreement in percent), same images in the same order;
            pairs with a NaN are dropped.
        margin: the equivalence margin (TOST), > 0, in the values' unit.
        alpha: the level the minimum detectable difference is computed at.
        confidence: the bootstrap intervals' level.
        power: the power of the minimum detectable difference.
        resamples, seed: the bootstrap's draws (seeded: reproducible).

    Returns:
        Comparison (uncorrected p-values; Holm across methods is the caller's, see :func:`holm`).
    """
    first, second = _pairs(method, baseline)
    diff = first - second
    n = int(diff.size)
    sd = float(np.std(diff, ddof=1)) if n > 1 else math.nan
    mean_low, mean_high = bootstrap_interval(diff, "mean", confidence, resamples, seed)
    median_low, median_high = bootstrap_interval(diff, "median", confidence, resamples, seed)
    identical = bool(n > 0 and np.all(diff == 0))
    return Comparison(
        n=n, mean=float(np.mean(diff)) if n else math.nan, sd=sd, median=float(np.median(diff)) if n else math.nan,
        mean_low=mean_low, mean_high=mean_high, median_low=median_low, median_high=median_high,
        p=1.0 if identical else paired_ttest(first, second).pvalue,
        wilcoxon_p=signed_rank_test(diff).pvalue if n else math.nan, sign_p=sign_test(first, second).pvalue,
        tost_p=tost(diff, margin)[0], mdd=minimum_detectable_difference(sd, n, alpha, power),
        margin=margin, alpha=alpha, confidence=confidence, identical=identical)


VERDICTS = ("lower", "higher", "equal", "identical", "undetermined")


def verdict(comparison: Comparison, p: float | None = None, tost_p: float | None = None,
            alpha: float | None = None) -> str:
    """Which of :data:`VERDICTS` the comparison supports.

    "lower"/"higher": the mean difference is below/above 0 and its t-test rejects (p < alpha);
    "equal": not that, and TOST rejects (the mean lies within ±margin); "identical": every difference
    is 0; "undetermined": neither test rejects (or fewer than 2 pairs): the data allow both.

    Args:
        comparison: from :func:`compare_paired`.
        p, tost_p: the p-values to decide with (e.g. Holm-corrected); default the comparison's own.
        alpha: the level; default the comparison's.

    Returns:
        One of :data:`VERDICTS`.
    """
    p = comparison.p if p is None else p
    tost_p = comparison.tost_p if tost_p is None else tost_p
    alpha = comparison.alpha if alpha is None else alpha
    if comparison.identical:
        return "identical"
    if math.isfinite(p) and p < alpha and comparison.mean != 0:
        return "lower" if comparison.mean < 0 else "higher"
    if math.isfinite(tost_p) and tost_p < alpha:
        return "equal"
    return "undetermined"


__all__ = ["TestResult", "Effect", "Comparison", "VERDICTS", "agreement_below", "signed_rank_test",
           "signed_rank_null", "paired_wilcoxon", "paired_ttest", "sign_test", "tost",
           "minimum_detectable_difference", "holm", "bootstrap_interval", "median_difference", "compare_paired",
           "verdict", "smallest_one_sided_p", "ALTERNATIVES"]
