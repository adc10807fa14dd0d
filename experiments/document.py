"""The reviewed study's results document: ``results.md`` (the answer first, methods with the primary
endpoint, the minimum detectable differences, every model, against the paper, limitations; under 400
lines) and beside it, in ``results/``, ``appendix.md`` (the bulk), ``review-numbers.json`` (every number,
``evidence.ReviewNumbers``) and the figures (``forest.png``, ``slopes.png``). It writes docs/results.md
only when asked to replace the published study (``--replace-published``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from case_saliency.runs.store import atomic_write

from .evidence import ALPHA, SIMILAR, Difference, ReviewNumbers, SanityOutcome, review_numbers
from .figures import display_name, forest_plot, slope_plot
from .review import CAMS, CONTROLS, IN_DISTRIBUTION, MARGIN, OUT_OF_DISTRIBUTION, PRIMARY_K
from .studies import Study
from .tables import table as markdown_table

ANSWER_WORDS = 150
MAX_LINES = 400
PRIMARY_SETTINGS = ("in-distribution", "all images")  # photos; a test split
VERDICT_WORDS = {"lower": "lower (more class-specific)", "higher": "higher (less class-specific)",
                 "equal": f"equal within ±{MARGIN:g}", "identical": "identical", "undetermined": "undetermined"}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table, or a line saying its runs have not run yet (a table is never shown empty)."""
    return markdown_table(header, rows) if rows else "(not run yet)"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _photo(image_id: str) -> str:
    return image_id.split("/", 1)[-1]


def _family(model: str) -> str:
    """"resnet-seed3" -> "resnet-seeds" (a family of seeds); a model without seeds is its own family."""
    return model.rsplit("-seed", 1)[0] + "-seeds" if "-seed" in model else model


def _label(model: str) -> str:
    """A model's or a family's name for a reader: "efficientnet_lite1" -> "Lite1", "vgg-seed2" -> "VGG-like",
    "efficientnet_lite0-seeds" -> "Lite0 fine-tuned"."""
    names = {"efficientnet_lite0": "Lite0", "efficientnet_lite1": "Lite1", "efficientnet_lite2": "Lite2",
             "resnet-seeds": "ResNet-like", "densenet-seeds": "DenseNet-like", "vgg-seeds": "VGG-like",
             "efficientnet_lite0-seeds": "Lite0 fine-tuned"}
    family = _family(model)
    return names.get(family, family)


def _interval(d: Difference) -> str:
    if not math.isfinite(d.mean):
        return "–"
    if not (math.isfinite(d.low) and math.isfinite(d.high)):
        return f"{d.mean:+.1f}"
    return f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _primary(numbers: ReviewNumbers, method: str = "case") -> list[Difference]:
    return [d for d in numbers.at(PRIMARY_K, method) if d.setting in PRIMARY_SETTINGS]


def _group(differences: Sequence[Difference]) -> dict[str, list[Difference]]:
    """By family (a family's seeds together), in the order first seen."""
    out: dict[str, list[Difference]] = {}
    for d in differences:
        out.setdefault(_family(d.model), []).append(d)
    return out


def _counts(ds: Sequence[Difference]) -> str:
    found = {v: sum(d.verdict == v for d in ds) for v in VERDICT_WORDS}
    return ", ".join(f"{VERDICT_WORDS[v]} in {n}" for v, n in found.items() if n)


def _by_method(outcomes: Sequence[SanityOutcome]) -> str:
    """"Grad-CAM (Lite0, ResNet-like), CASE (Lite0)"."""
    models: dict[str, list[str]] = {}
    for s in outcomes:
        models.setdefault(display_name(s.method), []).append(_label(s.model))
    return ", ".join(f"{method} ({', '.join(where)})" for method, where in models.items()) or "none"


def _planted_sentence(numbers: ReviewNumbers) -> str:
    seeds_run = len({p.seed for p in numbers.planted})
    methods = list(dict.fromkeys(p.method for p in numbers.planted))
    located = [m for m in methods if all(p.contrast.low > 0 for p in numbers.planted if p.method == m)]
    missed = [display_name(m) for m in methods if m not in located]
    which = (f"every method but {', '.join(missed)}" if len(located) >= len(missed) else
             ", ".join(map(display_name, located)) or "no method")
    return (f"Planted patch ({_plural(seeds_run, 'seed')}): the patch class's map finds the patch "
            f"(interval > 0 in every seed) for {which}.")


def _sanity_sentence(numbers: ReviewNumbers) -> str:
    outcomes = [s for s in numbers.sanity if s.method not in CONTROLS]  # seeded noise never changes
    return (f"Sanity: maps survive randomisation (Spearman ≥ {SIMILAR:g}) for "
            f"{_by_method([s for s in outcomes if s.fails])}; the test still passes on a randomised or "
            f"shuffled-label model for {_by_method([s for s in outcomes if s.test_uninformative])}.")


def _span(values: Sequence[float], digits: int = 1) -> str:
    low, high = min(values), max(values)
    one = round(low, digits) == round(high, digits)
    return f"{low:+.{digits}f}" if one else f"{low:+.{digits}f} to {high:+.{digits}f}"


def _summary_of(ds: Sequence[Difference]) -> str:
    """"+1.8 to +3.3 points (higher in 9; within ±5 in 9)": the span of the means and the verdict counts."""
    verdicts = "; ".join(f"{VERDICT_WORDS[v].split(' (')[0]} in {n}" for v in VERDICT_WORDS
                         if (n := sum(d.verdict == v for d in ds)))
    within = sum(d.tost_p_holm < ALPHA for d in ds)
    inside = f"; within ±{MARGIN:g} in {within}" if within else ""
    mdd = _span([d.mdd for d in ds]).replace("+", "")
    return f"{_span([d.mean for d in ds])} points ({verdicts}{inside}; MDD {mdd})"


def readme_answer(numbers: ReviewNumbers, forest: str | None) -> str:
    """The README's "What it finds": three sentences ((a) CASE − Grad-CAM, (b) planted, (c) sanity) and the
    forest plot (``forest``: its path relative to the README)."""
    primary = _primary(numbers)
    photos = [d for d in primary if d.setting == "in-distribution"]
    trained = [d for d in primary if d.setting != "in-distribution"]
    parts = []
    if photos:
        parts.append(f"{_summary_of(photos)} on the {photos[0].n} in-distribution photos "
                     f"({', '.join(_label(d.model) for d in photos)})")
    if trained:
        parts.append(f"{_summary_of(trained)} on Fashion-MNIST's {len(trained)} trained models and seeds")
    sentences = [f"Under a contrast that can never be circular (leave-pair-out), CASE's top-1/top-2 agreement at the "
                 f"top {PRIMARY_K:g}% minus Grad-CAM's (lower: more class-specific) is "
                 + (" and ".join(parts) or "not measured yet") + "."]
    if numbers.planted:
        sentences.append(_planted_sentence(numbers))
    if numbers.sanity:
        sentences.append(_sanity_sentence(numbers))
    figure = f"\n\n![CASE and each CAM minus Grad-CAM, 95% intervals, per model]({forest})" if forest else ""
    return " ".join(sentences) + figure + "\n"


def answer(numbers: ReviewNumbers) -> str:
    """At most ~150 words: (a) CASE − Grad-CAM per model at the primary endpoint, (b) the planted
    evidence, (c) the sanity checks."""
    photos, families = [], []
    for family, ds in _group(_primary(numbers)).items():
        if len(ds) == 1 and ds[0].setting == "in-distribution":
            d = ds[0]
            photos.append(f"{_label(family)} {_interval(d)}, {d.verdict} (MDD {d.mdd:.1f})")
        else:
            mean = sum(d.mean for d in ds) / len(ds)
            verdicts = ", ".join(f"{v} {n}" for v in VERDICT_WORDS if (n := sum(d.verdict == v for d in ds)))
            within = sum(d.tost_p_holm < ALPHA for d in ds)  # also shown equal within the margin
            families.append(f"{_label(ds[0].model)} ({_plural(len(ds), 'seed')}) mean {mean:+.1f} ({verdicts}"
                            + (f"; within ±{MARGIN:g} in {within}" if within else "") + ")")
    n_photos = next((d.n for d in _primary(numbers) if d.setting == "in-distribution"), 0)
    n_images = sorted({d.n for d in _primary(numbers) if d.setting != "in-distribution"})
    parts = []
    if photos:
        parts.append(f"Photos, {n_photos} in distribution: " + "; ".join(photos))
    if families:
        span = f"{n_images[0]}" if n_images[0] == n_images[-1] else f"{n_images[0]}–{n_images[-1]}"
        parts.append(f"Fashion-MNIST ({span} test images a model): " + "; ".join(families))
    text = [f"**(a)** CASE − Grad-CAM agreement at the top {PRIMARY_K:g}% under leave-pair-out (points [95% CI]; "
            "lower: more class-specific). " + (". ".join(parts) or "Not run yet") + "."]
    if numbers.planted:
        text.append(f"**(b)** {_planted_sentence(numbers)}")
    if numbers.sanity:
        text.append(f"**(c)** {_sanity_sentence(numbers)}")
    return "\n\n".join(text)


def primary_table(numbers: ReviewNumbers) -> str:
    rows = [[_label(d.model) + (f" ({d.model.rsplit('-', 1)[1]})" if "-seed" in d.model else ""), d.setting, str(d.n),
             _interval(d), _p(d.p), _p(d.p_holm), _p(d.tost_p_holm), f"{d.mdd:.1f}", VERDICT_WORDS[d.verdict]]
            for d in _primary(numbers)]
    return table(["model", "setting", "n", "CASE − Grad-CAM [95% CI]", "p", "p (Holm)", f"TOST p (±{MARGIN:g}, Holm)",
                  "MDD", "verdict"], rows)


def mdd_table(numbers: ReviewNumbers) -> str:
    """The smallest CASE − Grad-CAM difference each setting could detect (80 % power, two-sided 0.05)."""
    rows = [[_label(d.model) + (f" ({d.model.rsplit('-', 1)[1]})" if "-seed" in d.model else ""), d.setting, str(d.n),
             f"{d.sd:.1f}", f"{d.mdd:.1f}"]
            for d in numbers.at(PRIMARY_K, "case")]
    return table(["model", "setting", "n", "SD of the differences", "MDD (points)"], rows)


def _cell(d: Difference | None) -> str:
    return "–" if d is None else f"{_interval(d)}, {d.verdict}"


def photos_table(numbers: ReviewNumbers, model: str) -> str:
    """One photo model: every method − Grad-CAM, in- and out-of-distribution apart (primary k)."""
    ds = [d for d in numbers.at(PRIMARY_K) if d.model == model]
    find = {(d.method, d.setting): d for d in ds}
    rows = [[f"`{m}`", _cell(find.get((m, "in-distribution"))), _cell(find.get((m, "out-of-distribution"))),
             _cell(find.get((m, "all photos")))] for m in dict.fromkeys(d.method for d in ds)]
    return table(["method", f"in-distribution (n = {len(IN_DISTRIBUTION)})",
                  f"out of distribution (n = {len(OUT_OF_DISTRIBUTION)})", "all 14"], rows)


def family_table(numbers: ReviewNumbers, family: str, setting: str = "all images") -> str:
    """A family over its seeds: per method the mean of the per-seed differences, their range, and the verdicts."""
    ds = [d for d in numbers.at(PRIMARY_K) if _family(d.model) == family and d.setting == setting]
    rows = []
    for method in dict.fromkeys(d.method for d in ds):
        mine = [d for d in ds if d.method == method]
        means = [d.mean for d in mine if math.isfinite(d.mean)]
        rows.append([f"`{method}`", str(len(mine)), f"{sum(means) / len(means):+.1f}" if means else "–",
                     f"[{min(means):+.1f}, {max(means):+.1f}]" if means else "–", _counts(mine)])
    return table(["method", "seeds", "mean − Grad-CAM", "range over seeds", "verdicts"], rows)


def planted_table(numbers: ReviewNumbers) -> str:
    rows = []
    for method in dict.fromkeys(p.method for p in numbers.planted):
        mine = sorted((p for p in numbers.planted if p.method == method), key=lambda p: p.seed)
        rows.append([f"`{method}`", " · ".join("undefined" if math.isnan(p.contrast.mean) else
                                              f"{p.contrast.mean:.3f} [{p.contrast.low:.3f}, {p.contrast.high:.3f}]"
                                              for p in mine),
                     " · ".join("–" if math.isnan(p.focus.mean) else f"{p.focus.mean:.2f}" for p in mine),
                     " · ".join(str(p.n) for p in mine)])
    return table(["method", "contrast per seed [95% CI] (> 0: the patch class's evidence on the patch)",
                  "grid focus per seed (chance 0.25)", "images per seed"], rows)


def sanity_table(numbers: ReviewNumbers) -> str:
    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    rows = [[_label(s.model), f"`{s.method}`" + (" (control)" if s.method in CONTROLS else ""),
             "yes" if s.passes_trained else "no", s.last_layer,
             num(s.spearman_randomised), "yes" if s.passes_randomised else "no", num(s.spearman_shuffled),
             "–" if s.passes_shuffled is None else ("yes" if s.passes_shuffled else "no"),
             "**maps survive**" if s.fails else "maps change",
             "**uninformative**" if s.test_uninformative else "informative"] for s in numbers.sanity]
    return table(["model", "method", "trained model passes", "randomised down to", "Spearman to trained",
                  "randomised passes", "shuffled labels: Spearman", "shuffled passes", "maps",
                  "the test's pass"], rows)


def fidelity_table(numbers: ReviewNumbers, model: str) -> str:
    """One model's class-contrastive fidelity: per method and k the mean relative drop (blur), and the
    class-contrastive columns where the runs have them; the zero-fill drop at 50 % last (secondary)."""
    points = [p for p in numbers.fidelity if p.model == model]
    columns = list(dict.fromkeys(c for p in points for c in p.contrastive))
    settings = list(dict.fromkeys((p.fill, p.k) for p in points))
    header = ["method", *[f"drop, {fill}, k = {k:g}%" for fill, k in settings], *columns]
    find = {(p.method, p.fill, p.k): p for p in points}
    rows = []
    for method in dict.fromkeys(p.method for p in points):
        cells = [f"`{method}`"]
        for fill, k in settings:
            p = find.get((method, fill, k))
            cells.append("–" if p is None or p.drop_relative is None else f"{p.drop_relative:.3f}")
        for column in columns:  # the k = 50 blur run's value, or the first run that has the column
            values = [p.contrastive.get(column) for p in points if p.method == method and column in p.contrastive]
            cells.append("–" if not values or values[-1] is None else f"{values[-1]:.3f}")
        rows.append(cells)
    return table(header, rows)


SATURATED = 0.05  # a fidelity setting whose random-map drop is this close to every method's cannot rank them


def saturation_note(numbers: ReviewNumbers, model: str) -> str:
    """The fidelity settings of a model at a ceiling: the random maps' mean drop within ``SATURATED`` of
    every method's (removing any pixels drops the confidence as much), said beside the table."""
    points = [p for p in numbers.fidelity if p.model == model and p.drop_relative is not None]
    notes = []
    for fill, k in dict.fromkeys((p.fill, p.k) for p in points):
        here = {p.method: p.drop_relative for p in points if (p.fill, p.k) == (fill, k)}
        control = here.pop("random", None)
        if control is not None and here and all(abs(v - control) < SATURATED for v in here.values() if v is not None):
            notes.append(f"{fill} fill at k = {k:g}%: saturated (the random maps' drop {control:.3f} is within "
                         f"{SATURATED:g} of every method's), it cannot rank the methods")
    return "; ".join(notes)


def paper_table(numbers: ReviewNumbers) -> str:
    photos = [d for d in numbers.at(PRIMARY_K, "case") if d.setting == "all photos"]
    families = [d for d in numbers.at(PRIMARY_K, "case") if d.setting == "all images"]
    layers = "; ".join(f"{_label(m)} `{layer}`" for m, layer in dict(sorted(numbers.layers.items())).items()
                       if "-seed" not in m or m.endswith("-seed0"))
    photo_models = [_label(m) for m in dict.fromkeys(d.model for d in photos)]
    seeded: dict[str, int] = {}
    for model in dict.fromkeys(d.model for d in families):
        seeded[_family(model)] = seeded.get(_family(model), 0) + 1
    fashion = ", ".join(f"{_label(family)} x {_plural(n, 'seed')}" for family, n in seeded.items())
    rows = [["models", "ImageNet ResNet-50, DenseNet-201, VGG19-BN, ConvNeXt-Large",
             f"ImageNet {', '.join(photo_models) or '–'} (offline weights); Fashion-MNIST {fashion or '–'}; "
             f"planted-patch ResNet-like x {_plural(len({p.seed for p in numbers.planted}), 'seed')}"],
            ["data, n", "1,000 correctly classified ImageNet validation images per model",
             "14 photos (7 in distribution)" + (f"; {families[0].n} Fashion-MNIST test images" if families else "")
             + " per model" + ("" if photos else " (photos not run)")],
            ["contrast", "confusion neighbours, k = 1, each class its own (may hold the other compared class)",
             "leave-pair-out: classifier neighbours (ImageNet), confusion neighbours from 5,000 held-out training "
             "images (families); never the other compared class"],
            ["target layer", "ResNet-50 `layer4[2].conv3`, VGG19-BN `features[49]`, DenseNet-201 "
             "`...denselayer32.conv2`, ConvNeXt `features[7][2].block[0]`", layers or "–"],
            ["tie rule", "array position (public code)", f"`{numbers.ties or '–'}`"],
            ["statistic", "one-sided Wilcoxon of agreement below 50% per method; rejections counted",
             "paired difference to Grad-CAM, bootstrap 95% interval, Holm, TOST ±5, MDD"],
            ["fidelity", "relative drop, zero fill, k = 50%", "blur fill over k = 5/10/20/50 (primary), the class-"
             "contrastive margin where recorded; zero fill at 50% secondary, random maps as control"],
            ["code bugs", "fidelity mask transposed; CASE rows dropped; a new sample per method",
             "not repeated: the same images for every method, masks in row-major order"]]
    return table(["", "the paper", "here"], rows)


# The paper's Table 3 (v3): mean relative confidence drop, top 50 % removed, zero fill, CASE and Grad-CAM.
PAPER_DROPS = {"ConvNeXt": (0.2052, 0.1919), "DenseNet": (0.1163, 0.1131), "ResNet": (0.1411, 0.1360),
               "VGG": (0.1317, 0.1328)}


def _drop_differences(numbers: ReviewNumbers) -> list[tuple[str, float]]:
    """(model, CASE − Grad-CAM mean zero-fill drop at 50 %) for each model whose run has both."""
    found = {(p.model, p.method): p.drop_relative for p in numbers.fidelity if p.fill == "zero" and p.k == 50.0}
    out = []
    for model in dict.fromkeys(m for m, _ in found):
        case, gradcam = found.get((model, "case")), found.get((model, "gradcam"))
        if case is not None and gradcam is not None:
            out.append((model, case - gradcam))
    return out


def findings_table(numbers: ReviewNumbers) -> str:
    """The paper's findings beside this study's, each in its own terms (no verdict counts at different n)."""
    primary = _primary(numbers)
    lowest = min((d for d in primary), key=lambda d: d.mean, default=None)
    highest = max((d for d in primary), key=lambda d: d.mean, default=None)
    lower, higher = (sum(d.verdict == v for d in primary) for v in ("lower", "higher"))
    here_sensitivity = ("–" if lowest is None or highest is None else
                        f"CASE − Grad-CAM from {lowest.mean:+.1f} ({_label(lowest.model)}) to {highest.mean:+.1f} "
                        f"({_label(highest.model)}) points, never circular; significantly lower in {lower} and higher "
                        f"in {higher} of {len(primary)} settings (the primary table)")
    drops = _drop_differences(numbers)
    here_drop = ("not run" if not drops else
                 f"CASE − Grad-CAM from {min(d for _, d in drops):+.3f} to {max(d for _, d in drops):+.3f} over "
                 f"{_plural(len(drops), 'model')}")
    paper_drop = ", ".join(f"{m} {c - g:+.3f}" for m, (c, g) in PAPER_DROPS.items())
    rows = [["class sensitivity, CASE against Grad-CAM",
             "CASE rejects 'agreement ≥ 50 %' on 4 of 4 models, Grad-CAM on 1 (DenseNet); no mean agreements "
             "given; CASE's contrast may hold the other compared class", here_sensitivity],
            ["fidelity, zero fill, top 50 % removed (relative drop)", f"CASE − Grad-CAM: {paper_drop}; on par",
             here_drop]]
    return table(["finding", "the paper (Tables 1 and 3)", "here"], rows)


LIMITATIONS = (
    "Seven in-distribution photos are the primary ImageNet set: a true difference below the MDD (table above) is "
    "likely missed, and an undetermined verdict is not evidence of no difference.",
    "Percentile bootstrap intervals at n = 7 or 14 are too narrow (they undercover at small n); read them with "
    "the paired t-test and the MDD.",
    "No ImageNet validation set is offline: the paper's models and its n ≈ 1,000 are not reproduced here "
    "(the recipe is in the appendix).",
    "Fashion-MNIST's 7x7 maps make agreement coarse; where Grad-CAM sits near the random maps' agreement the "
    "diagnostic is at its floor (noted beside the setting).",
    "The planted patch is one synthetic cue on one architecture; it tests localisation of a known cue, not "
    "every kind of evidence.",
    f"The sanity verdict uses a fixed similarity threshold (median Spearman {SIMILAR:g}); the appendix gives "
    "every step.",
)


def _section(title: str, *parts: str) -> list[str]:
    return [f"## {title}", "", *[p for part in parts for p in (part, "")]]


def results_markdown(numbers: ReviewNumbers, study: Study, figures: dict[str, str], command: str,
                     appendix: str = "results/appendix.md") -> str:
    numbers_file = appendix.replace("appendix.md", "review-numbers.json")
    earlier = appendix.replace("appendix.md", "earlier-study.md")
    lines = ["# What the experiments find (the reviewed study)", "",
             f"Generated by `{command}` from the runs in its output folder; every number below is in "
             f"`{numbers_file}`. The bulk is in [the appendix]({appendix}); the earlier study (the paper's "
             f"protocol, circular contrasts counted) is kept in [its own page]({earlier}).", ""]
    lines += _section("The answer", answer(numbers))
    if "forest" in figures:
        lines += [f"![CASE and each CAM minus Grad-CAM, 95% intervals]({figures['forest']})", ""]
    lines += [primary_table(numbers), ""]
    lines += _section("Methods", *[f"- {note}" for note in study.notes],
                      "- Contrast kinds: `leave-pair-out:B:K` (the K model-level neighbours B of each class, the other "
                      "compared class left out: never circular; the diagnostic's default), `classifier:K` and "
                      "`confusion:K` (model-level; may hold the other class), `top:K` (image-level: circular by "
                      "design). Fidelity uses the model-level neighbours.",
                      "- Tests: per setting and k, each method minus Grad-CAM on the images both scored: the paired "
                      "two-sided t-test of the mean decides, Holm across the methods of a model at each k (the "
                      "random control apart), for every verdict, the primary one too (the primary table gives its p "
                      f"before Holm beside it); TOST for equivalence within ±{MARGIN:g} points; Wilcoxon and sign "
                      "tests beside it. Fidelity: CASE against each method, paired two-sided Wilcoxon and t, Holm "
                      "within a run.",
                      "Minimum detectable difference of the primary endpoint (80% power, two-sided 0.05, the "
                      "observed SD):", mdd_table(numbers))
    model_parts: list[str] = []
    photo_models = list(dict.fromkeys(d.model for d in numbers.differences if d.setting == "all photos"))
    for model in photo_models:
        note = numbers.floors.get(f"{model}/in-distribution", "")
        model_parts += [f"### {_label(model)}, the photos (top {PRIMARY_K:g}%){': ' + note if note else ''}",
                        photos_table(numbers, model)]
    if "slopes" in figures:
        model_parts.append(f"![Per photo: Grad-CAM's and CASE's agreement; dashed: out of distribution]"
                           f"({figures['slopes']})")
    families = list(dict.fromkeys(_family(d.model) for d in numbers.differences if d.setting == "all images"))
    for family in families:
        floors = [n for key, n in numbers.floors.items()
                  if _family(key.split("/")[0]) == family and key.endswith("/all images")]
        model_parts += [f"### {_label(family)}, all test images, over the seeds"
                        + (f" ({len(floors)} seed(s) at the floor: Grad-CAM near the random maps)" if floors else ""),
                        family_table(numbers, family)]
    if numbers.planted:
        model_parts += ["### The planted-patch models", planted_table(numbers)]
    if numbers.sanity:
        model_parts += ["### Sanity checks", sanity_table(numbers)]
    for model in list(dict.fromkeys(p.model for p in numbers.fidelity))[:1]:
        note = saturation_note(numbers, model)
        model_parts += [f"### Class-contrastive fidelity, {_label(model)} (other models in the appendix)",
                        fidelity_table(numbers, model) + (f"\n\nAt a ceiling: {note}." if note else "")]
    lines += _section("Every model", *model_parts)
    lines += _section("Against the paper", paper_table(numbers), findings_table(numbers),
                      "The paper reports, per model, whether the one-sided test rejects at n ≈ 1,000 (its Table 1: "
                      "CASE on 4 of 4 models, Grad-CAM on 1); its Table 3 finds CASE's confidence drop on par with "
                      "the baselines. Verdict counts at n = 14 are not comparable with those at n ≈ 1,000, so this "
                      "document compares differences with intervals instead (the primary table).")
    lines += _section("Limitations", *[f"- {text}" for text in LIMITATIONS])
    return "\n".join(lines).rstrip() + "\n"


def appendix_markdown(numbers: ReviewNumbers, study: Study, out: Path, commands: Sequence[str],
                      carried: Sequence[str] = ()) -> str:
    lines = ["# Appendix to the reviewed study", ""]
    for model in dict.fromkeys(d.model for d in numbers.differences):
        for setting in dict.fromkeys(d.setting for d in numbers.differences if d.model == model):
            ds = [d for d in numbers.differences if d.model == model and d.setting == setting]
            lines += [f"## {model}, {setting}", "",
                      table(["method", "k", "n", "− Grad-CAM [95% CI]", "p (Holm)", "TOST p", "MDD", "verdict"],
                            [[f"`{d.method}`", f"{d.k:g}", str(d.n), _interval(d), _p(d.p_holm), _p(d.tost_p_holm),
                              f"{d.mdd:.1f}", d.verdict] for d in ds]), ""]
    for a in numbers.agreements:
        rows = [[_photo(i), "out" if i in OUT_OF_DISTRIBUTION else "in", f"{g:.1f}", f"{c:.1f}", f"{c - g:+.1f}"]
                for i, g, c in zip(a.image_ids, a.gradcam, a.case, strict=True)]
        lines += [f"## {a.model}: per photo, top {PRIMARY_K:g}%", "",
                  table(["photo", "distribution", "Grad-CAM", "CASE", "difference"], rows), ""]
    for model in list(dict.fromkeys(p.model for p in numbers.fidelity)):
        note = saturation_note(numbers, model)
        lines += [f"## Fidelity, {model}", "", fidelity_table(numbers, model), ""]
        lines += [f"At a ceiling: {note}.", ""] if note else []
    def num(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    for model in dict.fromkeys(s.model for s in numbers.sanity_steps):
        rows = [[f"`{s.method}`", str(s.step), s.layer, num(s.median_spearman), num(s.median_ssim),
                 num(s.median_topk, 1), num(s.mean_agreement, 1), num(s.p_below), "yes" if s.passes else "no"]
                for s in numbers.sanity_steps if s.model == model]
        lines += [f"## Sanity, {model}: every step (0 trained, -1 shuffled labels)", "",
                  table(["method", "step", "randomised down to", "Spearman", "SSIM", "top-k overlap (%)",
                         "agreement", "p (below 50)", "passes"], rows), ""]
    lines += ["## Compute (CPU minutes by kind of step, summed over sessions)", "", compute_table(study, out), "",
              "## This study's drift check", "",
              "`tests/test_review_study.py` reruns `python -m experiments review --quick` and compares its numbers "
              "with `docs/results/quick-review.json` (`--quick --publish` writes it); `tests/test_experiments.py` "
              "does the same for the earlier study's `photos --quick` and `docs/results/quick-photos.json` (its "
              "table is in [the earlier study](earlier-study.md)).", "",
              "## The command of every step", "", "```bash", *commands, "```", "", *carried]
    return "\n".join(lines)


# A hand-written section of the earlier study's document that the appendix keeps, word for word: the
# ImageNet recipe (a test runs its commands). The earlier study keeps its own drift check.
CARRIED = ("## Reproducing the paper's Table 1 and Table 3 with ImageNet",)
EARLIER_STUDY = Path("docs") / "results" / "earlier-study.md"


def carried_sections(sources: Sequence[Path]) -> list[str]:
    """Each ``CARRIED`` section (its heading to the next ``## `` heading) from the first of ``sources``
    that has it: the earlier study's document (the source), or the appendix that already carried it."""
    found = []
    for heading in CARRIED:
        for source in sources:
            text = source.read_text() if source.is_file() else ""
            start = text.find(heading)
            if start >= 0:
                end = text.find("\n## ", start + len(heading))
                found.append(text[start:end if end >= 0 else len(text)].rstrip() + "\n")
                break
    return found


def compute_table(study: Study, out: Path) -> str:
    path = out / "compute.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    kinds = {step.name: step.kind for step in study.steps}
    totals: dict[str, list[float]] = {}
    for key, entry in data.items():
        name = key.partition("/")[2]
        if key.startswith(f"{study.name}/") and name in kinds:
            row = totals.setdefault(kinds[name], [0.0, 0.0, 0.0])
            row[0], row[1], row[2] = row[0] + entry["cpu_seconds"], row[1] + entry["wall_seconds"], row[2] + 1
    rows = [[kind, f"{n:.0f}", f"{cpu / 60:.1f}", f"{wall / 60:.1f}"] for kind, (cpu, wall, n) in totals.items()]
    cpu = sum(v[0] for v in totals.values())
    rows.append(["**total**", f"{sum(v[2] for v in totals.values()):.0f}", f"**{cpu / 60:.1f}**",
                 f"{sum(v[1] for v in totals.values()) / 60:.1f}"])
    return table(["kind", "steps", "CPU minutes", "wall minutes"], rows)


def word_count(markdown: str) -> int:
    return len(re.findall(r"[^\s*|]+", markdown))


def document_paths(document: Path) -> tuple[Path, Path]:
    """(the results document, the folder of its bulk): ``docs/results.md`` -> ``docs/results/``; a folder
    ``F`` (no ``.md`` suffix) -> ``F/results.md`` and ``F/results/``."""
    main = document if document.suffix == ".md" else document / "results.md"
    return main, main.with_suffix("")


def write_review(study: Study, out: Path, document: Path | None = None, quick: bool = False,
                 replace_published: bool = False) -> list[Path]:
    """Read the reviewed study's runs and write its document: ``document`` (default
    ``<out>/review/results.md``; a folder gets ``results.md`` in it) and, in the folder of the same name
    beside it (``results/``), ``appendix.md``, ``review-numbers.json``, ``forest.png`` and ``slopes.png``.

    Args:
        replace_published: allow ``document`` to be docs/results.md (the published study), for the
            session that has run the full study; refused otherwise.
    Returns:
        The paths written: the document, the appendix, the numbers, then the figures.
    Raises:
        ValueError: ``document`` is docs/results.md without ``replace_published``.
    """
    main, bulk = document_paths(document or out / study.name)
    if main.resolve() == (Path("docs") / "results.md").resolve() and not replace_published:
        raise ValueError(f"--document {main}: the reviewed study never overwrites docs/results.md unless asked to "
                         "(--replace-published, once the full study has run); give another path, e.g. "
                         "/tmp/review/results.md")
    bulk.mkdir(parents=True, exist_ok=True)
    numbers = review_numbers(study, out)
    figures: dict[str, str] = {}
    # The headline figure: the CAMs and the control in the primary settings (the gradient methods and
    # the other settings are in the appendix's tables).
    forest = forest_plot([d for d in numbers.at(PRIMARY_K) if d.setting in PRIMARY_SETTINGS
                          and d.method in (*CAMS, *CONTROLS)], bulk, margin=MARGIN)
    if forest is not None:
        figures["forest"] = f"{bulk.name}/{forest.name}"
    slopes = slope_plot(numbers.agreements, bulk, out_of_distribution=OUT_OF_DISTRIBUTION)
    if slopes is not None:
        figures["slopes"] = f"{bulk.name}/{slopes.name}"
    from .run import cli_equivalent

    commands = [cli_equivalent(step, out) for step in study.steps]
    command = (f"python -m experiments {study.name}{' --quick' if quick else ''} --document {main}"
               + (" --replace-published" if replace_published else ""))
    results = results_markdown(numbers, study, figures, command, f"{bulk.name}/appendix.md")
    lines = results.count("\n")
    if lines > MAX_LINES:
        print(f"note: {main} has {lines} lines (more than {MAX_LINES})", flush=True)
    words = word_count(answer(numbers))
    if words > ANSWER_WORDS:
        print(f"note: the answer has {words} words (more than {ANSWER_WORDS})", flush=True)
    carried = carried_sections([EARLIER_STUDY, bulk / "appendix.md", Path("docs") / "results" / "appendix.md"])
    readme = main.resolve().parent.parent / "README.md"
    if replace_published and readme.exists():  # its "What it finds" carries the answer and the forest plot
        from .tables import publish_block

        forest_link = f"{main.parent.name}/{figures['forest']}" if "forest" in figures else None
        if publish_block(readme, "answer", readme_answer(numbers, forest_link)):
            print(f"published: {readme} (answer)", flush=True)
    written = [atomic_write(main, results),
               atomic_write(bulk / "appendix.md", appendix_markdown(numbers, study, out, commands, carried)),
               atomic_write(bulk / "review-numbers.json", json.dumps(numbers.to_json(), indent=1, sort_keys=True))]
    return written + [main.parent / name for name in figures.values()]
