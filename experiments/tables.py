"""Tables of the published studies (photos, fashion, finetune, seeds) from their records:
``<out>/<study>/tables.md`` (what docs/results.md shows) and ``<out>/<study>/numbers.json`` (every
number in them, ``records.StudyNumbers.to_json``: what the drift test compares).

The runs are read by ``numbers.model_numbers``; everything here formats records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from case_saliency.runs.store import atomic_write

from .numbers import ALPHA, model_numbers
from .records import (
    THRESHOLDS,
    AgreementEntry,
    FamilySeeds,
    FidelityNumbers,
    MethodOverSeeds,
    SeedsWithout,
    StudyNumbers,
)
from .studies import FIDELITY_K, K_PERCENT, SEED_METHODS, SEEDS, Study

# ---------------------------------------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def ptext(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.0e}"


def mark(p: float | None) -> str:
    return "**" if p is not None and p < ALPHA else ""


def bold_p(p: float | None) -> str:
    return f"{mark(p)}{ptext(p)}{mark(p)}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _methods(runs: Sequence[Sequence[str]]) -> list[str]:
    """The methods of several runs, first-seen order."""
    return list(dict.fromkeys(m for run in runs for m in run))


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _circular_note(e: AgreementEntry) -> str:
    """A cell's ``[21%; without: 42.5 (p50 0.28)]``: the share of circular pairs, and the mean and the test
    at 50% over the pairs whose contrast sets do not hold the other compared class (none if all are)."""
    circular = e.other_in_contrast
    if not circular:
        return ""
    if e.without is None or not e.without.n:
        return f" [{circular * 100:.0f}%]"
    p = e.p_at(50.0, without=True)
    return f" [{circular * 100:.0f}%; without: {num(e.without.mean)} (p50 {bold_p(p)})]"


def agreement_table(numbers: StudyNumbers, keys: Sequence[str], view: str = "all", k: float = 5.0) -> str:
    """Per method and model: mean / median agreement and the p-values at thresholds 50 and 70
    (bold: rejects at alpha 0.05, i.e. the method separates the two classes); [N%; without: ...]: the
    share of pairs where a map's contrast set holds the other compared class (circular pairs), and the
    mean and p50 over the other pairs."""
    models = [numbers.get(key) for key in keys]
    header = ["method"] + [f"{key}: mean / median (p50, p70)" for key in keys]
    rows = []
    for method in _methods([m.diagnose.methods(view) if m.diagnose else [] for m in models]):
        row = [f"`{method}`"]
        for model in models:
            e = model.entry(view, method, k)
            if e is None:
                row.append("not run")
                continue
            row.append(f"{num(e.mean)} / {num(e.median)} ({bold_p(e.p_at(50.0))}, {bold_p(e.p_at(70.0))})"
                       + _circular_note(e))
        rows.append(row)
    return table(header, rows)


def fidelity_table(numbers: StudyNumbers, key: str) -> str:
    """One model: per method, the mean relative drop with zero and blur fills, deletion and insertion
    AUC, and CASE minus the method (median paired difference of the zero-fill drop, bootstrap 95%
    interval, Holm-corrected Wilcoxon p)."""
    model = numbers.get(key)
    zero = model.fidelity_run("fidelity-zero")
    if zero is None:
        return "(no fidelity run)"
    blur = model.fidelity_run("fidelity-blur") or FidelityNumbers({}, {})
    curves = model.fidelity_run("fidelity-curves") or zero  # the AUCs: a run of their own where it exists
    header = ["method", "drop (zero)", "drop (blur)", "deletion AUC", "insertion AUC",
              "CASE − method, drop (zero): median [95% CI], Holm p"]
    rows = []
    for method, e in zero.methods.items():
        pair = zero.test(method)
        versus = "(reference)" if method == "case" else (
            f"{num(pair.median_difference, 3)} [{num(pair.ci_low, 3)}, {num(pair.ci_high, 3)}], "
            f"{bold_p(pair.wilcoxon_p_holm)}" if pair else "–")

        def mean_of(run: FidelityNumbers, measure: str, method: str = method) -> float | None:
            entry = run.methods.get(method)
            return None if entry is None else entry.mean(measure)

        rows.append([f"`{method}`", num(e.mean("drop_relative"), 3), num(mean_of(blur, "drop_relative"), 3),
                     num(mean_of(curves, "deletion_auc"), 3), num(mean_of(curves, "insertion_auc"), 3), versus])
    return table(header, rows)


def _rejections(entries: Sequence[AgreementEntry], threshold: float, without: bool = False) -> int:
    return sum(1 for e in entries if (p := e.p_at(threshold, without)) is not None and p < ALPHA)


def _above_below(entries: Sequence[AgreementEntry], base: bool) -> tuple[int, int, int]:
    """(compared, above, below): of the entries whose non-circular pairs were tested against another
    method on the same images (Grad-CAM, or with ``base`` a contrastive CAM's base CAM), in how many the
    method's mean is significantly (two-sided paired Wilcoxon, p < 0.05) above / below the other's."""
    pairs = []
    for e in entries:
        versus = e.versus_base if base else e.versus_gradcam
        mean = None if e.without is None else e.without.mean
        if versus is not None and mean is not None and versus.p is not None and versus.other_mean is not None:
            pairs.append((mean - versus.other_mean, versus.p))
    return (len(pairs), sum(1 for d, p in pairs if p < ALPHA and d > 0),
            sum(1 for d, p in pairs if p < ALPHA and d < 0))


def seed_summary(numbers: StudyNumbers, keys: Sequence[str], view: str = "all",
                 k: float = 5.0) -> dict[str, MethodOverSeeds]:
    """Per method over the seeds (models ``keys``): mean and SD of the median agreement, and in how
    many seeds the one-sided test rejects at each threshold."""
    out: dict[str, MethodOverSeeds] = {}
    models = [numbers.get(key) for key in keys]
    for method in _methods([m.diagnose.methods(view) if m.diagnose else [] for m in models]):
        entries = [e for e in (m.entry(view, method, k) for m in models) if e is not None]
        medians = [e.median for e in entries if e.median is not None]
        means = [e.mean for e in entries if e.mean is not None]
        circular = [e.other_in_contrast or 0.0 for e in entries]
        without = None
        if any(circular):  # the same over the pairs whose contrast set does not hold the other compared class
            inside = [e.without.mean for e in entries if e.without is not None and e.without.mean is not None]
            gradcam = [e.versus_gradcam.other_mean for e in entries
                       if e.versus_gradcam is not None and e.versus_gradcam.other_mean is not None]
            compared, above, below = _above_below(entries, base=False)
            without = SeedsWithout(float(np.mean(circular)), _mean(inside), _mean(gradcam), compared, above, below,
                                   len(inside), {t: _rejections(entries, t, without=True) for t in THRESHOLDS})
        out[method] = MethodOverSeeds(len(entries), _mean(means), _mean(medians),
                                      float(np.std(medians, ddof=1)) if len(medians) > 1 else None,
                                      {t: _rejections(entries, t) for t in THRESHOLDS}, without)
    return out


def circular_table(numbers: StudyNumbers, keys: Sequence[str], methods: tuple[str, ...] | None = None,
                   k: float = 5.0) -> str:
    """Per model and CASE contrast with some circular pairs (all images, top k%): the share of circular
    pairs, and on the other pairs CASE's mean agreement beside Grad-CAM's on the same images, their
    difference and the two-sided paired Wilcoxon p (``summarize_diagnose``'s ``baseline_without`` and
    ``p_vs_baseline``; bold: < 0.05). methods: which specs (default: every one with circular pairs)."""
    header = ["model", "method", "circular pairs", "other pairs", "method's mean agreement there",
              "Grad-CAM's mean there", "difference of the means", "paired p (two-sided)"]
    rows = []
    for key in keys:
        for method, e in numbers.get(key).at("all", k).items():
            versus = e.versus_gradcam
            if versus is None or (methods is not None and method not in methods):
                continue
            assert e.without is not None and e.without.mean is not None and versus.other_mean is not None
            share = e.other_in_contrast or 0.0
            rows.append([key, f"`{method}`", f"{share * 100:.0f}%", str(versus.n), num(e.without.mean),
                         num(versus.other_mean), f"{e.without.mean - versus.other_mean:+.1f}", bold_p(versus.p)])
    return table(header, rows) if rows else "(no method with circular pairs)"


def contrastive_table(numbers: StudyNumbers, keys: Sequence[str], k: float = 5.0) -> str:
    """Per contrastive CAM (``case:X``) over the models ``keys`` (all images, top k%): the share of its
    pairs that its contrast makes circular, and on the others its mean agreement beside its base X's on
    the same images (means over the models), and in how many models it is significantly (two-sided
    paired Wilcoxon, p < 0.05) above / below X there."""
    header = ["method", "models", "circular pairs (mean)", "its mean agreement on the other pairs",
              "the base CAM's there", "models above / below the base (p < 0.05)"]
    rows = []
    models = [numbers.get(key) for key in keys]
    for method in (m for m in _methods([m.diagnose.methods("all") if m.diagnose else [] for m in models])
                   if m.startswith("case:")):
        entries = [e for e in (m.entry("all", method, k) for m in models) if e is not None and e.versus_base]
        if not entries:
            continue
        mine = [e.without.mean for e in entries if e.without is not None and e.without.mean is not None]
        base = [e.versus_base.other_mean for e in entries if e.versus_base and e.versus_base.other_mean is not None]
        _, above, below = _above_below(entries, base=True)
        share = float(np.mean([e.other_in_contrast or 0.0 for e in entries]))
        rows.append([f"`{method}`", str(len(entries)), f"{share * 100:.0f}%", num(_mean(mine)),
                     num(_mean(base)), f"{above} / {below} of {len(entries)}"])
    return table(header, rows) if rows else "(no contrastive CAM with circular pairs)"


def seed_table(summary_all: Mapping[str, MethodOverSeeds], summary_correct: Mapping[str, MethodOverSeeds]) -> str:
    header = ["method", "median agreement, mean ± SD over seeds (all)", "mean agreement, mean over seeds (all)",
              "seeds rejecting at 50 / 70 (all)", "median agreement (correct only)",
              "seeds rejecting at 50 / 70 (correct only)"]
    rows = []
    for method, e in summary_all.items():
        c = summary_correct.get(method)
        correct = (f"{c.rejections[50.0]} / {c.rejections[70.0]} of {c.seeds}" if c else "0 / 0 of 0")
        rows.append([f"`{method}`", f"{num(e.median_mean)} ± {num(e.median_sd)}", num(e.mean_mean),
                     f"{e.rejections[50.0]} / {e.rejections[70.0]} of {e.seeds}",
                     f"{num(c.median_mean if c else None)} ± {num(c.median_sd if c else None)}", correct])
    return table(header, rows)


def fidelity_seed_table(numbers: StudyNumbers, keys: Sequence[str]) -> str:
    """Per method over the seeds: mean of the per-model mean drops (zero, blur), deletion and insertion
    AUC, and in how many seeds CASE's drop is significantly higher / lower (Holm, Wilcoxon)."""
    models = [numbers.get(key) for key in keys]
    zeros = [z for z in (m.fidelity_run("fidelity-zero") for m in models) if z]
    blurs = [b for b in (m.fidelity_run("fidelity-blur") for m in models) if b]
    curves = [c for c in (m.fidelity_run("fidelity-curves") or m.fidelity_run("fidelity-zero") for m in models) if c]
    if not zeros:
        return "(no fidelity runs)"
    header = ["method", "drop (zero)", "drop (blur)", "deletion AUC", "insertion AUC",
              "CASE − method, drop (zero): median of per-seed medians", "seeds CASE higher / lower (Holm)"]
    rows = []
    for method in _methods([list(z.methods) for z in zeros]):
        def mean_of(runs: Sequence[FidelityNumbers], measure: str, method: str = method) -> float | None:
            values = [r.methods[method].mean(measure) for r in runs if method in r.methods]
            return _mean([v for v in values if v is not None])

        pairs = [p for p in (z.test(method) for z in zeros) if p]
        higher = sum(1 for p in pairs if (p.wilcoxon_p_holm or 1) < ALPHA and (p.median_difference or 0) > 0)
        lower = sum(1 for p in pairs if (p.wilcoxon_p_holm or 1) < ALPHA and (p.median_difference or 0) < 0)
        medians = [p.median_difference for p in pairs if p.median_difference is not None]
        rows.append([f"`{method}`", num(mean_of(zeros, "drop_relative"), 3), num(mean_of(blurs, "drop_relative"), 3),
                     num(mean_of(curves, "deletion_auc"), 3), num(mean_of(curves, "insertion_auc"), 3),
                     "(reference)" if method == "case" else num(float(np.median(medians)) if medians else None, 3),
                     "–" if method == "case" else f"{higher} / {lower} of {len(pairs)}"])
    return table(header, rows)


def seed_list(keys: Sequence[str]) -> str:
    """"resnet-seed0", "resnet-seed4" -> "seeds 0, 4"."""
    return "seeds " + ", ".join(k.rsplit("-seed", 1)[-1] for k in keys)


def write_numbers(path: Path, numbers: StudyNumbers) -> Path:
    return atomic_write(path, json.dumps(numbers.to_json(), indent=1, sort_keys=True))


def read_numbers(path: Path) -> StudyNumbers:
    return StudyNumbers.from_json(json.loads(path.read_text()))


def write_study_tables(study: Study, out: Path) -> list[Path]:
    """Write ``<out>/<study>/tables.md`` and ``numbers.json``; returns their paths."""
    models = model_numbers(out, study)
    numbers = StudyNumbers(models)
    folder = out / study.name
    folder.mkdir(parents=True, exist_ok=True)
    parts = [f"# {study.title}", "", *[f"- {note}" for note in study.notes], ""]
    if study.name == "photos":
        keys = [k for k in models if k.startswith("efficientnet_lite")]
        for k in K_PERCENT:
            parts += [f"## Agreement of the top-1 and top-2 maps, top {k:g}% (bold: p < 0.05)", "",
                      agreement_table(numbers, keys, "all", k), ""]
        parts += ["## CASE against Grad-CAM on the pairs its contrast does not make circular (top 5%)", "",
                  circular_table(numbers, keys), "",
                  "## Each contrastive CAM against its base CAM on the pairs its contrast does not make circular "
                  "(top 5%, the three models)", "", contrastive_table(numbers, keys), ""]
        for key in keys:
            parts += [f"## Fidelity, {key} (k = {FIDELITY_K:g}% removed)", "", fidelity_table(numbers, key), ""]
    else:
        prefixes = ("resnet", "densenet", "vgg") if study.name == "fashion" else ("efficientnet_lite0",)
        seeds: dict[str, FamilySeeds] = {}
        for prefix in prefixes:
            keys = [k for k in numbers.keys_with(f"{prefix}-seed") if numbers.get(k).diagnose is not None]
            if not keys:
                continue
            family = FamilySeeds(tuple(keys), seed_summary(numbers, keys, "all"),
                                 seed_summary(numbers, keys, "correct"))
            seeds[prefix] = family
            accuracy = [info.test_accuracy for info in (numbers.get(k).model for k in keys) if info is not None]
            parts += [f"## {prefix}: {len(keys)} seed(s) ({seed_list(keys)}), test accuracy "
                      f"{num(_mean(accuracy), 2)}% (mean)", "",
                      "Class sensitivity, top 5%:", "", seed_table(family.all, family.correct), "",
                      "CASE against Grad-CAM on the pairs its contrast does not make circular (top 5%, all "
                      "images): CASE's default contrast on every seed, then every variant on the first seed:", "",
                      circular_table(numbers, keys, ("case",)), "", circular_table(numbers, keys[:1]), "",
                      "Each contrastive CAM against its base CAM on the pairs its contrast does not make circular "
                      "(top 5%, all images, over the seeds):", "", contrastive_table(numbers, keys), "",
                      "Fidelity (k = 50% removed):", "", fidelity_seed_table(numbers, keys), ""]
            for key in keys:
                parts += [f"### {key}: agreement at top 5%, all images and correctly classified only", "",
                          agreement_table(numbers, [key], "all", 5.0), "",
                          agreement_table(numbers, [key], "correct", 5.0).replace(
                              f"| method | {key}:", f"| method | {key}, correct only:"), ""]
                if numbers.get(key).fidelity_run("fidelity-zero") and key.endswith("-seed0"):
                    parts += [f"### {key}: fidelity (k = {FIDELITY_K:g}% removed; correctly classified images)", "",
                              fidelity_table(numbers, key), ""]
        numbers = StudyNumbers(models, seeds)
    md = atomic_write(folder / "tables.md", "\n".join(parts))
    return [md, write_numbers(folder / "numbers.json", numbers)]


def write_seed_tables(out: Path, quick: bool = False) -> Path:
    """The seed table across studies (fashion families and the Lite0 fine-tunes), from their numbers.json."""
    parts = ["# Seeds: is class insensitivity structural, not seed-specific?", ""]
    order = [*SEED_METHODS, "case(contrast=classifier:1)", "case(contrast=top:1)"]  # what every seed runs, first

    def ordered(summary: Mapping[str, MethodOverSeeds]) -> dict[str, MethodOverSeeds]:
        return dict(sorted(summary.items(), key=lambda item: (order.index(item[0]) if item[0] in order
                                                               else len(order), item[0])))

    for name in ("fashion", "finetune"):
        path = out / name / "numbers.json"
        if not path.exists():
            continue
        for family, summary in (read_numbers(path).seeds or {}).items():
            parts += [f"## {family}: {len(summary.models)} of {len(SEEDS) if not quick else 1} seeds "
                      f"({seed_list(summary.models)})", "",
                      seed_table(ordered(summary.all), ordered(summary.correct)), ""]
    return atomic_write(out / "seeds.md", "\n".join(parts))


# ---------------------------------------------------------------------------------------------- the document

def block_pattern(name: str) -> re.Pattern[str]:
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
    atomic_write(document, pattern.sub(lambda m: m.group(1) + "\n" + body + "\n" + m.group(3), text, count=1))
    return True


def compute_markdown(out: Path) -> str:
    """The compute ledger (``<out>/compute.json``) as a table: CPU and wall time per study and kind of step."""
    path = out / "compute.json"
    data: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    totals: dict[tuple[str, str], list[float]] = {}
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
    rows = [[study, kind, f"{count:.0f}", f"{cpu / 60:.1f}", f"{wall / 60:.1f}"]
            for (study, kind), (cpu, wall, count) in sorted(totals.items())]
    cpu = sum(v[0] for v in totals.values())
    wall = sum(v[1] for v in totals.values())
    rows.append(["**total**", "", f"{sum(v[2] for v in totals.values()):.0f}", f"**{cpu / 60:.1f}**",
                 f"{wall / 60:.1f}"])
    text = "# compute\n" + table(["study", "steps of kind", "steps", "CPU minutes", "wall minutes"], rows)
    if unrecorded:
        names = ", ".join(f"`{Path(k).name}`" for k in sorted(unrecorded))
        hidden = sum(v["wall_seconds"] for v in unrecorded.values()) / 60
        text += (f"\n\nNot in the total: {names}, trained before the training code recorded CPU time "
                 f"({hidden:.0f} wall minutes on a machine then loaded with other jobs; a family model takes "
                 "~300 CPU s, see `compute.json`).")
    return text


def _verdicts(e: AgreementEntry | None, without: bool = False) -> str:
    return " / ".join("yes" if e is not None and (p := e.p_at(t, without)) is not None and p < ALPHA else "no"
                      for t in THRESHOLDS)


def _without_cell(mean: float | None, verdicts: str, share: float | None, gradcam: float | None, versus: str) -> str:
    """CASE over the pairs whose contrast set does not hold the other compared class, and Grad-CAM's
    mean agreement on the same images with the paired test's verdict."""
    return "no circular pair" if not share else (f"{num(mean)} ({verdicts}) [{share * 100:.0f}%]; "
                                                 f"Grad-CAM {num(gradcam)} ({versus})")


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
    photos = out / "photos" / "numbers.json"
    if photos.exists():
        numbers = read_numbers(photos)
        for key in numbers.keys_with("efficientnet_lite"):
            model = numbers.get(key)
            g, c = model.entry("all", "gradcam"), model.entry("all", "case")
            if not (g and c):
                continue
            versus = c.versus_gradcam
            rows.append([f"{key} (ImageNet), photos", str(g.n), f"{num(g.mean)} / {num(g.median)} ({_verdicts(g)})",
                         f"{num(c.mean)} / {num(c.median)} ({_verdicts(c)})",
                         _without_cell(c.without.mean if c.without else None, _verdicts(c, True), c.other_in_contrast,
                                       versus.other_mean if versus else None,
                                       f"paired p {ptext(versus.p if versus else None)}"),
                         num(model.drop("gradcam"), 3), num(model.drop("case"), 3)])
    for study, label in (("fashion", "Fashion-MNIST {family}-like"), ("finetune", "Lite0 fine-tuned on Fashion-MNIST")):
        path = out / study / "numbers.json"
        if not path.exists():
            continue
        numbers = read_numbers(path)
        for family, summary in (numbers.seeds or {}).items():
            keys = summary.models
            gs, cs = summary.all.get("gradcam"), summary.all.get("case")
            if not (gs and cs):
                continue
            images = sorted({e.n for e in (numbers.get(k).entry("all", "gradcam") for k in keys) if e is not None})
            drops = {m: [d for d in (numbers.get(k).drop(m) for k in keys) if d is not None]
                     for m in ("gradcam", "case")}
            w = cs.without
            name = label.format(family=family)
            rows.append([f"{name}, {len(keys)} seed(s)", "/".join(map(str, images)),
                         f"{num(gs.mean_mean)} / {num(gs.median_mean)} ({gs.rejections[50.0]} / {gs.rejections[70.0]} "
                         f"of {gs.seeds} seeds)",
                         f"{num(cs.mean_mean)} / {num(cs.median_mean)} ({cs.rejections[50.0]} / {cs.rejections[70.0]} "
                         f"of {cs.seeds} seeds)",
                         _without_cell(w.mean_without_mean if w else None,
                                       f"{w.rejections[50.0] if w else None} / {w.rejections[70.0] if w else None} "
                                       f"of {w.seeds_without if w else None} seeds",
                                       w.circular_mean if w else None, w.gradcam_mean_without_mean if w else None,
                                       f"CASE above in {w.above_gradcam_without if w else None}, below in "
                                       f"{w.below_gradcam_without if w else None} of "
                                       f"{w.versus_gradcam_seeds if w else None} seeds, paired p < 0.05"),
                         *(num(_mean(drops[m]), 3) + (f" ({len(drops[m])} seeds)" if len(keys) > 1 else "")
                           for m in ("gradcam", "case"))])
    return "# headline\n" + table(header, rows)


# The paper's numbers (arXiv 2506.07327 v3, as the project's paper notes give them): Table 1, in how
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
    groups: list[tuple[str, list[dict[str, AgreementEntry]]]] = []  # (label, [top-5% entries of one model, ...])
    drops: list[tuple[str, dict[str, float | None]]] = []  # (model label, {method: drop})
    photos = out / "photos" / "numbers.json"
    if photos.exists():
        numbers = read_numbers(photos)
        keys = [k for k in numbers.keys_with("efficientnet_lite") if numbers.get(k).diagnose is not None]
        groups.append((f"Lite0/1/2, 14 photos ({len(keys)} models)", [numbers.get(k).at("all") for k in keys]))
        for k in keys:
            zero = numbers.get(k).fidelity_run("fidelity-zero")
            drops.append((f"{k.replace('efficientnet_', '')} photos",
                          {m: e.mean("drop_relative") for m, e in (zero.methods if zero else {}).items()}))
    for study, label in (("fashion", "Fashion-MNIST families"), ("finetune", "fine-tuned Lite0")):
        path = out / study / "numbers.json"
        if not path.exists():
            continue
        numbers = read_numbers(path)
        keys = sorted(k for k in numbers if "-seed" in k and numbers.get(k).diagnose is not None)
        if not keys:
            continue
        groups.append((f"{label}, every seed, correct only ({len(keys)} model{'s' if len(keys) > 1 else ''})",
                       [numbers.get(k).at("correct") for k in keys]))
        for family in dict.fromkeys(k.rsplit("-seed", 1)[0] for k in keys):  # a family's drops: mean over seeds
            runs = [z for z in (numbers.get(k).fidelity_run("fidelity-zero") for k in keys
                                if k.rsplit("-seed", 1)[0] == family) if z and z.methods]
            by_method: dict[str, list[float]] = {}
            for method in _methods([list(r.methods) for r in runs]):
                values = [r.methods[method].mean("drop_relative") for r in runs if method in r.methods]
                by_method[method] = [v for v in values if v is not None]
            name = f"{family} Fashion" if study == "fashion" else "fine-tuned Lite0"
            drops.append((f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})",
                          {m: float(np.mean(v)) for m, v in by_method.items() if v}))
    header = ["method", "paper: rejects at 50% (of 4 ImageNet models)"]
    for label, _ in groups:
        header += [f"{label}: rejects at 50%", "at 70%"]
    rows = []
    for method, paper in PAPER_TABLE1.items():
        row = [f"`{method}`", str(paper)]
        for _, tops in groups:
            entries = [top[method] for top in tops if method in top]
            for t in THRESHOLDS:
                row.append(f"{_rejections(entries, t)} of {len(entries)}" if entries else "not run")
        rows.append(row)
    table1 = table(header, rows)
    header = ["method", *[f"paper: {m}" for m in PAPER_MODELS], *[label for label, _ in drops]]
    rows = [[f"`{method}`", *[f"{v:.3f}" for v in PAPER_TABLE3[method]],
             *[num(d.get(method), 3) for _, d in drops]] for method in PAPER_TABLE3]
    table3 = table(header, rows)
    return ("# paper\n## Table 1: in how many models the one-sided test rejects (top 5%)\n\n" + table1 +
            "\n\n## Table 3: mean relative confidence drop, top 50% removed, zero fill\n\n" + table3)
