"""Tables of a study from its run directories: ``<out>/<study>/tables.md`` (what docs/results.md shows)
and ``<out>/<study>/numbers.json`` (every number in them, for the drift test and for the document).

Everything is read back through the library (``case_saliency.runs.summary``): the agreement tests
are ``summarize_diagnose`` at thresholds 50 and 70, the fidelity tables ``summarize_fidelity`` with
Holm's correction over each run's family of paired tests (the ``-cams``, ``-gradients`` and ``-scorecam`` runs are
their own families; their rows join the main run's in the tables). "Correctly classified only" is the subset
of a diagnose run's rows whose top-1 class is the image's label.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from studies import EXTRA_RUNS, FIDELITY_K, K_PERCENT, SEED_METHODS, SEEDS, THRESHOLDS, Study

ALPHA = 0.05
MEASURES = ("drop_relative", "drop_absolute", "deletion_auc", "insertion_auc")


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@functools.lru_cache(maxsize=8)
def _results(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """``load_results`` once per run directory: a ``-cams`` run's comparison reads its main run again
    (the frames are only read here, never changed)."""
    from case_saliency.runs.summary import load_results

    return load_results(run_dir)


def _views(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """All rows, and those of the images whose top-1 class is their label."""
    return {"all": frame, "correct": frame[(frame["label"] >= 0) & (frame["label"] == frame["class1"])]}


def versus_base(cams_dir: Path) -> dict:
    """For a ``-cams`` run: each contrastive CAM (``case:X``) against its own base ``X`` (in the main run,
    on the same images) over the pairs its contrast does not make circular, as ``summarize_diagnose``
    compares a method with its baseline: {view: {method: {k: {"base_mean_without", "versus_base_without":
    {"n", "p"}}}}}. Empty when the main run is missing or lacks the base."""
    from case_saliency.runs.summary import summarize_diagnose

    main_dir = cams_dir.with_name(cams_dir.name.removesuffix("-cams"))
    if main_dir == cams_dir or not (main_dir / "results.csv").exists() or not _finished(main_dir):
        return {}
    _, cams = _results(cams_dir)
    _, main = _results(main_dir)
    out: dict = {}
    for method in (m for m in cams["method"].unique() if str(m).startswith("case:")):
        base = str(method).split(":", 1)[1]
        if base not in set(main["method"]):
            continue
        both = pd.concat([main[main["method"] == base], cams[cams["method"] == method]], ignore_index=True)
        for view, part in _views(both).items():
            table = summarize_diagnose(part, 50.0, ALPHA, None, [method], baseline=base)
            for _, row in table.iterrows():
                if _finite(row.get("baseline_without")) is None:
                    continue
                out.setdefault(view, {}).setdefault(method, {})[f"{row['k_percent']:g}"] = {
                    "base_mean_without": _finite(row["baseline_without"]),
                    "versus_base_without": {"n": int(row["n_without"]), "p": _finite(row["p_vs_baseline"])}}
    return out


def diagnose_numbers(run_dir: Path) -> dict:
    """{view: {method: {k: {...}}}} for view in ("all", "correct"), k as text ("5")."""
    from case_saliency.runs.summary import summarize_diagnose

    config, frame = _results(run_dir)
    order = [m for m in config.get("methods", []) if m in set(frame["method"])]
    views = _views(frame)
    out: dict = {}
    for view, part in views.items():
        if part.empty:
            continue
        tables = {t: summarize_diagnose(part, t, ALPHA, None, order).set_index(["method", "k_percent"])
                  for t in THRESHOLDS}
        first = tables[THRESHOLDS[0]]
        result: dict = {}
        for (method, k), row in first.iterrows():
            # other_in_contrast: the share of pairs where a map's contrast set holds the other compared
            # class (circular pairs); the *_without numbers are the test over the remaining pairs.
            share = _finite(row.get("in_contrast"))
            entry = {"n": int(row["n"]), "mean": _finite(row["mean"]), "median": _finite(row["median"]),
                     "sd": _finite(row["sd"]), "degenerate": int(row["degenerate"]), "errors": int(row["errors"]),
                     "other_in_contrast": None if share is None else share / 100.0}
            for t in THRESHOLDS:
                entry[f"p{t:g}"] = _finite(tables[t].loc[(method, k), "pvalue"])
            if share:
                entry.update(n_without=int(row["n_without"]), mean_without=_finite(row["mean_without"]),
                             **{f"p{t:g}_without": _finite(tables[t].loc[(method, k), "p_without"])
                                for t in THRESHOLDS})
                if _finite(row.get("baseline_without")) is not None:  # Grad-CAM on the same images
                    entry.update(gradcam_mean_without=_finite(row["baseline_without"]),
                                 versus_gradcam_without={"n": int(row["n_without"]),
                                                         "p": _finite(row["p_vs_baseline"])})
            result.setdefault(method, {})[f"{k:g}"] = entry
        out[view] = result
    for view, methods in versus_base(run_dir).items():  # a -cams run: each case:X against X
        for method, ks in methods.items():
            for k, extra in ks.items():
                out.get(view, {}).get(method, {}).get(k, {}).update(extra)
    return out


def fidelity_numbers(run_dir: Path) -> dict:
    """{"methods": {method: {measure: mean, ...}}, "paired": {method: {measure: {...}}}, "n": images}."""
    from case_saliency.runs.summary import load_results, summarize_fidelity

    config, frame = load_results(run_dir)
    order = [m for m in config.get("methods", []) if m in set(frame["method"])]
    means, tests = summarize_fidelity(frame, "case", ALPHA, "holm", order)
    methods = {}
    for _, row in means.iterrows():
        methods[row["method"]] = {"n": int(row["n"]), "errors": int(row["errors"]),
                                  **{m: _finite(row[f"{m}_mean"]) for m in MEASURES},
                                  **{f"{m}_sd": _finite(row[f"{m}_sd"]) for m in MEASURES}}
    paired: dict = {}
    for _, row in tests.iterrows():
        paired.setdefault(row["method"], {})[row["measure"]] = {
            "n": int(row["n"]), "mean_difference": _finite(row["mean_difference"]),
            "median_difference": _finite(row.get("median_difference")), "ci_low": _finite(row.get("ci_low")),
            "ci_high": _finite(row.get("ci_high")), "wilcoxon_p": _finite(row["wilcoxon_p"]),
            "wilcoxon_p_holm": _finite(row.get("wilcoxon_p_holm")), "t_p": _finite(row["t_p"]),
            "t_p_holm": _finite(row.get("t_p_holm"))}
    return {"methods": methods, "paired": paired, "fill": config.get("fill"), "steps": config.get("steps"),
            "n_images": int(frame["image_id"].nunique())}


def _finished(run_dir: Path) -> bool:
    from case_saliency.runs.rundir import RunDir

    return RunDir.is_finished(run_dir)


def model_numbers(out: Path, study: Study) -> dict:
    """Every run of the study, read back: {model key: {"diagnose": ..., "fidelity-zero": ..., ...}}."""
    numbers: dict = {}
    for step in study.steps:
        run_dir = out / step.name
        key, _, run = step.name.partition("/")
        if step.kind == "train":
            meta_path = run_dir.with_suffix(".json")
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                key = f"{meta['architecture']}-seed{meta['seed']}"
                numbers.setdefault(key, {})["model"] = {
                    "test_accuracy": meta["test_accuracy"], "train_cpu_seconds": meta.get("train_cpu_seconds"),
                    "train_seconds": meta.get("train_seconds"), "epochs": meta["epochs"],
                    "train_images": meta["train_data"]["used"], "input_size": meta["input_size"]}
            continue
        if not (run_dir / "results.csv").exists() or not _finished(run_dir):
            continue  # not run yet, or still running: a table never shows part of a run
        reader = diagnose_numbers if step.kind == "diagnose" else fidelity_numbers
        numbers.setdefault(key, {})[run] = reader(run_dir)
    for runs in numbers.values():  # an extra run ("-cams", ...) adds its methods to its main run (same images)
        for name, suffix in [(r, s) for r in list(runs) for s in EXTRA_RUNS if r.endswith(s)]:
            extra, main = runs.pop(name), runs.setdefault(name[:-len(suffix)], {})
            if name.startswith("diagnose"):
                for view, methods in extra.items():
                    main.setdefault(view, {}).update(methods)
            else:
                main.setdefault("methods", {}).update({m: v for m, v in extra["methods"].items() if m != "case"})
                main.setdefault("paired", {}).update(extra["paired"])
                main.setdefault("holm_families", []).append(sorted(extra["methods"]))
    return numbers


# ---------------------------------------------------------------------------------------------- formatting

def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.0e}"


def _mark(p) -> str:
    return "**" if p is not None and p < ALPHA else ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _methods(runs: list[dict]) -> list[str]:
    seen: list[str] = []
    for run in runs:
        for method in run:
            if method not in seen:
                seen.append(method)
    return seen


def _circular_note(e: dict) -> str:
    """A cell's ``[21%; without: 42.5 (p50 0.28)]``: the share of circular pairs, and the mean and the test
    at 50% over the pairs whose contrast sets do not hold the other compared class (none if all are)."""
    circular = e.get("other_in_contrast")
    if not circular:
        return ""
    if not e.get("n_without"):
        return f" [{circular * 100:.0f}%]"
    p = e.get("p50_without")
    return f" [{circular * 100:.0f}%; without: {_num(e.get('mean_without'))} (p50 {_mark(p)}{_p(p)}{_mark(p)})]"


def agreement_table(numbers: dict, keys: list[str], view: str = "all", k: str = "5") -> str:
    """Per method and model: mean / median agreement and the p-values at thresholds 50 and 70
    (bold: rejects at alpha 0.05, i.e. the method separates the two classes); [N%; without: ...]: the
    share of pairs where a map's contrast set holds the other compared class (circular pairs), and the
    mean and p50 over the other pairs."""
    runs = [numbers.get(key, {}).get("diagnose", {}).get(view, {}) for key in keys]
    header = ["method"] + [f"{key}: mean / median (p50, p70)" for key in keys]
    rows = []
    for method in _methods(runs):
        row = [f"`{method}`"]
        for run in runs:
            e = run.get(method, {}).get(k)
            if not e:
                row.append("not run")
                continue
            p50, p70 = e.get("p50"), e.get("p70")
            row.append(f"{_num(e['mean'])} / {_num(e['median'])} ({_mark(p50)}{_p(p50)}{_mark(p50)}, "
                       f"{_mark(p70)}{_p(p70)}{_mark(p70)})" + _circular_note(e))
        rows.append(row)
    return _table(header, rows)


def fidelity_table(numbers: dict, key: str) -> str:
    """One model: per method, the mean relative drop with zero and blur fills, deletion and insertion
    AUC, and CASE minus the method (median paired difference of the zero-fill drop, bootstrap 95%
    interval, Holm-corrected Wilcoxon p)."""
    zero = numbers.get(key, {}).get("fidelity-zero")
    blur = numbers.get(key, {}).get("fidelity-blur", {"methods": {}})
    curves = numbers.get(key, {}).get("fidelity-curves") or zero  # the AUCs: a run of their own where it exists
    if not zero:
        return "(no fidelity run)"
    header = ["method", "drop (zero)", "drop (blur)", "deletion AUC", "insertion AUC",
              "CASE − method, drop (zero): median [95% CI], Holm p"]
    rows = []
    for method, e in zero["methods"].items():
        pair = zero["paired"].get(method, {}).get("drop_relative")
        versus = "(reference)" if method == "case" else (
            f"{_num(pair['median_difference'], 3)} [{_num(pair['ci_low'], 3)}, {_num(pair['ci_high'], 3)}], "
            f"{_mark(pair['wilcoxon_p_holm'])}{_p(pair['wilcoxon_p_holm'])}{_mark(pair['wilcoxon_p_holm'])}"
            if pair else "–")
        rows.append([f"`{method}`", _num(e["drop_relative"], 3),
                     _num(blur["methods"].get(method, {}).get("drop_relative"), 3),
                     _num(curves["methods"].get(method, {}).get("deletion_auc"), 3),
                     _num(curves["methods"].get(method, {}).get("insertion_auc"), 3), versus])
    return _table(header, rows)


def seed_summary(numbers: dict, keys: list[str], view: str = "all", k: str = "5") -> dict:
    """Per method over the seeds (models ``keys``): mean and SD of the median agreement, and in how
    many seeds the one-sided test rejects at each threshold."""
    out: dict = {}
    runs = [numbers.get(key, {}).get("diagnose", {}).get(view, {}) for key in keys]
    for method in _methods(runs):
        entries = [run.get(method, {}).get(k) for run in runs]
        entries = [e for e in entries if e]
        medians = [e["median"] for e in entries if e["median"] is not None]
        means = [e["mean"] for e in entries if e["mean"] is not None]
        out[method] = {"seeds": len(entries), "mean_mean": float(np.mean(means)) if means else None,
                       "median_mean": float(np.mean(medians)) if medians else None,
                       "median_sd": float(np.std(medians, ddof=1)) if len(medians) > 1 else None,
                       **{f"reject{t:g}": _rejections(entries, f"p{t:g}") for t in THRESHOLDS}}
        circular = [e.get("other_in_contrast") or 0.0 for e in entries]
        if any(circular):  # the same over the pairs whose contrast set does not hold the other compared class
            without = [e["mean_without"] for e in entries if e.get("mean_without") is not None]
            gradcam = [e["gradcam_mean_without"] for e in entries if e.get("gradcam_mean_without") is not None]
            out[method].update(circular_mean=float(np.mean(circular)),
                               mean_without_mean=float(np.mean(without)) if without else None,
                               gradcam_mean_without_mean=float(np.mean(gradcam)) if gradcam else None,
                               **_versus_counts(entries),
                               seeds_without=len(without),
                               **{f"reject{t:g}_without": _rejections(entries, f"p{t:g}_without") for t in THRESHOLDS})
    return out


def _above_below(entries: list[dict], other: str, versus: str) -> tuple[int, int, int]:
    """(compared, above, below): of the entries whose non-circular pairs were tested against another
    method on the same images (``versus``: {"p"}; ``other``: that method's mean there), in how many the
    method's mean is significantly (two-sided paired Wilcoxon, p < 0.05) above / below the other's."""
    pairs = [(e["mean_without"] - e[other], e[versus]["p"]) for e in entries
             if e.get(versus) and e.get("mean_without") is not None and e[versus]["p"] is not None]
    return (len(pairs), sum(1 for d, p in pairs if p < ALPHA and d > 0),
            sum(1 for d, p in pairs if p < ALPHA and d < 0))


def _versus_counts(entries: list[dict]) -> dict:
    """In how many seeds a method's agreement on its non-circular pairs is significantly above / below
    Grad-CAM's on the same images, of how many compared."""
    compared, above, below = _above_below(entries, "gradcam_mean_without", "versus_gradcam_without")
    return {"versus_gradcam_seeds": compared, "above_gradcam_without": above, "below_gradcam_without": below}


def circular_table(numbers: dict, keys: list[str], methods: tuple[str, ...] | None = None, k: str = "5") -> str:
    """Per model and CASE contrast with some circular pairs (all images, top k%): the share of circular
    pairs, and on the other pairs CASE's mean agreement beside Grad-CAM's on the same images, their
    difference and the two-sided paired Wilcoxon p (``summarize_diagnose``'s ``baseline_without`` and
    ``p_vs_baseline``; bold: < 0.05). methods: which specs (default: every one with circular pairs)."""
    header = ["model", "method", "circular pairs", "other pairs", "method's mean agreement there",
              "Grad-CAM's mean there", "difference of the means", "paired p (two-sided)"]
    rows = []
    for key in keys:
        for method, ks in numbers.get(key, {}).get("diagnose", {}).get("all", {}).items():
            e = ks.get(k) or {}
            versus = e.get("versus_gradcam_without")
            if not versus or (methods is not None and method not in methods):
                continue
            p = versus["p"]
            rows.append([key, f"`{method}`", f"{e['other_in_contrast'] * 100:.0f}%", str(versus["n"]),
                         _num(e["mean_without"]), _num(e["gradcam_mean_without"]),
                         f"{e['mean_without'] - e['gradcam_mean_without']:+.1f}", f"{_mark(p)}{_p(p)}{_mark(p)}"])
    return _table(header, rows) if rows else "(no method with circular pairs)"


def contrastive_table(numbers: dict, keys: list[str], k: str = "5") -> str:
    """Per contrastive CAM (``case:X``) over the models ``keys`` (all images, top k%): the share of its
    pairs that its contrast makes circular, and on the others its mean agreement beside its base X's on
    the same images (means over the models), and in how many models it is significantly (two-sided
    paired Wilcoxon, p < 0.05) above / below X there."""
    header = ["method", "models", "circular pairs (mean)", "its mean agreement on the other pairs",
              "the base CAM's there", "models above / below the base (p < 0.05)"]
    rows = []
    runs = [numbers.get(key, {}).get("diagnose", {}).get("all", {}) for key in keys]
    for method in (m for m in _methods(runs) if m.startswith("case:")):
        entries = [e for e in (run.get(method, {}).get(k) for run in runs) if e and e.get("versus_base_without")]
        if not entries:
            continue
        mine = [e["mean_without"] for e in entries]
        base = [e["base_mean_without"] for e in entries]
        _, above, below = _above_below(entries, "base_mean_without", "versus_base_without")
        share = float(np.mean([e["other_in_contrast"] or 0.0 for e in entries]))
        rows.append([f"`{method}`", str(len(entries)), f"{share * 100:.0f}%", _num(float(np.mean(mine))),
                     _num(float(np.mean(base))), f"{above} / {below} of {len(entries)}"])
    return _table(header, rows) if rows else "(no contrastive CAM with circular pairs)"


def _rejections(entries: list[dict], key: str) -> int:
    return sum(1 for e in entries if e.get(key) is not None and e[key] < ALPHA)


def seed_table(summary_all: dict, summary_correct: dict) -> str:
    header = ["method", "median agreement, mean ± SD over seeds (all)", "mean agreement, mean over seeds (all)",
              "seeds rejecting at 50 / 70 (all)", "median agreement (correct only)",
              "seeds rejecting at 50 / 70 (correct only)"]
    rows = []
    for method, e in summary_all.items():
        c = summary_correct.get(method, {})
        rows.append([f"`{method}`", f"{_num(e['median_mean'])} ± {_num(e['median_sd'])}", _num(e.get("mean_mean")),
                     f"{e['reject50']} / {e['reject70']} of {e['seeds']}",
                     f"{_num(c.get('median_mean'))} ± {_num(c.get('median_sd'))}",
                     f"{c.get('reject50', 0)} / {c.get('reject70', 0)} of {c.get('seeds', 0)}"])
    return _table(header, rows)


def fidelity_seed_table(numbers: dict, keys: list[str]) -> str:
    """Per method over the seeds: mean of the per-model mean drops (zero, blur), deletion and insertion
    AUC, and in how many seeds CASE's drop is significantly higher / lower (Holm, Wilcoxon)."""
    zeros = [numbers.get(key, {}).get("fidelity-zero") for key in keys]
    blurs = [numbers.get(key, {}).get("fidelity-blur") for key in keys]
    curves = [numbers.get(key, {}).get("fidelity-curves") or numbers.get(key, {}).get("fidelity-zero") for key in keys]
    zeros = [z for z in zeros if z]
    if not zeros:
        return "(no fidelity runs)"
    header = ["method", "drop (zero)", "drop (blur)", "deletion AUC", "insertion AUC",
              "CASE − method, drop (zero): median of per-seed medians", "seeds CASE higher / lower (Holm)"]
    rows = []
    for method in _methods([z["methods"] for z in zeros]):
        def mean_of(runs, measure, method=method):
            values = [r["methods"].get(method, {}).get(measure) for r in runs if r]
            values = [v for v in values if v is not None]
            return float(np.mean(values)) if values else None

        pairs = [z["paired"].get(method, {}).get("drop_relative") for z in zeros]
        pairs = [p for p in pairs if p]
        higher = sum(1 for p in pairs if (p["wilcoxon_p_holm"] or 1) < ALPHA and (p["median_difference"] or 0) > 0)
        lower = sum(1 for p in pairs if (p["wilcoxon_p_holm"] or 1) < ALPHA and (p["median_difference"] or 0) < 0)
        medians = [p["median_difference"] for p in pairs if p["median_difference"] is not None]
        rows.append([f"`{method}`", _num(mean_of(zeros, "drop_relative"), 3), _num(mean_of(blurs, "drop_relative"), 3),
                     _num(mean_of(curves, "deletion_auc"), 3), _num(mean_of(curves, "insertion_auc"), 3),
                     "(reference)" if method == "case" else _num(float(np.median(medians)) if medians else None, 3),
                     "–" if method == "case" else f"{higher} / {lower} of {len(pairs)}"])
    return _table(header, rows)


def _seed_list(keys: list[str]) -> str:
    """"resnet-seed0", "resnet-seed4" -> "seeds 0, 4"."""
    return "seeds " + ", ".join(k.rsplit("-seed", 1)[-1] for k in keys)


def _keys(numbers: dict, prefix: str) -> list[str]:
    return sorted(k for k in numbers if k.startswith(prefix))


def write_study_tables(study: Study, out: Path) -> list[Path]:
    """Write ``<out>/<study>/tables.md`` and ``numbers.json``; returns their paths."""
    numbers = model_numbers(out, study)
    folder = out / study.name
    folder.mkdir(parents=True, exist_ok=True)
    parts = [f"# {study.title}", "", *[f"- {note}" for note in study.notes], ""]
    if study.name == "photos":
        keys = [k for k in numbers if k.startswith("efficientnet_lite")]
        for k in (f"{k:g}" for k in K_PERCENT):
            parts += [f"## Agreement of the top-1 and top-2 maps, top {k}% (bold: p < 0.05)", "",
                      agreement_table(numbers, keys, "all", k), ""]
        parts += ["## CASE against Grad-CAM on the pairs its contrast does not make circular (top 5%)", "",
                  circular_table(numbers, keys), "",
                  "## Each contrastive CAM against its base CAM on the pairs its contrast does not make circular "
                  "(top 5%, the three models)", "", contrastive_table(numbers, keys), ""]
        for key in keys:
            parts += [f"## Fidelity, {key} (k = {FIDELITY_K:g}% removed)", "", fidelity_table(numbers, key), ""]
    else:
        prefixes = ("resnet", "densenet", "vgg") if study.name == "fashion" else ("efficientnet_lite0",)
        seeds: dict = {}
        for prefix in prefixes:
            keys = [k for k in _keys(numbers, f"{prefix}-seed") if "diagnose" in numbers[k]]
            if not keys:
                continue
            summary = {view: seed_summary(numbers, keys, view) for view in ("all", "correct")}
            seeds[prefix] = {"models": keys, **summary}
            accuracy = [numbers[k].get("model", {}).get("test_accuracy") for k in keys]
            accuracy = [a for a in accuracy if a is not None]
            parts += [f"## {prefix}: {len(keys)} seed(s) ({_seed_list(keys)}), test accuracy "
                      f"{_num(float(np.mean(accuracy)) if accuracy else None, 2)}% (mean)", "",
                      "Class sensitivity, top 5%:", "", seed_table(summary["all"], summary["correct"]), "",
                      "CASE against Grad-CAM on the pairs its contrast does not make circular (top 5%, all "
                      "images): CASE's default contrast on every seed, then every variant on the first seed:", "",
                      circular_table(numbers, keys, ("case",)), "", circular_table(numbers, keys[:1]), "",
                      "Each contrastive CAM against its base CAM on the pairs its contrast does not make circular "
                      "(top 5%, all images, over the seeds):", "", contrastive_table(numbers, keys), "",
                      "Fidelity (k = 50% removed):", "", fidelity_seed_table(numbers, keys), ""]
            for key in keys:
                parts += [f"### {key}: agreement at top 5%, all images and correctly classified only", "",
                          agreement_table(numbers, [key], "all", "5"), "",
                          agreement_table(numbers, [key], "correct", "5").replace(
                              f"| method | {key}:", f"| method | {key}, correct only:"), ""]
                if numbers[key].get("fidelity-zero") and key.endswith("-seed0"):
                    parts += [f"### {key}: fidelity (k = {FIDELITY_K:g}% removed; correctly classified images)", "",
                              fidelity_table(numbers, key), ""]
        numbers["_seeds"] = seeds
    md = folder / "tables.md"
    md.write_text("\n".join(parts))
    js = folder / "numbers.json"
    js.write_text(json.dumps(numbers, indent=1, sort_keys=True))
    return [md, js]


def write_seed_tables(out: Path, quick: bool = False) -> Path:
    """The seed table across studies (fashion families and the Lite0 fine-tunes), from their numbers.json."""
    parts = ["# Seeds: is class insensitivity structural, not seed-specific?", ""]
    for name in ("fashion", "finetune"):
        path = out / name / "numbers.json"
        if not path.exists():
            continue
        seeds = json.loads(path.read_text()).get("_seeds", {})
        order = [*SEED_METHODS, "case(contrast=classifier:1)", "case(contrast=top:1)"]  # what every seed runs, first

        def ordered(table: dict, order=order) -> dict:
            return dict(sorted(table.items(), key=lambda item: (order.index(item[0]) if item[0] in order
                                                                 else len(order), item[0])))

        for family, summary in seeds.items():
            summary = {**summary, "all": ordered(summary["all"]), "correct": ordered(summary["correct"])}
            parts += [f"## {family}: {len(summary['models'])} of {len(SEEDS) if not quick else 1} seeds "
                      f"({_seed_list(summary['models'])})", "",
                      seed_table(summary["all"], summary["correct"]), ""]
    path = out / "seeds.md"
    path.write_text("\n".join(parts))
    return path


def frame_of(numbers: dict) -> pd.DataFrame:  # pragma: no cover - a convenience for notebooks
    rows = []
    for key, runs in numbers.items():
        for view, methods in runs.get("diagnose", {}).items():
            for method, ks in methods.items():
                for k, e in ks.items():
                    rows.append({"model": key, "view": view, "method": method, "k": k, **e})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- the document

def block_pattern(name: str):
    import re

    return re.compile(rf"(<!-- results:{re.escape(name)}:start -->\n)(.*?)(<!-- results:{re.escape(name)}:end -->)",
                      re.S)


def publish_block(document: Path, name: str, markdown: str) -> bool:
    """Replace the text between ``<!-- results:NAME:start -->`` and ``<!-- results:NAME:end -->`` in
    ``document`` with ``markdown`` (a tables.md without its title, headings moved two levels down).
    Returns False (and changes nothing) when the document has no such block."""
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join(("##" + line) if line.startswith("#") else line for line in lines).strip() + "\n"
    text = document.read_text()
    pattern = block_pattern(name)
    if not pattern.search(text):
        return False
    document.write_text(pattern.sub(lambda m: m.group(1) + "\n" + body + "\n" + m.group(3), text, count=1))
    return True


def compute_markdown(out: Path) -> str:
    """The compute ledger (``<out>/compute.json``) as a table: CPU and wall time per study and kind of step."""
    path = out / "compute.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    totals: dict = {}
    unrecorded = {k: v for k, v in data.items()
                  if v.get("cpu_unrecorded") or (v["cpu_seconds"] == 0 and v["wall_seconds"] > 0 and "/models/" in k)}
    data = {k: v for k, v in data.items() if k not in unrecorded}
    for key, entry in data.items():
        study, _, step = key.partition("/")
        kind = "training" if step.startswith("models/") else ("fidelity" if "/fidelity" in step else "diagnose")
        row = totals.setdefault((study, kind), [0.0, 0.0, 0])
        row[0] += entry["cpu_seconds"]
        row[1] += entry["wall_seconds"]
        row[2] += 1
    rows = [[study, kind, str(count), f"{cpu / 60:.1f}", f"{wall / 60:.1f}"]
            for (study, kind), (cpu, wall, count) in sorted(totals.items())]
    cpu = sum(v[0] for v in totals.values())
    wall = sum(v[1] for v in totals.values())
    rows.append(["**total**", "", str(sum(v[2] for v in totals.values())), f"**{cpu / 60:.1f}**", f"{wall / 60:.1f}"])
    text = "# compute\n" + _table(["study", "steps of kind", "steps", "CPU minutes", "wall minutes"], rows)
    if unrecorded:
        names = ", ".join(f"`{Path(k).name}`" for k in sorted(unrecorded))
        wall = sum(v["wall_seconds"] for v in unrecorded.values()) / 60
        text += (f"\n\nNot in the total: {names}, trained before the training code recorded CPU time "
                 f"({wall:.0f} wall minutes on a machine then loaded with other jobs; a family model takes "
                 "~300 CPU s, see `compute.json`).")
    return text


def headline_markdown(out: Path) -> str:
    """One row per model (family): Grad-CAM's and CASE's median top-5% agreement with the one-sided test's
    verdicts at 50 and 70, CASE's over the pairs its contrast does not make circular, and their mean
    relative confidence drop (k = 50%, zero fill). For a family of seeds: the mean over seeds of the
    median agreement and in how many seeds the test rejects."""
    header = ["model", "images", "Grad-CAM: mean / median agreement (rejects at 50 / 70)",
              "CASE: mean / median agreement (rejects at 50 / 70)",
              "CASE without its circular pairs: mean agreement (rejects at 50 / 70) [share circular]; Grad-CAM's "
              "mean on the same images (paired two-sided Wilcoxon)",
              "drop, Grad-CAM", "drop, CASE"]
    rows = []

    def verdict(e: dict, suffix: str = "") -> str:
        return " / ".join("yes" if (e.get(f"p{t:g}{suffix}") is not None and e[f"p{t:g}{suffix}"] < ALPHA) else "no"
                          for t in THRESHOLDS)

    def without(mean: float | None, verdicts: str, share: float | None, gradcam: float | None, versus: str) -> str:
        """CASE over the pairs whose contrast set does not hold the other compared class, and Grad-CAM's
        mean agreement on the same images with the paired test's verdict."""
        return "no circular pair" if not share else (f"{_num(mean)} ({verdicts}) [{share * 100:.0f}%]; "
                                                     f"Grad-CAM {_num(gradcam)} ({versus})")

    photos = out / "photos" / "numbers.json"
    if photos.exists():
        numbers = json.loads(photos.read_text())
        for key in sorted(k for k in numbers if k.startswith("efficientnet_lite")):
            diag = numbers[key].get("diagnose", {}).get("all", {})
            fid = numbers[key].get("fidelity-zero", {}).get("methods", {})
            g, c = diag.get("gradcam", {}).get("5"), diag.get("case", {}).get("5")
            if not (g and c):
                continue
            rows.append([f"{key} (ImageNet), photos", str(g["n"]), f"{_num(g['mean'])} / {_num(g['median'])} "
                         f"({verdict(g)})", f"{_num(c['mean'])} / {_num(c['median'])} ({verdict(c)})",
                         without(c.get("mean_without"), verdict(c, "_without"), c.get("other_in_contrast"),
                                 c.get("gradcam_mean_without"),
                                 f"paired p {_p((c.get('versus_gradcam_without') or {}).get('p'))}"),
                         _num(fid.get("gradcam", {}).get("drop_relative"), 3),
                         _num(fid.get("case", {}).get("drop_relative"), 3)])
    for study, label in (("fashion", "Fashion-MNIST {family}-like"), ("finetune", "Lite0 fine-tuned on Fashion-MNIST")):
        path = out / study / "numbers.json"
        if not path.exists():
            continue
        numbers = json.loads(path.read_text())
        for family, summary in numbers.get("_seeds", {}).items():
            keys = summary["models"]
            g, c = summary["all"].get("gradcam"), summary["all"].get("case")
            if not (g and c):
                continue
            images = sorted({numbers[k]["diagnose"]["all"]["gradcam"]["5"]["n"] for k in keys})
            drops = {m: [numbers[k].get("fidelity-zero", {}).get("methods", {}).get(m, {}).get("drop_relative")
                         for k in keys] for m in ("gradcam", "case")}
            drop = {m: [v for v in values if v is not None] for m, values in drops.items()}
            name = label.format(family=family)
            rows.append([f"{name}, {len(keys)} seed(s)", "/".join(map(str, images)),
                         f"{_num(g.get('mean_mean'))} / {_num(g['median_mean'])} ({g['reject50']} / {g['reject70']} "
                         f"of {g['seeds']} seeds)",
                         f"{_num(c.get('mean_mean'))} / {_num(c['median_mean'])} ({c['reject50']} / {c['reject70']} "
                         f"of {c['seeds']} seeds)",
                         without(c.get("mean_without_mean"), f"{c.get('reject50_without')} / "
                                 f"{c.get('reject70_without')} of {c.get('seeds_without')} seeds",
                                 c.get("circular_mean"), c.get("gradcam_mean_without_mean"),
                                 f"CASE above in {c.get('above_gradcam_without')}, below in "
                                 f"{c.get('below_gradcam_without')} of {c.get('versus_gradcam_seeds')} seeds, "
                                 "paired p < 0.05"),
                         *(_num(float(np.mean(drop[m])) if drop[m] else None, 3) +
                           (f" ({len(drop[m])} seeds)" if len(keys) > 1 else "") for m in ("gradcam", "case"))])
    return "# headline\n" + _table(header, rows)


# The paper's numbers (arXiv 2506.07327 v3, as docs/../shared/paper-notes.md gives them): Table 1, in how
# many of its 4 ImageNet models (ResNet-50, DenseNet-201, VGG19-BN, ConvNeXt-Large; 1,000 correctly
# classified validation images, k = 5%, threshold 50%) the one-sided test rejects; Table 3, the mean
# relative confidence drop at k = 50% (zero fill) per model.
PAPER_TABLE1 = {"case": 4, "scorecam": 3, "gradcam++": 3, "layercam": 2, "gradcam": 1, "ablationcam": 1}
PAPER_TABLE3 = {"case": (.2052, .1163, .1411, .1317), "gradcam": (.1919, .1131, .1360, .1328),
                "gradcam++": (.1872, .1244, .1395, .1020), "layercam": (.1686, .1248, .1405, .1539),
                "scorecam": (.2059, .1248, .1349, .1473), "ablationcam": (.1696, .1140, .1339, .1354)}
PAPER_MODELS = ("ConvNeXt", "DenseNet", "ResNet", "VGG")


def paper_markdown(out: Path) -> str:
    """The paper's Table 1 rejection counts and Table 3 drops beside ours, for the methods it tests: the
    rejections counted over every model (each seed a model), the drops a family's mean over its seeds."""
    groups: list[tuple[str, list[dict]]] = []  # (label, [diagnose "all" numbers of one model, ...])
    drops: list[tuple[str, dict]] = []  # (model label, {method: drop})
    photos = out / "photos" / "numbers.json"
    if photos.exists():
        numbers = json.loads(photos.read_text())
        keys = sorted(k for k in numbers if k.startswith("efficientnet_lite") and "diagnose" in numbers[k])
        groups.append((f"Lite0/1/2, 14 photos ({len(keys)} models)", [numbers[k]["diagnose"]["all"] for k in keys]))
        drops += [(f"{k.replace('efficientnet_', '')} photos", {m: e.get("drop_relative") for m, e in
                   numbers[k].get("fidelity-zero", {}).get("methods", {}).items()}) for k in keys]
    for study, label in (("fashion", "Fashion-MNIST families"), ("finetune", "fine-tuned Lite0")):
        path = out / study / "numbers.json"
        if not path.exists():
            continue
        numbers = json.loads(path.read_text())
        keys = sorted(k for k in numbers if "-seed" in k and "diagnose" in numbers[k])
        if not keys:
            continue
        groups.append((f"{label}, every seed, correct only ({len(keys)} model{'s' if len(keys) > 1 else ''})",
                       [numbers[k]["diagnose"]["correct"] for k in keys]))
        for family in dict.fromkeys(k.rsplit("-seed", 1)[0] for k in keys):  # a family's drops: mean over seeds
            runs = [numbers[k].get("fidelity-zero", {}).get("methods", {}) for k in keys
                    if k.rsplit("-seed", 1)[0] == family]
            runs = [r for r in runs if r]
            methods = {m: [r[m]["drop_relative"] for r in runs if r.get(m, {}).get("drop_relative") is not None]
                       for m in _methods(runs)}
            name = f"{family} Fashion" if study == "fashion" else "fine-tuned Lite0"
            drops.append((f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})",
                          {m: float(np.mean(v)) for m, v in methods.items() if v}))
    header = ["method", "paper: rejects at 50% (of 4 ImageNet models)"]
    for label, _ in groups:
        header += [f"{label}: rejects at 50%", "at 70%"]
    rows = []
    for method, paper in PAPER_TABLE1.items():
        row = [f"`{method}`", str(paper)]
        for _, runs in groups:
            entries = [run.get(method, {}).get("5") for run in runs]
            entries = [e for e in entries if e]
            for t in THRESHOLDS:
                rejected = sum(1 for e in entries if e.get(f"p{t:g}") is not None and e[f"p{t:g}"] < ALPHA)
                row.append(f"{rejected} of {len(entries)}" if entries else "not run")
        rows.append(row)
    table1 = _table(header, rows)
    header = ["method", *[f"paper: {m}" for m in PAPER_MODELS], *[label for label, _ in drops]]
    rows = [[f"`{method}`", *[f"{v:.3f}" for v in PAPER_TABLE3[method]],
             *[_num(d.get(method), 3) for _, d in drops]] for method in PAPER_TABLE3]
    table3 = _table(header, rows)
    return ("# paper\n## Table 1: in how many models the one-sided test rejects (top 5%)\n\n" + table1 +
            "\n\n## Table 3: mean relative confidence drop, top 50% removed, zero fill\n\n" + table3)
