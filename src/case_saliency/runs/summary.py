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

from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.stats import (TestResult, agreement_below, holm, median_difference, paired_ttest, paired_wilcoxon,
                             smallest_one_sided_p)
from .settings import sample_warning
from .rundir import RunDir


def _share(flags: pd.Series) -> float:
    return float(flags.mean() * 100.0) if len(flags) else np.nan


def load_results(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """(config, results table) of a run directory, read and validated by ``RunDir.read`` (which
    raises ``RunDirError`` naming the file and line of anything damaged); text columns stay text."""
    run = RunDir.read(run_dir, kinds=("diagnose", "fidelity"))
    return run.config, run.frame()


def _order(methods: list[str], config: dict) -> list[str]:
    preferred = [m for m in config.get("methods", []) if m in methods]
    return preferred + sorted(set(methods) - set(preferred))


def _scored(part: pd.DataFrame) -> pd.DataFrame:
    """The rows a test scores: no error, no degenerate map, an agreement."""
    failed = part["error"].astype(str) != ""
    return part[~failed & ~part["degenerate"].astype(bool) & part["agreement"].notna()]


def _versus_baseline(without: pd.DataFrame, baseline: pd.DataFrame) -> dict:
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
    rows, tests = [], []
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


FIDELITY_MEASURES = ("drop_relative", "drop_absolute", "deletion_auc", "insertion_auc")


def summarize_fidelity(frame: pd.DataFrame, reference: str = "case", alpha: float = 0.05,
                       correction: str | None = None,
                       methods_order: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-method means, paired tests of ``reference`` against each other method).

    Paired tests use the images where both methods have a number; differences are
    reference - other; both tests two-sided.
    """
    methods = methods_order or sorted(frame["method"].unique())
    means = []
    for method in methods:
        part = frame[frame["method"] == method]
        failed = part["error"].astype(str) != ""
        degenerate = _degenerate(part) & ~failed
        ok = part[~failed & ~degenerate]
        row = {"method": method, "n": int(len(ok)), "degenerate": int(degenerate.sum()), "errors": int(failed.sum())}
        for measure in FIDELITY_MEASURES:
            values = ok[measure].dropna().to_numpy(dtype=float)
            row[f"{measure}_mean"] = float(values.mean()) if values.size else np.nan
            row[f"{measure}_sd"] = float(values.std(ddof=1)) if values.size > 1 else np.nan
        means.append(row)
    tests = []
    usable = (frame["error"].astype(str) == "") & ~_degenerate(frame)  # paired on maps that rank pixels
    if reference in methods:
        ref = frame[(frame["method"] == reference) & usable].set_index("image_id")
        for method in methods:
            if method == reference:
                continue
            other = frame[(frame["method"] == method) & usable].set_index("image_id")
            shared = ref.index.intersection(other.index)
            for measure in FIDELITY_MEASURES:
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


def _degenerate(frame: pd.DataFrame) -> pd.Series:
    """The rows' degenerate flags (all False for fidelity runs of earlier versions, which lack them)."""
    if "degenerate" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["degenerate"].astype(bool)


def summarize_run(run_dir: str | Path, threshold: float | None = None, alpha: float | None = None,
                  correction: str | None = None, reference: str = "case") -> dict:
    """The run's tables: {"kind", "config", and "agreement"} for diagnose runs, or
    {"kind", "config", "fidelity", "paired"} for fidelity runs. threshold/alpha default to the run's."""
    run = RunDir.read(run_dir, kinds=("diagnose", "fidelity"))
    config, frame = run.config, run.frame()
    kind = config.get("kind")
    alpha = float(alpha if alpha is not None else config["alpha"])  # typed by RunDir: 0 stays 0
    order = _order(list(frame["method"].unique()), config)
    sample = run.meta.get("sample_info") or {}
    if kind == "diagnose":
        threshold = float(threshold if threshold is not None else config["threshold"])
        table = _with_contrasts(summarize_diagnose(frame, threshold, alpha, correction, order), config)
        return {"kind": kind, "config": config, "threshold": threshold, "alpha": alpha, "agreement": table,
                "sample": sample}
    if kind == "fidelity":
        means, tests = summarize_fidelity(frame, reference, alpha, correction, order)
        return {"kind": kind, "config": config, "alpha": alpha, "fidelity": _with_contrasts(means, config),
                "paired": tests, "sample": sample}
    raise ValueError(f"{run_dir}/config.json has kind={kind!r}; expected 'diagnose' or 'fidelity'")


def _with_contrasts(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The table with a ``contrast`` column after ``method``: each method's contrast spec as the run
    recorded it ("" for methods without one; runs of earlier versions record none)."""
    recorded = config.get("method_contrasts")
    if table.empty or not isinstance(recorded, dict):
        return table
    table = table.copy()
    table.insert(1, "contrast", [recorded.get(method) or "" for method in table["method"]])
    return table


def contrast_line(config: dict) -> str:
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


def sample_line(sample: dict) -> str | None:
    """A warning line when the run's sample is smaller than asked for (None when it is not)."""
    text = sample_warning(sample)
    return None if text is None else f"warning: {text}."


def format_summary(summary: dict) -> str:
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
        return "\n".join([head, title, table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), *notes])
    means, tests = summary["fidelity"], summary["paired"]
    parts = [head, f"Fidelity at k={config.get('k_percent')}% removed, fill {config.get('fill')}, "
                   f"{config.get('steps')} deletion/insertion steps (means; drop_relative = max(p0-p1,0)/p0).",
             means.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    if not tests.empty:
        parts += ["Paired tests, reference minus method, both two-sided (Wilcoxon signed-rank and t-test), with the "
                  "median difference and its bootstrap 95% interval [ci_low, ci_high]; "
                  f"the conclusion reads the Wilcoxon p-value at alpha {summary['alpha']:g}:",
                  tests.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    return "\n".join(parts)
