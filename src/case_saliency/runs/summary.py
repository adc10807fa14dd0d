"""Per-method tables of a run directory: what ``case-saliency summarize`` prints and the report reads.

Diagnose runs: per method and k, N (scored pairs), mean / SD / median agreement, the degenerate
and error counts, mean Spearman and SSIM, and the one-sided Wilcoxon signed-rank test of
agreement below the threshold (H1: median < threshold), with an optional Holm correction over
all the table's tests. A sample too small for the test ever to reject (n <= 4 nonzero
differences at alpha 0.05) is concluded "too few images to decide", not "does not separate".
Beside them, what could flatter a method: ``in_contrast``, the percentage of scored pairs in which
a map's contrast set holds the other compared class (the maps are pushed apart by construction),
with the mean and the test's p over the other pairs (``mean_without``, ``p_without``), and the
baseline's (Grad-CAM's) mean agreement on those same images with a two-sided paired Wilcoxon test of
the two (``baseline_without``, ``p_vs_baseline``: the other pairs are not a random subset, so the
fair comparison is on the same images); and
``sparse``, the percentage of scored pairs where a map has fewer positive pixels than the top set.
Fidelity runs: per method, the means of the drops and AUCs over non-degenerate maps (a constant
map's "top pixels" are a tie order, not evidence: such rows are counted, and left out of the
means and of the paired tests); and paired two-sided Wilcoxon and t-tests of a reference method
(CASE) against each other method on the images both scored, with an effect size: the median
paired difference and its bootstrap 95% interval (seeded, 2,000 resamples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.stats import (Comparison, TestResult, agreement_below, compare_paired, holm, median_difference,
                             paired_ttest, paired_wilcoxon, smallest_one_sided_p, verdict)
from .settings import sample_warning
from .rundir import RunDir

EQUIVALENCE_MARGIN = 5.0  # agreement points: "equal within ±5 points"


def _share(flags: pd.Series) -> float:
    return float(flags.mean() * 100.0) if len(flags) else np.nan


def _read(run_dir: str | Path) -> tuple[RunDir, pd.DataFrame]:
    """The one place this module reads a run: (the run, its results table as a DataFrame)."""
    run = RunDir.read(run_dir, kinds=("diagnose", "fidelity"))
    return run, run.frame()


def load_results(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(config, results table) of a run directory, read and validated by ``RunDir.read`` (which
    raises ``RunDirError`` naming the file and line of anything damaged); text columns stay text."""
    run, frame = _read(run_dir)
    return run.config, frame


def _order(methods: list[str], config: Mapping[str, Any]) -> list[str]:
    preferred = [m for m in config.get("methods", []) if m in methods]
    return preferred + sorted(set(methods) - set(preferred))


def _scored(part: pd.DataFrame) -> pd.DataFrame:
    """The rows a test scores: no error, no degenerate map, an agreement."""
    failed = part["error"].astype(str) != ""
    return part[~failed & ~part["degenerate"].astype(bool) & part["agreement"].notna()]


def _versus_baseline(without: pd.DataFrame, baseline: pd.DataFrame) -> dict[str, float]:
    """The baseline's mean agreement on the images of ``without`` (a method's non-circular pairs, scored)
    and the two-sided paired Wilcoxon p of the method against it there."""
    mine, theirs = without.set_index("image_id")["agreement"], baseline.set_index("image_id")["agreement"]
    both = mine.index.intersection(theirs.index)
    a, b = mine.loc[both].to_numpy(dtype=float), theirs.loc[both].to_numpy(dtype=float)
    return {"baseline_without": float(np.mean(b)) if b.size else np.nan,
            "p_vs_baseline": paired_wilcoxon(a, b).pvalue if b.size else np.nan}


def summarize_diagnose(frame: pd.DataFrame, threshold: float = 50.0, alpha: float = 0.05,
                       correction: str | None = None, methods_order: list[str] | None = None,
                       baseline: str | None = "gradcam") -> pd.DataFrame:
    """One row per (method, k_percent); see the module docstring. correction: None or "holm".
    baseline: the method that a method with circular pairs is compared with on its other pairs (None: none)."""
    rows: list[dict[str, object]] = []
    tests: list[TestResult] = []
    methods = methods_order or sorted(frame["method"].unique())
    baseline_rows: dict[float, pd.DataFrame] = {}  # the baseline's scored rows per k, found once
    for method in methods:
        for k in sorted(frame.loc[frame["method"] == method, "k_percent"].unique()):
            part = frame[(frame["method"] == method) & (frame["k_percent"] == k)]
            failed = part["error"].astype(str) != ""
            degenerate = part["degenerate"] & ~failed
            kept = _scored(part)
            scored = kept["agreement"].to_numpy(dtype=float)
            test = agreement_below(scored, threshold)
            row = {"method": method, "k_percent": float(k), "n": int(scored.size),
                   "mean": float(np.mean(scored)) if scored.size else np.nan,
                   "sd": float(np.std(scored, ddof=1)) if scored.size > 1 else np.nan,
                   "median": float(np.median(scored)) if scored.size else np.nan,
                   "degenerate": int(degenerate.sum()), "errors": int(failed.sum()),
                   "spearman": float(part.loc[~failed, "spearman"].mean()),
                   "ssim": float(part.loc[~failed, "ssim"].mean()),
                   "statistic": test.statistic, "pvalue": test.pvalue}
            if "other_in_contrast" in kept:  # runs of earlier versions do not record it
                inside = kept["other_in_contrast"].astype(bool)
                without = kept.loc[~inside, "agreement"].to_numpy(dtype=float)
                row.update(in_contrast=_share(inside), n_without=int(without.size),
                           mean_without=float(np.mean(without)) if without.size else np.nan,
                           p_without=agreement_below(without, threshold).pvalue,
                           baseline_without=np.nan, p_vs_baseline=np.nan)
                if inside.any() and method != baseline:
                    if k not in baseline_rows:
                        baseline_rows[k] = _scored(frame[(frame["method"] == baseline) & (frame["k_percent"] == k)])
                    if len(baseline_rows[k]):
                        row.update(_versus_baseline(kept[~inside], baseline_rows[k]))
            if "sparse" in kept:
                row["sparse"] = _share(kept["sparse"].astype(bool))
            rows.append(row)
            tests.append(test)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    decisive = "pvalue"
    if correction == "holm":
        table["p_holm"] = holm(table["pvalue"].to_numpy())
        decisive = "p_holm"
    elif correction not in (None, "none"):
        raise ValueError(f"correction={correction!r}: use None or 'holm'")
    table["conclusion"] = [_agreement_conclusion(p, test, threshold, alpha)
                           for p, test in zip(table[decisive], tests, strict=False)]
    return table


def _agreement_conclusion(p: float, test: TestResult, threshold: float, alpha: float) -> str:
    """p: the test's p-value, Holm-corrected where asked."""
    if not np.isfinite(p):
        return "n/a (no scored pairs)"
    if p < alpha:
        return f"separates (median < {threshold:g}%)"
    # "does not separate" would blame the method, not the sample; but every difference zero (p = 1)
    # on a sample that could reject is no evidence of separation at all.
    if smallest_one_sided_p(test.n) >= alpha or (test.n_nonzero and test.smallest_pvalue() >= alpha):
        return f"too few images to decide (n={test.n_nonzero}; sample more)"
    return "does not separate"


# The fidelity measures in the order a summary shows them: the primary ones first (deletion and insertion AUC
# on the blur, the class-contrastive drop), then the confidence drop at the run's k and fill (saturated on many
# models: random maps reach nearly the same value, shown beside it).
FIDELITY_MEASURES = ("deletion_auc", "insertion_auc", "contrastive_drop", "drop_relative", "drop_absolute")
PRIMARY_MEASURES = ("deletion_auc", "insertion_auc")
# Which way is better, per measure (lower deletion AUC: the probability falls sooner as the top pixels go).
BETTER = {"deletion_auc": "lower", "insertion_auc": "higher", "contrastive_drop": "higher", "drop_relative": "higher",
          "drop_absolute": "higher"}
FIDELITY_MARGIN = 0.05  # AUC units (probability x fraction removed): "equal within ±0.05"
RANDOM_METHOD = "random"


def random_method(methods: list[str]) -> str | None:
    """The run's random-map control (the first method whose spec is ``random``, with or without options)."""
    return next((m for m in methods if m.partition("(")[0] == RANDOM_METHOD), None)


def _usable(frame: pd.DataFrame) -> pd.Series:
    """Rows a fidelity test scores: no error, a map that ranks pixels (not degenerate)."""
    return (frame["error"].astype(str) == "") & ~_degenerate(frame)


def _paired(frame: pd.DataFrame, first: str, second: str, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``measure`` for two methods on the images both scored, in image-id order."""
    usable = frame[_usable(frame)]
    mine = usable[usable["method"] == first].drop_duplicates("image_id").set_index("image_id")[measure]
    theirs = usable[usable["method"] == second].drop_duplicates("image_id").set_index("image_id")[measure]
    both = mine.index.intersection(theirs.index).sort_values()
    return mine.loc[both].to_numpy(dtype=float), theirs.loc[both].to_numpy(dtype=float)


def summarize_fidelity(frame: pd.DataFrame, reference: str = "case", alpha: float = 0.05,
                       correction: str | None = None,
                       methods_order: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-method means, paired tests of ``reference`` against each other method).

    Means: per measure of ``FIDELITY_MEASURES`` the run has (runs of earlier versions lack the
    contrastive drop), ``{measure}_mean`` and ``{measure}_sd`` over non-degenerate maps, primary measures
    first; beside ``drop_relative_mean``, ``drop_relative_random``: the random-map control's mean on the
    images the method scored (where the run has a ``random`` method).
    Paired tests use the images where both methods have a number; differences are
    reference - other; both tests two-sided.
    """
    methods = methods_order or sorted(frame["method"].unique())
    measures = [m for m in FIDELITY_MEASURES if m in frame]
    control = random_method(methods)
    means: list[dict[str, object]] = []
    for method in methods:
        part = frame[frame["method"] == method]
        failed = part["error"].astype(str) != ""
        degenerate = _degenerate(part) & ~failed
        ok = part[~failed & ~degenerate]
        row: dict[str, object] = {"method": method, "n": int(len(ok)), "degenerate": int(degenerate.sum()),
                                  "errors": int(failed.sum())}
        for measure in measures:
            values = ok[measure].dropna().to_numpy(dtype=float)
            row[f"{measure}_mean"] = float(values.mean()) if values.size else np.nan
            row[f"{measure}_sd"] = float(values.std(ddof=1)) if values.size > 1 else np.nan
            if measure == "drop_relative" and control is not None:
                _, theirs = _paired(frame, method, control, measure)
                finite = theirs[np.isfinite(theirs)]
                row["drop_relative_random"] = float(finite.mean()) if finite.size else np.nan
        means.append(row)
    tests: list[dict[str, object]] = []
    usable = _usable(frame)  # paired on maps that rank pixels
    if reference in methods:
        ref = frame[(frame["method"] == reference) & usable].set_index("image_id")
        for method in methods:
            if method == reference:
                continue
            other = frame[(frame["method"] == method) & usable].set_index("image_id")
            shared = ref.index.intersection(other.index)
            for measure in measures:
                a = ref.loc[shared, measure].to_numpy(dtype=float)
                b = other.loc[shared, measure].to_numpy(dtype=float)
                if np.all(np.isnan(a)) and np.all(np.isnan(b)):
                    continue  # e.g. curves skipped (steps=0)
                w, t, effect = paired_wilcoxon(a, b), paired_ttest(a, b), median_difference(a, b)
                tests.append({"reference": reference, "method": method, "measure": measure, "n": w.n,
                              "mean_difference": float(np.nanmean(a - b)) if w.n else np.nan,
                              "median_difference": effect.median, "ci_low": effect.low, "ci_high": effect.high,
                              "wilcoxon_statistic": w.statistic, "wilcoxon_p": w.pvalue,
                              "t_statistic": t.statistic, "t_p": t.pvalue, "sidedness": "two-sided"})
    tests_frame = pd.DataFrame(tests)
    if not tests_frame.empty:
        if correction == "holm":
            tests_frame["wilcoxon_p_holm"] = holm(tests_frame["wilcoxon_p"].to_numpy())
            tests_frame["t_p_holm"] = holm(tests_frame["t_p"].to_numpy())
        key = "wilcoxon_p_holm" if correction == "holm" else "wilcoxon_p"
        tests_frame["conclusion"] = ["n/a" if not np.isfinite(p) else
                                     ("differs" if p < alpha else "no difference shown") for p in tests_frame[key]]
    return pd.DataFrame(means), tests_frame


MEASURE_WORDS = {"deletion_auc": "deletion AUC", "insertion_auc": "insertion AUC",
                 "contrastive_drop": "class-contrastive drop"}


def compare_fidelity(frame: pd.DataFrame, baseline: str = "gradcam", measures: tuple[str, ...] = PRIMARY_MEASURES,
                     margin: float = FIDELITY_MARGIN, alpha: float = 0.05, correction: str | None = "holm",
                     methods_order: list[str] | None = None, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every method against ``baseline`` on the images both scored, per primary fidelity measure.

    Args:
        frame: a fidelity run's results table.
        baseline: the method compared with (absent from the run: an empty table).
        measures: the measures compared (columns the run lacks are skipped).
        margin: the equivalence margin, in the measure's unit (AUC: probability x fraction removed).
        alpha: the verdicts' level.
        correction: "holm" (default: across the table's comparisons, separately for the difference and the
            equivalence tests) or None.
        methods_order: the methods' order (default sorted).
        resamples, seed: the bootstrap's (seeded).

    Returns:
        One row per (method, measure): ``n``, ``mean_difference`` (method - baseline) with ``ci_low``/``ci_high``
        (bootstrap 95%), ``p`` (paired t, two-sided) and ``p_holm``, ``wilcoxon_p``, ``sign_p``, ``tost_p`` and
        ``tost_p_holm``, ``mdd``, ``verdict`` (``metrics.stats.VERDICTS``: "lower"/"higher" mean difference)
        and ``line`` (in words: which way is more faithful).
    """
    if correction not in (None, "none", "holm"):
        raise ValueError(f"correction={correction!r}: use None or 'holm'")
    if "method" not in frame or baseline not in set(frame["method"]):
        return pd.DataFrame()
    methods = [m for m in (methods_order or sorted(frame["method"].unique())) if m != baseline]
    comparisons: list[tuple[str, str, Comparison]] = []
    for measure in (m for m in measures if m in frame):
        for method in methods:
            mine, theirs = _paired(frame, method, baseline, measure)
            if not np.isfinite(mine).any():
                continue
            comparisons.append((method, measure, compare_paired(mine, theirs, margin=margin, alpha=alpha,
                                                                resamples=resamples, seed=seed)))
    if not comparisons:
        return pd.DataFrame()
    holm_on = correction == "holm"
    family = [(np.nan, np.nan) if c.identical else (c.p, c.tost_p) for _, _, c in comparisons]
    p_used = holm([p for p, _ in family]) if holm_on else [c.p for _, _, c in comparisons]
    tost_used = holm([t for _, t in family]) if holm_on else [c.tost_p for _, _, c in comparisons]
    rows: list[dict[str, object]] = []
    for (method, measure, c), p, tost_p in zip(comparisons, p_used, tost_used, strict=True):
        decided = verdict(c, float(p), float(tost_p), alpha)
        rows.append({"method": method, "measure": measure, "baseline": baseline, "n": c.n,
                     "mean_difference": c.mean, "ci_low": c.mean_low, "ci_high": c.mean_high,
                     "median_difference": c.median, "sd_difference": c.sd, "p": c.p,
                     "p_holm": float(p) if holm_on else np.nan, "wilcoxon_p": c.wilcoxon_p, "sign_p": c.sign_p,
                     "tost_p": c.tost_p, "tost_p_holm": float(tost_p) if holm_on else np.nan, "margin": margin,
                     "mdd": c.mdd, "verdict": decided,
                     "line": _fidelity_line(method, baseline, measure, c, decided, float(p), float(tost_p), holm_on)})
    return pd.DataFrame(rows)


def _fidelity_line(method: str, baseline: str, measure: str, c: Comparison, decided: str, p: float,
                   tost_p: float, holm_on: bool) -> str:
    """One fidelity verdict in words, e.g. "CASE vs Grad-CAM, deletion AUC: more faithful by 0.012
    (difference -0.012 [95% CI -0.02, -0.004]), p = 0.003 (Holm), MDD 0.01 at n = 50"."""
    head = f"{display_name(method)} vs {display_name(baseline)}, {MEASURE_WORDS.get(measure, measure)}"
    better = (decided == "lower") == (BETTER[measure] == "lower")
    return _comparison_line(head, c, decided, p, tost_p, holm_on, number=".3g", unit="", identical="identical",
                            direction=f"{'more' if better else 'less'} faithful", note_equivalence=False)


def _degenerate(frame: pd.DataFrame) -> pd.Series:
    """The rows' degenerate flags (all False for fidelity runs of earlier versions, which lack them)."""
    if "degenerate" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["degenerate"].astype(bool)


def summarize_run(run_dir: str | Path, threshold: float | None = None, alpha: float | None = None,
                  correction: str | None = None, reference: str = "case", *, baseline: str = "gradcam",
                  margin: float = EQUIVALENCE_MARGIN, comparison_correction: str | None = "holm") -> dict[str, Any]:
    """The run's tables: {"kind", "config", "agreement", "versus_baseline", "verdicts"} for diagnose
    runs, or {"kind", "config", "fidelity", "paired", "versus_baseline", "verdicts", "random"} for fidelity
    runs (their verdicts: every method against ``baseline`` on the deletion and insertion AUC).
    threshold/alpha default to the run's; correction ("holm" or None) applies to the agreement test,
    comparison_correction to the comparisons with ``baseline`` (Holm by default), see
    :func:`compare_with_baseline` and :func:`compare_fidelity`."""
    run, frame = _read(run_dir)
    config = run.config
    kind = config.get("kind")
    alpha = float(alpha if alpha is not None else config["alpha"])  # typed by RunDir: 0 stays 0
    order = _order(list(frame["method"].unique()), config)
    sample = run.meta.get("sample_info") or {}
    if kind == "diagnose":
        threshold = float(threshold if threshold is not None else config["threshold"])
        table = _with_contrasts(summarize_diagnose(frame, threshold, alpha, correction, order), config)
        versus = compare_with_baseline(frame, baseline, margin, alpha, comparison_correction, order)
        return {"kind": kind, "config": config, "threshold": threshold, "alpha": alpha, "agreement": table,
                "versus_baseline": versus, "verdicts": verdict_lines(versus), "baseline": baseline, "sample": sample}
    if kind == "fidelity":
        means, tests = summarize_fidelity(frame, reference, alpha, correction, order)
        versus = compare_fidelity(frame, baseline, alpha=alpha, correction=comparison_correction, methods_order=order)
        return {"kind": kind, "config": config, "alpha": alpha, "fidelity": _with_contrasts(means, config),
                "paired": tests, "sample": sample, "versus_baseline": versus, "verdicts": verdict_lines(versus),
                "baseline": baseline, "random": random_method(order)}
    raise ValueError(f"{run_dir}/config.json has kind={kind!r}; expected 'diagnose' or 'fidelity'")


# ---------------------------------------------------------------------------------------------
# Every method against the baseline on the same images.

DISPLAY_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM",
                 "layercam": "LayerCAM", "finercam": "FinerCAM", "case": "CASE", "scorecam": "Score-CAM",
                 "ablationcam": "Ablation-CAM", "eigencam": "EigenCAM", "random": "random maps"}


def display_name(label: str) -> str:
    """A method label as a reader knows it: "gradcam" -> "Grad-CAM", "case(contrast=top:1)" ->
    "CASE(contrast=top:1)"; unknown labels unchanged."""
    head, bracket, rest = label.partition("(")
    return DISPLAY_NAMES.get(head, head) + bracket + rest


VERDICT_WORDS = {"lower": "more class-specific", "higher": "less class-specific", "equal": "equally class-specific",
                 "identical": "identical", "undetermined": "undetermined"}


def compare_with_baseline(frame: pd.DataFrame, baseline: str = "gradcam", margin: float = EQUIVALENCE_MARGIN,
                          alpha: float = 0.05, correction: str | None = "holm",
                          methods_order: list[str] | None = None, resamples: int = 2000,
                          seed: int = 0) -> pd.DataFrame:
    """Every method against ``baseline`` on the images both scored (no error, no degenerate map), per k.

    Args:
        frame: a diagnose run's results table.
        baseline: the method compared with (absent from the run: an empty table).
        margin: the equivalence margin in agreement points.
        alpha: the verdicts' level.
        correction: "holm" (default: across all the table's comparisons, methods x k, separately for the
            difference and the TOST p-values) or None.
        methods_order: the methods' order (default sorted).
        resamples, seed: the bootstrap's (seeded).

    Returns:
        One row per (method, k_percent): ``n``, ``mean_difference`` (method - baseline, points) with
        ``ci_low``/``ci_high`` (bootstrap 95%), ``median_difference`` with ``median_ci_low``/``median_ci_high``,
        ``sd_difference``, ``p`` (paired t of the mean, two-sided) and ``p_holm``, ``wilcoxon_p``,
        ``sign_p``, ``tost_p`` and ``tost_p_holm`` (equivalence within ±``margin``), ``mdd``
        (minimum detectable difference at 80% power), ``verdict`` (one of ``metrics.stats.VERDICTS``:
        "lower" agreement = more class-specific) and ``line`` (the verdict in words).
    """
    if correction not in (None, "none", "holm"):
        raise ValueError(f"correction={correction!r}: use None or 'holm'")
    if "method" not in frame or baseline not in set(frame["method"]):
        return pd.DataFrame()
    scored = _scored(frame)
    methods = [m for m in (methods_order or sorted(frame["method"].unique())) if m != baseline]
    comparisons: list[tuple[str, float, Comparison]] = []
    for k in sorted(scored["k_percent"].unique()):
        at_k = scored[scored["k_percent"] == k]
        theirs = at_k[at_k["method"] == baseline].drop_duplicates("image_id").set_index("image_id")["agreement"]
        for method in methods:
            mine = at_k[at_k["method"] == method].drop_duplicates("image_id").set_index("image_id")["agreement"]
            if mine.empty:
                continue
            both = mine.index.intersection(theirs.index).sort_values()  # by id: intervals independent of row order
            comparison = compare_paired(mine.loc[both].to_numpy(dtype=float), theirs.loc[both].to_numpy(dtype=float),
                                        margin=margin, alpha=alpha, resamples=resamples, seed=seed)
            comparisons.append((method, float(k), comparison))
    if not comparisons:
        return pd.DataFrame()
    holm_on = correction == "holm"
    # a method identical to the baseline on every image is no test: left out of Holm's family
    family = [(np.nan, np.nan) if c.identical else (c.p, c.tost_p) for _, _, c in comparisons]
    p_used = holm([p for p, _ in family]) if holm_on else [c.p for _, _, c in comparisons]
    tost_used = holm([t for _, t in family]) if holm_on else [c.tost_p for _, _, c in comparisons]
    several_k = len({k for _, k, _ in comparisons}) > 1
    rows: list[dict[str, object]] = []
    for (method, k, c), p, tost_p in zip(comparisons, p_used, tost_used, strict=True):
        decided = verdict(c, float(p), float(tost_p), alpha)
        rows.append({"method": method, "k_percent": k, "baseline": baseline, "n": c.n,
                     "mean_difference": c.mean, "ci_low": c.mean_low, "ci_high": c.mean_high,
                     "median_difference": c.median, "median_ci_low": c.median_low, "median_ci_high": c.median_high,
                     "sd_difference": c.sd, "p": c.p, "p_holm": float(p) if holm_on else np.nan,
                     "wilcoxon_p": c.wilcoxon_p, "sign_p": c.sign_p, "tost_p": c.tost_p,
                     "tost_p_holm": float(tost_p) if holm_on else np.nan, "margin": margin, "mdd": c.mdd,
                     "verdict": decided,
                     "line": _verdict_line(method, baseline, k if several_k else None, c, decided, float(p),
                                           float(tost_p), holm_on)})
    return pd.DataFrame(rows)


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.2g}" if p < 0.01 else f"= {p:.2f}"


def _verdict_line(method: str, baseline: str, k: float | None, c: Comparison, decided: str, p: float,
                  tost_p: float, holm_on: bool) -> str:
    """One verdict in words, e.g. "CASE vs Grad-CAM: more class-specific by 4.1 points (difference
    -4.1 [95% CI -7.0, -1.2]), p = 0.003 (Holm), MDD 3.2 at n = 200"."""
    head = f"{display_name(method)} vs {display_name(baseline)}" + (f" (k = {k:g}%)" if k is not None else "")
    return _comparison_line(head, c, decided, p, tost_p, holm_on, number=".1f", unit=" points",
                            identical="identical agreement", direction=VERDICT_WORDS.get(decided, ""),
                            note_equivalence=True)


def _comparison_line(head: str, c: Comparison, decided: str, p: float, tost_p: float, holm_on: bool, *,
                     number: str, unit: str, identical: str, direction: str, note_equivalence: bool) -> str:
    """A comparison with the baseline in words, its interval and power always beside the verdict.

    number: the format of differences (".1f" agreement points, ".3g" fidelity); unit: after a difference
    or margin (" points" or ""); identical: the words for a difference of 0 on every image; direction:
    the words of a significant difference; note_equivalence: also say when a significant difference lies
    within the equivalence margin."""
    tag = " (Holm)" if holm_on else ""
    level = f"{round(c.confidence * 100):d}%"
    interval = f"difference {c.mean:+{number}} [{level} CI {c.mean_low:+{number}}, {c.mean_high:+{number}}]"
    power = f"MDD {c.mdd:{number}} at n = {c.n}"
    if c.n < 2:
        return f"{head}: undetermined: {c.n} image{'s' if c.n != 1 else ''} scored by both"
    if decided == "identical":
        return f"{head}: {identical} on all {c.n} images (difference 0)"
    if decided in ("lower", "higher"):
        within = (f"; within the ±{c.margin:g}-point margin (TOST p {_p_text(tost_p)}{tag})"
                  if note_equivalence and math.isfinite(tost_p) and tost_p < c.alpha else "")
        return (f"{head}: {direction} by {abs(c.mean):{number}}{unit} ({interval}), "
                f"p {_p_text(p)}{tag}{within}, {power}")
    if decided == "equal":
        return f"{head}: equal within ±{c.margin:g}{unit} ({interval}), TOST p {_p_text(tost_p)}{tag}, {power}"
    return (f"{head}: undetermined at n = {c.n}: {interval}; neither a difference (p {_p_text(p)}{tag}) nor "
            f"equality within ±{c.margin:g}{unit} (TOST p {_p_text(tost_p)}{tag}) is shown; MDD {c.mdd:{number}}")


def verdict_lines(versus: pd.DataFrame) -> list[str]:
    """The verdict lines of :func:`compare_with_baseline`'s table, in its order (empty without one)."""
    return [] if versus.empty else [str(line) for line in versus["line"]]


def _with_contrasts(table: pd.DataFrame, config: Mapping[str, Any]) -> pd.DataFrame:
    """The table with a ``contrast`` column after ``method``: each method's contrast spec as the run
    recorded it ("" for methods without one; runs of earlier versions record none)."""
    recorded = config.get("method_contrasts")
    if table.empty or not isinstance(recorded, dict):
        return table
    table = table.copy()
    table.insert(1, "contrast", [recorded.get(method) or "" for method in table["method"]])
    return table


def contrast_line(config: Mapping[str, Any]) -> str:
    """What contrast the run gave CASE, in words, for summaries and reports."""
    spec = str(config.get("contrast") or "")
    source = config.get("contrast_source")
    kind = spec.split(":")[0]
    words = {"classifier": "classifier neighbours (model-level: nearest final-layer rows by cosine)",
             "confusion": "confusion neighbours (model-level: the paper's RQ1 contrast)",
             "top": "top logits of the image (image-level: circular for the top-1/top-2 test)",
             "nearest": "nearest logits of the image (image-level)",
             "rank": "fixed logit ranks of the image (image-level)",
             "explicit": "fixed classes",
             "leave-pair-out": "model-level neighbours without the other compared class (never circular)",
             "random": "seeded random classes, the compared ones excluded (a control)",
             "versus": "the other compared class (A rather than B: circular by design)"}.get(kind)
    if not words:
        return f"CASE contrast {spec or 'not recorded'}"
    return f"CASE contrast {spec}: {words}" + (f", from {source}" if source else "")


def sample_line(sample: Mapping[str, Any]) -> str | None:
    """A warning line when the run's sample is smaller than asked for (None when it is not)."""
    text = sample_warning(sample)
    return None if text is None else f"warning: {text}."


def _versus_title(versus: pd.DataFrame) -> str:
    baseline, margin = display_name(str(versus["baseline"].iloc[0])), float(versus["margin"].iloc[0])
    holm_on = bool(versus["p_holm"].notna().any())
    return (f"Against {baseline} on the same images (agreement points, method minus {baseline}; lower = more "
            "class-specific): mean_difference with its bootstrap 95% interval [ci_low, ci_high] decides, by the "
            f"paired two-sided t-test (p{', p_holm: Holm across the comparisons' if holm_on else ''}); median with "
            f"its interval, Wilcoxon and sign-test p beside it; tost_p: equal within ±{margin:g} points (two one-sided "
            "t-tests); mdd: the minimum detectable difference at 80% power (paired t, the observed SD).")


def format_summary(summary: Mapping[str, Any]) -> str:
    """Plain-text tables for the terminal."""
    config = summary["config"]
    head = (f"{config.get('kind')} run: model {config.get('model')}, dataset {config.get('dataset')}, "
            f"layer {config.get('layer')}, n={config.get('n')}, seed {config.get('seed')}; "
            f"{contrast_line(config)}")
    if config.get("protocol"):
        head += f"\nimages: {config['protocol']}"
    short = sample_line(summary.get("sample") or {})
    if short:
        head += "\n" + short
    pd.set_option("display.width", 250)
    if summary["kind"] == "diagnose":
        table = summary["agreement"]
        title = (f"Top-k% agreement of the top-1 and top-2 maps (percent; ties {config.get('ties') or 'index'}, "
                 f"sparse maps {config.get('sparse') or 'pad'}). Test: one-sided Wilcoxon signed-rank, "
                 f"H1 median < {summary['threshold']:g}%, alpha {summary['alpha']:g}.")
        notes = []
        if "in_contrast" in table and (table["in_contrast"] > 0).any():
            notes.append("in_contrast: % of pairs where a map's contrast set holds the other compared class (the "
                         "maps are pushed apart by construction); mean_without/p_without: the other pairs alone; "
                         "baseline_without: Grad-CAM's mean agreement on those same images, p_vs_baseline: the "
                         "two-sided paired Wilcoxon test of the method against it there.")
        if "sparse" in table and (table["sparse"] > 0).any():
            notes.append("sparse: % of pairs where a map has fewer positive pixels than its top set.")
        parts = [head, title, table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), *notes]
        versus = summary.get("versus_baseline")
        if versus is not None and not versus.empty:
            parts += [_versus_title(versus), versus.drop(columns=["baseline", "margin", "line"]).to_string(
                index=False, float_format=lambda v: f"{v:.4g}"), "Verdicts:", *summary.get("verdicts", [])]
        elif summary.get("baseline") and not table.empty and table["method"].nunique() > 1:
            parts.append(f"No verdicts: the run has no {summary['baseline']} rows to compare the methods with "
                         "(--baseline names another method of the run).")
        return "\n".join(parts)
    means, tests = summary["fidelity"], summary["paired"]
    parts = [head, fidelity_title(config, summary.get("random")),
             means.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    if not tests.empty:
        parts += ["Paired tests, reference minus method, both two-sided (Wilcoxon signed-rank and t-test), with the "
                  "median difference and its bootstrap 95% interval [ci_low, ci_high]; "
                  f"the conclusion reads the Wilcoxon p-value at alpha {summary['alpha']:g}:",
                  tests.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    versus = summary.get("versus_baseline")
    if versus is not None and not versus.empty:
        parts += [f"Verdicts (every method against {display_name(str(versus['baseline'].iloc[0]))} on the same "
                  "images; the primary measures: deletion AUC, lower = more faithful, and insertion AUC, higher = "
                  "more faithful; mean difference with its bootstrap 95% interval, paired two-sided t-test, "
                  f"equal within ±{float(versus['margin'].iloc[0]):g} by TOST):", *summary.get("verdicts", [])]
    return "\n".join(parts)


def fidelity_title(config: Mapping[str, Any], control: str | None) -> str:
    """What a fidelity summary's table shows, in words (the fills as the run recorded them)."""
    steps = config.get("steps")
    deletion = config.get("deletion_fill") or config.get("fill")
    sweep = config.get("contrastive_k") or []
    parts = [f"Fidelity (means over maps that rank pixels). Primary: deletion AUC (removed pixels {deletion}) and "
             f"insertion AUC (revealed on the blur), {steps} steps"]
    if sweep:
        parts.append("contrastive_drop: logit top-1 minus logit top-2 before minus after removing the top-k% of "
                     "the top-1 map with the blur (positive: the map holds evidence for top-1 against top-2), "
                     f"averaged over k = {', '.join(f'{float(k):g}' for k in sweep)}%")
    recorded = config.get("k_percent")
    k = recorded[0] if isinstance(recorded, list) and recorded else recorded
    k_text = f"{float(k):g}" if isinstance(k, (int, float)) else str(k)
    secondary = (f"Secondary: the confidence drop at k = {k_text}% with fill {config.get('fill')} "
                 "(drop_relative = max(p0-p1,0)/p0; often saturated")
    secondary += (f"; drop_relative_random: the drop of {display_name(control)} on the same images, the control)"
                  if control else "; the run has no random method for a control)")
    return "; ".join(parts) + ". " + secondary + "."
