"""A study's run directories read back into its records (``records.StudyNumbers``).

Every run is read through the library: ``RunDir.read`` (validated) for the table, and
``case_saliency.runs.summary`` for the statistics: the agreement tests are ``summarize_diagnose``
at thresholds 50 and 70, the fidelity tables ``summarize_fidelity`` with Holm's correction over each
run's family of paired tests (the ``-cams``, ``-gradients`` and ``-scorecam`` runs are their own
families; their rows join the main run's). "Correctly classified only" is the subset of a diagnose
run's rows whose top-1 class is the image's label.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import (
    MEASURES,
    THRESHOLDS,
    AgreementEntry,
    DiagnoseNumbers,
    FidelityMethod,
    FidelityNumbers,
    ModelInfo,
    ModelNumbers,
    PairedTest,
    Versus,
    WithoutCircular,
    finite,
)
from .studies import EXTRA_RUNS, Study

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05
# Columns of a fidelity run beyond the confidence drop and the curves that the study reads when a run
# has them: the class-contrastive fidelity (the logit margin A - B before and after removing A's top-k%).
CONTRASTIVE_COLUMN = re.compile(r"margin|contrastive")


def finished(run_dir: Path) -> bool:
    """A run that exists and whose last session finished (a table never shows part of a run)."""
    from case_saliency.runs.rundir import RunDir

    return (run_dir / "results.csv").exists() and RunDir.is_finished(run_dir)


@functools.lru_cache(maxsize=16)
def run_table(run_dir: Path) -> tuple[tuple[str, ...], dict[str, Any], pd.DataFrame]:
    """(the run's methods in its order, its settings as config.json holds them, its results table), read
    once per directory through ``RunDir`` (a ``-cams`` run's comparison reads its main run again; the
    frames are only read, never changed)."""
    from case_saliency.runs.rundir import RunDir

    run = RunDir.read(run_dir, kinds=("diagnose", "fidelity"))
    frame = run.frame()
    present = set(frame["method"]) if "method" in frame else set()
    methods = run.settings.methods if run.settings is not None else ()
    return tuple(m for m in methods if m in present), run.config, frame


def views(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """All rows, and those of the images whose top-1 class is their label."""
    return {"all": frame, "correct": frame[(frame["label"] >= 0) & (frame["label"] == frame["class1"])]}


def versus_base(cams_dir: Path) -> dict[tuple[str, str, float], Versus]:
    """For a ``-cams`` run: each contrastive CAM (``case:X``) against its own base ``X`` (in the main run,
    on the same images) over the pairs its contrast does not make circular, as ``summarize_diagnose``
    compares a method with its baseline, by (view, method, k). Empty when the main run is missing or
    lacks the base."""
    import pandas as pd

    from case_saliency.runs.summary import summarize_diagnose

    main_dir = cams_dir.with_name(cams_dir.name.removesuffix("-cams"))
    if main_dir == cams_dir or not finished(main_dir):
        return {}
    cams = run_table(cams_dir)[2]
    main = run_table(main_dir)[2]
    out: dict[tuple[str, str, float], Versus] = {}
    for method in (str(m) for m in cams["method"].unique() if str(m).startswith("case:")):
        base = method.split(":", 1)[1]
        if base not in set(main["method"]):
            continue
        both = pd.concat([main[main["method"] == base], cams[cams["method"] == method]], ignore_index=True)
        for view, part in views(both).items():
            table = summarize_diagnose(part, 50.0, ALPHA, None, [method], baseline=base)
            for _, row in table.iterrows():
                if finite(row.get("baseline_without")) is None:
                    continue
                out[(view, method, float(row["k_percent"]))] = Versus(
                    finite(row["baseline_without"]), int(row["n_without"]), finite(row["p_vs_baseline"]))
    return out


def diagnose_numbers(run_dir: Path) -> DiagnoseNumbers:
    """A diagnose run's entries per view ("all", "correct"), method and k."""
    from case_saliency.runs.summary import summarize_diagnose

    order, _, frame = run_table(run_dir)
    entries: dict[tuple[str, str, float], AgreementEntry] = {}
    for view, part in views(frame).items():
        if part.empty:
            continue
        tables = {t: summarize_diagnose(part, t, ALPHA, None, list(order)).set_index(["method", "k_percent"])
                  for t in THRESHOLDS}
        for (method, k), row in tables[THRESHOLDS[0]].iterrows():
            # other_in_contrast: the share of pairs where a map's contrast set holds the other compared
            # class (circular pairs); ``without`` is the test over the remaining pairs.
            share = finite(row.get("in_contrast"))
            without = versus = None
            if share:
                without = WithoutCircular(int(row["n_without"]), finite(row["mean_without"]),
                                          {t: finite(tables[t].loc[(method, k), "p_without"]) for t in THRESHOLDS})
                if finite(row.get("baseline_without")) is not None:  # Grad-CAM on the same images
                    versus = Versus(finite(row["baseline_without"]), int(row["n_without"]),
                                    finite(row["p_vs_baseline"]))
            entries[(view, str(method), float(k))] = AgreementEntry(
                n=int(row["n"]), mean=finite(row["mean"]), median=finite(row["median"]), sd=finite(row["sd"]),
                degenerate=int(row["degenerate"]), errors=int(row["errors"]),
                p={t: finite(tables[t].loc[(method, k), "pvalue"]) for t in THRESHOLDS},
                other_in_contrast=None if share is None else share / 100.0, without=without, versus_gradcam=versus)
    numbers = DiagnoseNumbers(entries)
    extra = versus_base(run_dir)  # a -cams run: each case:X against X
    return numbers.with_versus_base(extra) if extra else numbers


def contrastive_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric class-contrastive columns of a fidelity run's table (none in runs without them)."""
    import pandas as pd

    return [c for c in frame.columns if CONTRASTIVE_COLUMN.search(c) and pd.api.types.is_numeric_dtype(frame[c])]


def fidelity_numbers(run_dir: Path) -> FidelityNumbers:
    """A fidelity run's means per method, CASE's paired tests (Holm over the run) and its settings."""
    from case_saliency.runs.summary import summarize_fidelity

    order, config, frame = run_table(run_dir)
    means, tests = summarize_fidelity(frame, "case", ALPHA, "holm", list(order))
    extra_columns = contrastive_columns(frame)
    methods: dict[str, FidelityMethod] = {}
    for _, row in means.iterrows():
        method = str(row["method"])
        part = frame[(frame["method"] == method) & (frame["error"].astype(str) == "")]
        methods[method] = FidelityMethod(int(row["n"]), int(row["errors"]),
                                         {m: finite(row[f"{m}_mean"]) for m in MEASURES},
                                         {m: finite(row[f"{m}_sd"]) for m in MEASURES},
                                         {c: finite(part[c].mean()) for c in extra_columns})
    paired: dict[str, dict[str, PairedTest]] = {}
    for _, row in tests.iterrows():
        paired.setdefault(str(row["method"]), {})[str(row["measure"])] = PairedTest(
            int(row["n"]), finite(row["mean_difference"]), finite(row.get("median_difference")),
            finite(row.get("ci_low")), finite(row.get("ci_high")), finite(row["wilcoxon_p"]),
            finite(row.get("wilcoxon_p_holm")), finite(row["t_p"]), finite(row.get("t_p_holm")))
    return FidelityNumbers(methods, paired, config.get("fill"), config.get("steps"), int(frame["image_id"].nunique()))


def model_numbers(out: Path, study: Study) -> dict[str, ModelNumbers]:
    """Every finished run of the study, read back, by model key; an extra run (``-cams``, ...) adds
    its methods to its main run (same images)."""
    diagnose: dict[str, dict[str, DiagnoseNumbers]] = {}
    fidelity: dict[str, dict[str, FidelityNumbers]] = {}
    info: dict[str, ModelInfo] = {}
    keys: list[str] = []
    for step in study.steps:
        run_dir = out / step.name
        key, _, run = step.name.partition("/")
        if step.kind == "train":
            meta_path = run_dir.with_suffix(".json")
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                key = f"{meta['architecture']}-seed{meta['seed']}"
                info[key] = ModelInfo.from_metadata(meta)
                keys.append(key)
            continue
        if step.kind not in ("diagnose", "fidelity") or not finished(run_dir):
            continue  # not run yet, or still running: a table never shows part of a run
        keys.append(key)
        if step.kind == "diagnose":
            diagnose.setdefault(key, {})[run] = diagnose_numbers(run_dir)
        else:
            fidelity.setdefault(key, {})[run] = fidelity_numbers(run_dir)
    out_models: dict[str, ModelNumbers] = {}
    for key in dict.fromkeys(keys):
        out_models[key] = ModelNumbers(info.get(key), _merge_diagnose(diagnose.get(key, {})),
                                       _merge_fidelity(fidelity.get(key, {})))
    return out_models


def _main_of(name: str) -> str | None:
    """The main run an extra run's methods join ("diagnose-cams" -> "diagnose"), None for a main run."""
    return next((name[:-len(suffix)] for suffix in EXTRA_RUNS if name.endswith(suffix)), None)


def _merge_diagnose(runs: dict[str, DiagnoseNumbers]) -> DiagnoseNumbers | None:
    merged: dict[str, DiagnoseNumbers] = {name: n for name, n in runs.items() if _main_of(name) is None}
    for name, extra in runs.items():
        main = _main_of(name)
        if main is not None:
            merged[main] = merged.get(main, DiagnoseNumbers()).merged(extra)
    return merged.get("diagnose")


def _merge_fidelity(runs: dict[str, FidelityNumbers]) -> dict[str, FidelityNumbers]:
    merged: dict[str, FidelityNumbers] = {name: n for name, n in runs.items() if _main_of(name) is None}
    for name, extra in runs.items():
        main = _main_of(name)
        if main is not None:
            merged[main] = merged.get(main, FidelityNumbers({}, {})).merged(extra)
    return merged
