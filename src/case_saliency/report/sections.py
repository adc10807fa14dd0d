"""The sections of a report page: summary tables and figures of a diagnose or fidelity run, the
gallery, the confusion matrix, the metadata, the command that reproduces it, and the table across
several runs."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from . import figures as F
from ..runs.store import file_stem
from ..runs.summary import contrast_line, display_name, sample_line
from .rundir import GalleryItem, Run, safe_name, to_float
from .tables import Column, e, key_values, number, records, table_html

NEIGHBOURS_K = 3
GALLERY_BUDGET = 6  # gallery figures on a page: half where the methods differ most, half least


def _img(png: Path, alt: str, thumbnail: int | None = None) -> str:
    """An <img> with the PNG embedded, or (``thumbnail``: its width in pixels) a compressed JPEG copy
    that links to the full-size PNG beside the page, so that photo-heavy pages stay small."""
    if thumbnail is None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{e(alt)}">'
    from PIL import Image

    with Image.open(png) as opened:
        picture = opened.convert("RGB")
    if picture.width > thumbnail:
        size = (thumbnail, round(picture.height * thumbnail / picture.width))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=82, optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" alt="{e(alt)}">'


def _figure(fig, folder: Path, stem: str, alt: str, caption: str, dpi: int | None = None,
            thumbnail: int | None = None) -> str:
    """Save a figure as PNG and PDF and return a <figure> embedding the PNG (or a JPEG thumbnail of
    it, linked to the PNG)."""
    png, pdf = F.save_figure(fig, folder, stem, dpi=dpi)
    where = "figures/" if folder.name == "figures" else f"figures/{folder.name}/"
    image = _img(png, alt, thumbnail)
    if thumbnail is not None:
        image = f'<a href="{e(where + png.name)}">{image}</a>'
    return (f'<figure>{image}<figcaption>{caption} <span class="files">'
            f'({e(png.name)}, {e(pdf.name)} in {e(where)})</span></figcaption></figure>')


# The per-image columns that identify a method's numbers in each kind of run.
IDENTITY_COLUMNS = {"diagnose": ("agreement", "spearman", "ssim"),
                    "fidelity": ("drop_relative", "deletion_auc", "insertion_auc")}


def identical_methods(run: Run) -> dict[str, list[str]]:
    """{method: [later methods whose every per-image number equals its own]} (e.g. HiResCAM and
    XGrad-CAM equal Grad-CAM at a global-average-pool + linear head), so tables and figures show
    them once. Only methods with the same images, all finite values equal to 1e-6, count."""
    columns = IDENTITY_COLUMNS.get(run.kind, ())
    keys = ("image_id", "k_percent")
    signatures: dict[str, tuple[list, np.ndarray]] = {}
    for method in run.methods:
        rows = sorted(run.select(method), key=lambda r: tuple(r.get(k, "") for k in keys))
        ids = [tuple(r.get(k, "") for k in keys) for r in rows]
        values = np.array([[to_float(r.get(c)) for c in columns] for r in rows], dtype=np.float64)
        signatures[method] = (ids, values)
    groups: dict[str, list[str]] = {}
    taken: set[str] = set()
    for i, first in enumerate(run.methods):
        if first in taken:
            continue
        ids, values = signatures[first]
        if not ids or not np.isfinite(values).any():
            continue
        for other in run.methods[i + 1:]:
            other_ids, other_values = signatures[other]
            if other not in taken and other_ids == ids and np.allclose(values, other_values, rtol=0, atol=1e-6,
                                                                       equal_nan=True):
                groups.setdefault(first, []).append(other)
                taken.add(other)
    return groups


def _merge_identical(run: Run, rows: list[dict], key: str = "method") -> tuple[list[dict], list[str], str]:
    """Rows without the duplicates of identical methods, the representatives' rows relabelled
    "gradcam (= hirescam, xgradcam)"; also the methods to draw and a note (empty when none merged)."""
    groups = identical_methods(run)
    if not groups:
        return rows, list(run.methods), ""
    hidden = {m for dups in groups.values() for m in dups}
    kept = []
    for row in rows:
        if row.get(key) in hidden:
            continue
        if row.get(key) in groups:
            row = {**row, key: f"{row[key]} (= {', '.join(groups[row[key]])})"}
        kept.append(row)
    pairs = "; ".join(f"{', '.join(dups)} = {first}" for first, dups in groups.items())
    note = (f'<p class="note">Identical numbers on every image, shown once: {e(pairs)} (at a global-average-pool and '
            "linear head, HiResCAM's and XGrad-CAM's weights equal Grad-CAM's up to scale).</p>")
    return kept, [m for m in run.methods if m not in hidden], note


def _diagnose_sections(run: Run, summary: dict, folder: Path) -> tuple[str, str]:
    """(summary table, figures) of a diagnose run."""
    threshold, alpha = summary["threshold"], summary["alpha"]
    rows = records(summary["agreement"])
    for row in rows:
        row["model"] = run.model
    p_key = "p_holm" if rows and "p_holm" in rows[0] else "pvalue"
    rows, shown, merged = _merge_identical(run, rows)
    columns = [Column("Method", "method", str), Column("Model", "model", str),
                   Column("k %", "k_percent", lambda v: number(v, 1)),
                   Column("N", "n", lambda v: str(int(v)), title="pairs scored (degenerate and failed pairs left out)"),
                   Column("Agreement mean %", "mean", lambda v: number(v, 1), "low",
                          "mean top-k% agreement of the top-1 and top-2 maps; lower = more class-sensitive"),
                   Column("SD", "sd", lambda v: number(v, 1)),
                   Column("Degenerate", "degenerate", lambda v: str(int(v)),
                          title="pairs with a constant map (agreement undefined)"),
                   Column("Spearman", "spearman", number, "low", "mean rank correlation of the two maps"),
                   Column("SSIM", "ssim", number, "low", "mean structural similarity of the two maps"),
                   Column("Wilcoxon W", "statistic", lambda v: number(v, 1)),
                   Column("p", p_key, number, "low", "one-sided Wilcoxon signed-rank, H1: median < threshold"),
                   Column("Conclusion", "conclusion", str)]
    if rows and "contrast" in rows[0]:
        columns.insert(1, Column("Contrast", "contrast", str, title="the method's contrast set (spec)"))
    if rows and "in_contrast" in rows[0]:
        columns += [Column("In contrast %", "in_contrast", lambda v: number(v, 0),
                           title="pairs where a map's contrast set holds the other compared class: the two maps "
                                 "are pushed apart by construction"),
                    Column("Mean without %", "mean_without", lambda v: number(v, 1),
                           title="mean agreement over the pairs without the other class in a contrast set"),
                    Column("p without", "p_without", number, title="the test over those pairs alone"),
                    Column("Grad-CAM there %", "baseline_without", lambda v: number(v, 1),
                           title="Grad-CAM's mean agreement on those same images: the other pairs are not a random "
                                 "subset, so this is the fair comparison"),
                    Column("p vs Grad-CAM", "p_vs_baseline", number,
                           title="two-sided paired Wilcoxon test of the method against Grad-CAM on those images")]
    if rows and "sparse" in rows[0]:
        columns.append(Column("Sparse %", "sparse", lambda v: number(v, 0),
                              title="pairs where a map has fewer positive pixels than its top set"))
    config = run.config
    note = (f"<p class=\"note\">Test per method: one-sided Wilcoxon signed-rank test of agreement − {threshold:g}, "
            f"H1: median agreement &lt; {threshold:g}% (α = {alpha:g}"
            f"{', Holm-corrected' if p_key == 'p_holm' else ''}). Rejecting means the method separates the "
            "top-1 and top-2 classes. ★ marks the lowest mean agreement of each k where that method's test rejects "
            "(↓ lower is better, ↑ higher). "
            f"{e(contrast_line(config))}. Agreement: ties {e(config.get('ties') or 'index')}, sparse maps "
            f"{e(config.get('sparse') or 'pad')}.</p>") + merged
    circular = sorted({row["method"] for row in rows if (row.get("in_contrast") or 0) > 0})
    if circular:
        note += (f"<p class=\"note\">{e(', '.join(circular))}: in some pairs a map's contrast set holds the other "
                 "compared class, so the two maps are pushed apart by construction and their low agreement is "
                 "partly circular; compare the 'without' columns with Grad-CAM's on the same images, and read it "
                 "together with a fidelity run.</p>")
    short = sample_line(summary.get("sample") or {})
    if short:
        note += f"<p class=\"note\">{e(short)}</p>"

    def separates(row: dict, column: Column) -> bool:  # a star only where the method's own test rejects
        return column.key == "mean" and _as_p(row.get(p_key)) < alpha

    table = table_html(rows, columns, groups=[row["k_percent"] for row in rows],
                       caption="Class sensitivity: top-1 vs top-2 maps", star=separates) + note
    parts = []
    for k in run.k_percents():
        agreement = {m: run.column(m, "agreement", k_percent=k) for m in shown}
        fig = F.agreement_histograms(agreement, threshold, float(k))
        parts.append(_figure(fig, folder, f"agreement_hist_k{safe_name(k)}", f"agreement histograms at k={k}%",
                             f"Top-{e(k)}% agreement per method, relative frequency; dashed line: the threshold "
                             f"{threshold:g}%, dotted: the mean."))
    return table, "\n".join(parts)


def _fidelity_sections(run: Run, summary: dict, folder: Path) -> tuple[str, str]:
    """(summary tables, figures) of a fidelity run."""
    rows = records(summary["fidelity"])
    for row in rows:
        row["model"] = run.model
    rows, shown, merged = _merge_identical(run, rows)
    tests = records(summary.get("paired"))
    hidden = set(run.methods) - set(shown)
    tests = [t for t in tests if t.get("method") not in hidden and t.get("reference") not in hidden]
    alpha = float(summary.get("alpha") or run.config.get("alpha") or 0.05)
    k = run.config.get("k_percent")
    k = number(k[0] if isinstance(k, list) and k else k, 0)  # fidelity runs store one k (maybe in a list)
    fill = run.config.get("fill")
    deletion_fill = run.config.get("deletion_fill") or fill  # runs of earlier versions deleted with their fill
    sweep = run.config.get("contrastive_k") or []
    # The primary measures first (deletion/insertion AUC, the class-contrastive drop), then the confidence drop
    # at k with the run's fill, the random maps' drop beside it (the control: a saturated drop shows in it).
    columns = [Column("Method", "method", str), Column("Model", "model", str),
               Column("N", "n", lambda v: str(int(v))),
               Column(f"Deletion AUC ({deletion_fill})", "deletion_auc_mean", number, "low",
                      f"probability of the class as the top pixels become {deletion_fill}, area over the removed "
                      "fraction"),
               Column("SD", "deletion_auc_sd", number),
               Column("Insertion AUC (blur)", "insertion_auc_mean", number, "high",
                      "probability of the class as the top pixels are revealed on the blurred image"),
               Column("SD", "insertion_auc_sd", number)]
    if rows and "contrastive_drop_mean" in rows[0]:
        columns += [Column("Contrastive drop", "contrastive_drop_mean", number, "high",
                           "logit top-1 − logit top-2, before minus after removing the top-k% of the top-1 map with "
                           f"the blur, mean over k = {', '.join(f'{float(v):g}' for v in sweep)}%"),
                    Column("SD", "contrastive_drop_sd", number)]
    columns += [Column(f"Relative drop at {k}% ({fill})", "drop_relative_mean", number, "high",
                       "secondary: mean of max(p_before − p_after, 0) / p_before after removing the top pixels")]
    if rows and "drop_relative_random" in rows[0]:
        columns.append(Column("Random maps' drop", "drop_relative_random", number,
                              title="the random-map control's relative drop on the same images"))
    columns += [Column("Absolute drop", "drop_absolute_mean", number, "high", "mean of p_before − p_after"),
                Column("Errors", "errors", lambda v: str(int(v)))]
    if rows and "degenerate" in rows[0]:
        columns.insert(3, Column("Degenerate", "degenerate", lambda v: str(int(v)),
                                 title="constant maps: left out of the means and the paired tests"))
    reference = str(tests[0]["reference"]) if tests else None

    def differs(row: dict, column: Column) -> bool:
        """A star only where the paired test says the best value differs: the reference's, from
        every other method; another method's, from the reference."""
        measure = MEASURES.get(column.key)
        method = str(row["method"]).split(" (=")[0]
        found = [t for t in tests if t.get("measure") == measure
                 and (method == reference or t.get("method") == method)]
        return bool(found) and all(_as_p(t.get("wilcoxon_p_holm", t.get("wilcoxon_p"))) < alpha for t in found)

    table = table_html(rows, columns, caption="Fidelity: what the map's pixels are worth to the model", star=differs)
    table += ("<p class=\"note\">★ marks the best value of a column where the paired Wilcoxon test (α = "
              f"{alpha:g}) says it differs: for {e(reference or 'the reference')} from every other method, for another "
              "method from the reference (↓ lower is better, ↑ higher). The deletion and insertion AUC are the "
              "primary measures; the confidence drop at one k is secondary (on many models near its ceiling: "
              "compare it with the random maps' drop where the run has them). "
              f"Removed pixels become: {e(deletion_fill)} (deletion curve), {e(fill)} (confidence drop), a blur "
              f"(class-contrastive drop); {e(run.config.get('steps'))} deletion/insertion steps.</p>") + merged
    for test in tests:
        test["conclusion"] = _direction(test)
    if tests:
        test_columns = [Column("Reference", "reference", str), Column("Method", "method", str),
                        Column("Measure", "measure", str), Column("N", "n", lambda v: str(int(v))),
                        Column("Mean difference", "mean_difference", number),
                        Column("Wilcoxon W", "wilcoxon_statistic", lambda v: number(v, 1)),
                        Column("p (Wilcoxon)", "wilcoxon_p", number), Column("t", "t_statistic", number),
                        Column("p (t-test)", "t_p", number), Column("Conclusion", "conclusion", str)]
        table += table_html(tests, test_columns, caption="Paired tests, reference − method, two-sided")
    parts = []
    drops = {m: run.column(m, "drop_relative") for m in shown}
    parts.append(_figure(F.drop_boxplots(drops), folder, "confidence_drop", "confidence drop box plots",
                         f"Relative confidence drop after removing the top {e(k)}% pixels, per image; "
                         "boxes: quartiles, whiskers: 1.5 IQR, diamond: mean."))
    deletion = {m: run.curves(m, "deletion_curve") for m in shown}
    insertion = {m: run.curves(m, "insertion_curve") for m in shown}
    lengths = {c.shape[1] for c in [*deletion.values(), *insertion.values()] if c.size}
    if len(lengths) == 1:
        fractions = np.linspace(0.0, 1.0, lengths.pop())
        parts.append(_figure(F.deletion_insertion_curves(fractions, deletion, insertion), folder, "curves",
                             "deletion and insertion curves",
                             "Deletion and insertion curves: mean over images, band ±1 SD (clipped to [0, 1])."))
    return table, "\n".join(parts)


def _first_k_agreements(run: Run) -> tuple[float | None, dict[tuple[str, str], float]]:
    """The smallest k of a diagnose run and each (image id, method)'s agreement at it (finite only)."""
    ks = run.k_percents()
    if not ks:
        return None, {}
    found = {}
    for row in (r for r in run.rows if r.get("k_percent") == ks[0]):
        value = to_float(row.get("agreement"))
        if math.isfinite(value):
            found[(row["image_id"], row["method"])] = value
    return to_float(ks[0]), found


def choose_gallery(items: Sequence[GalleryItem], agreement: dict[tuple[str, str], float],
                   budget: int = GALLERY_BUDGET) -> tuple[list[GalleryItem], list[GalleryItem]]:
    """(most, least): the images where the methods' top-1/top-2 agreements differ most and least
    (spread = max - min over the methods with a finite agreement), within ``budget`` images in all.
    Images with fewer than two finite agreements come last."""
    def spread(item: GalleryItem) -> float:
        values = [agreement[(item.image_id, m)] for m in item.maps if (item.image_id, m) in agreement]
        return max(values) - min(values) if len(values) >= 2 else -math.inf

    ranked = sorted(items, key=spread, reverse=True)  # stable: ties keep the run's order
    if len(ranked) <= budget:
        return ranked, []
    most = (budget + 1) // 2
    scored = [item for item in ranked if spread(item) > -math.inf]
    least = sorted(scored[most:], key=spread)[: budget - most]
    return ranked[:most], least


# Fidelity table columns -> the paired tests' measure, and which way is better.
MEASURES = {"drop_relative_mean": "drop_relative", "drop_absolute_mean": "drop_absolute",
            "deletion_auc_mean": "deletion_auc", "insertion_auc_mean": "insertion_auc",
            "contrastive_drop_mean": "contrastive_drop"}
BETTER = {"drop_relative": "high", "drop_absolute": "high", "deletion_auc": "low", "insertion_auc": "high",
          "contrastive_drop": "high"}


def _as_p(value: object) -> float:
    p = to_float(value)  # type: ignore[arg-type]
    return p if math.isfinite(p) else math.inf


def _direction(test: dict) -> str:
    """A paired test's conclusion with its direction: "differs: case higher (better)"."""
    conclusion = str(test.get("conclusion") or "")
    difference = to_float(test.get("mean_difference"))
    if conclusion != "differs" or not math.isfinite(difference) or difference == 0:
        return conclusion
    higher = difference > 0  # mean difference = reference - method
    better = BETTER.get(str(test.get("measure")))
    verdict = "" if better is None else (" (better)" if higher == (better == "high") else " (worse)")
    return f"differs: {test.get('reference')} {'higher' if higher else 'lower'}{verdict}"


def _gallery_section(run: Run, folder: Path) -> str:
    if not run.gallery:
        return ""
    k, agreement = _first_k_agreements(run)
    most, least = choose_gallery(run.gallery, agreement)
    stored = len(run.gallery)
    if least:
        intro = (f"{len(most) + len(least)} of the {stored} images whose maps the run stored: the {len(most)} where "
                 f"the methods' top-1/top-2 agreements differ most, then the {len(least)} where they differ least "
                 f"(spread = highest − lowest agreement at k = {k:g}%).")
    else:
        intro = (f"The {stored} images whose maps the run stored, those where the methods' top-1/top-2 agreements "
                 "differ most first.")
    parts = [f'<p class="note">{intro} Each map is overlaid in jet (red = salient) and scaled to [0, 1]; the '
             "white outline is its top-k% region, the pixels the agreement compares; a method's agreement is "
             "printed above its column. Click a figure for the full-size PNG.</p>"]
    for group, label in ((most, "differ most"), (least, "differ least")):
        for item in group:
            methods = [m for m in run.methods if m in item.maps] + sorted(set(item.maps) - set(run.methods))
            if not methods:
                continue
            names = [run.class_name(int(c)) for c in item.classes[:2]]
            maps = {m: item.maps[m] for m in methods}
            shares = {m: agreement.get((item.image_id, m)) for m in methods}
            fig = F.gallery_figure(item.image, maps, names, item.probs[:2], agreement=shares, k_percent=k)
            values = [v for v in shares.values() if v is not None]
            spread = f"; spread {max(values) - min(values):.0f} points" if len(values) >= 2 else ""
            true = run.class_name(item.label) if item.label >= 0 else "unknown"
            caption = (f"<b>{e(item.image_id)}</b> ({'methods ' + label if least else 'sorted by spread'}{spread}) — "
                       f"true class: {e(true)}; top-1: {e(names[0])} (p = {item.probs[0]:.2f}); top-2: "
                       f"{e(names[1])} (p = {item.probs[1]:.2f}). Upper row: each method's map for the top-1 class, "
                       "lower row: for the top-2 class.")
            parts.append(_figure(fig, folder, f"gallery_{file_stem(item.image_id)}", f"gallery {item.image_id}",
                                 caption, dpi=110, thumbnail=760))
    return "\n".join(parts)


def _confusion_section(run: Run, folder: Path) -> str:
    if run.confusion is None:
        return ""
    confusion = run.confusion
    size = confusion.shape[0]
    names = [run.class_name(i) for i in range(size)]
    if run.class_names is not None and len(run.class_names) != size:
        names = [f"class {i}" for i in range(size)]  # names of another label set would mislead
    k = min(NEIGHBOURS_K, size - 1)
    figure = _figure(F.confusion_heatmap(confusion, names, k), folder, "confusion", "confusion matrix heat map",
                     "Confusion matrix (rows: true class, normalised to sum 1) and each class's contrast "
                     "neighbours: the classes it is most often mistaken for.")
    rates = F.row_rates(confusion)
    neighbours = F.contrast_neighbours(confusion, k)
    rows = "".join(
        f"<tr><th scope=\"row\">{e(names[c])}</th><td>{rates[c, c]:.2f}</td><td>"
        + ", ".join(f"{e(names[n])} ({rates[c, n]:.2f})" for n in neighbours[c]) + "</td></tr>"
        for c in F.shown_classes(confusion, limit=size if size <= 100 else 50))
    table = ("<table class=\"neighbours\"><caption>Contrast neighbours (row rates)</caption><thead><tr>"
             "<th scope=\"col\">class</th><th scope=\"col\">correct</th>"
             f"<th scope=\"col\">most confused with (top {k})</th></tr></thead><tbody>{rows}</tbody></table>")
    return figure + table


def _metadata_section(run: Run) -> str:
    meta = dict(run.meta)
    names = meta.pop("class_names", None)
    sample = meta.pop("sample", None)
    if names:
        meta["class_names"] = f"{len(names)} classes: " + ", ".join(map(str, names[:10])) + (
            ", …" if len(names) > 10 else "")
    if sample is not None:
        meta["sample"] = f"{len(sample)} dataset indices"
    return ("<h3>Configuration (config.json)</h3>" + key_values(run.config, skip=("command",))
            + "<h3>Provenance (meta.json)</h3>" + key_values(meta))


def run_title(run: Run) -> str:
    return f"{run.kind} run: {run.model} on {run.config.get('dataset')}"


def run_subtitle(run: Run) -> str:
    config = run.config
    return (f"layer {e(config.get('layer'))} · {len(run.methods)} methods · "
            f"{len({row['image_id'] for row in run.rows})} images · seed {e(config.get('seed'))} · "
            f"{e(contrast_line(config))}")


def _verdict_section(summary: dict) -> str:
    """The verdict lines of a run (every method against Grad-CAM on the same images: agreement for a
    diagnose run, the deletion and insertion AUC for a fidelity run), first on the page; empty for runs
    without the baseline."""
    lines = summary.get("verdicts") or []
    if not lines:
        return ""
    versus = summary["versus_baseline"]
    margin, baseline = float(versus["margin"].iloc[0]), display_name(str(versus["baseline"].iloc[0]))
    items = "".join(f"<li>{e(line)}</li>" for line in lines)
    if summary.get("kind") == "fidelity":
        return (f'<ul class="verdicts">{items}</ul><p class="note">Each method against {e(baseline)} on the images '
                "both scored, on the primary fidelity measures: the deletion AUC (lower = the class probability "
                "falls sooner as the map's top pixels go: more faithful) and the insertion AUC (higher = more "
                "faithful); the mean paired difference with its bootstrap 95% interval, the paired two-sided "
                "t-test (p Holm-corrected across the run's comparisons), two one-sided t-tests for \"equal within "
                f"±{margin:g}\", and MDD the smallest difference this n detects with 80% power.</p>")
    return (f'<ul class="verdicts">{items}</ul><p class="note">Each method against {e(baseline)} '
            "on the images both scored: the mean paired difference of top-k% agreement (points; lower = more "
            "class-specific, the two classes' maps share fewer top pixels) with its bootstrap 95% interval; the "
            "paired two-sided t-test of that mean decides the direction (p Holm-corrected across the run's "
            f"comparisons), two one-sided t-tests decide \"equal within ±{margin:g} points\", and MDD is the smallest "
            "difference this n detects with 80% power. Neither shown: undetermined at this n.</p>")


def run_sections(run: Run, summary: dict, folder: Path, page_command: str | None = None
                  ) -> list[tuple[str, str, str]]:
    """(id suffix, heading, HTML) of one run's sections, empty ones left out. page_command: the
    command that rewrites this page (default: the report of this run alone)."""
    if not run.rows:
        table, plots = ("<p class=\"note\">results.csv has no rows yet: the run has not scored an image. "
                        "Resume it, then write the report again.</p>", "")
    elif run.kind == "diagnose":
        table, plots = _diagnose_sections(run, summary, folder)
    else:
        table, plots = _fidelity_sections(run, summary, folder)
    command = run.config.get("command") or "(not recorded)"
    page = (f"<p>This page:</p><pre><code>{e(page_command)}</code></pre>" if page_command else
            f"<p>Its page alone:</p><pre><code>case-saliency report {e(run.path)}</code></pre>")
    reproduce = f"<p>The run:</p><pre><code>{e(command)}</code></pre>{page}"
    sections = [("verdicts", "Verdicts", _verdict_section(summary)), ("summary", "Summary", table),
                ("figures", "Figures", plots),
                ("gallery", "Gallery", _gallery_section(run, folder)),
                ("confusion", "Confusion and contrast neighbours", _confusion_section(run, folder)),
                ("metadata", "Metadata", _metadata_section(run)), ("reproduce", "Reproduce", reproduce)]
    return [(key, name, body) for key, name, body in sections if body]


def combined_rows(runs: Sequence[Run], summaries: Sequence[dict]) -> list[dict]:
    """One row per (model, method) over several runs: the agreement test of the diagnose runs (at
    their first k) next to the fidelity means, so a method's class sensitivity and faithfulness
    read side by side."""
    rows: dict[tuple[str, str], dict] = {}
    for run, summary in zip(runs, summaries, strict=False):
        if run.kind == "diagnose":
            table = records(summary["agreement"])
            first_k = min((r["k_percent"] for r in table), default=None)
            for r in table:
                if r["k_percent"] != first_k:
                    continue
                row = rows.setdefault((run.model, r["method"]), {"model": run.model, "method": r["method"]})
                p_key = "p_holm" if "p_holm" in r else "pvalue"
                row.update({"k_percent": r["k_percent"], "n_agreement": r["n"], "mean": r["mean"], "sd": r["sd"],
                            "statistic": r["statistic"], "p": r[p_key], "conclusion": r["conclusion"]})
        else:
            for r in records(summary["fidelity"]):
                row = rows.setdefault((run.model, r["method"]), {"model": run.model, "method": r["method"]})
                row.update({"n_fidelity": r["n"], "drop": r["drop_relative_mean"], "drop_sd": r["drop_relative_sd"],
                            "deletion": r["deletion_auc_mean"], "insertion": r["insertion_auc_mean"],
                            "contrastive": r.get("contrastive_drop_mean", math.nan),
                            "drop_random": r.get("drop_relative_random", math.nan)})
    return list(rows.values())


def combined_table(runs: Sequence[Run], summaries: Sequence[dict]) -> str:
    rows = combined_rows(runs, summaries)
    ks = sorted({row["k_percent"] for row in rows if "k_percent" in row})
    k_text = "/".join(f"{k:g}" for k in ks)
    count = lambda v: "–" if v is None or v != v else str(int(v))  # noqa: E731 (NaN-safe count)
    columns = [Column("Model", "model", str), Column("Method", "method", str),
               Column("N (diagnose)", "n_agreement", count),
               Column(f"Agreement mean % at k={k_text}", "mean", lambda v: number(v, 1), "low"),
               Column("SD", "sd", lambda v: number(v, 1)), Column("Wilcoxon W", "statistic", lambda v: number(v, 1)),
               Column("p", "p", number, "low", "one-sided Wilcoxon signed-rank, H1: median < threshold"),
               Column("Conclusion", "conclusion", lambda v: "–" if v is None else str(v), text=True),
               Column("N (fidelity)", "n_fidelity", count),
               Column("Deletion AUC", "deletion", number, "low"), Column("Insertion AUC", "insertion", number, "high")]
    if any(math.isfinite(to_float(row.get("contrastive"))) for row in rows):
        columns.append(Column("Contrastive drop", "contrastive", number, "high",
                              "logit top-1 − logit top-2 lost when the top of the top-1 map is blurred"))
    columns += [Column("Relative drop (secondary)", "drop", number, "high"), Column("SD", "drop_sd", number)]
    if any(math.isfinite(to_float(row.get("drop_random"))) for row in rows):
        columns.append(Column("Random maps' drop", "drop_random", number,
                              title="the random-map control's relative drop on the same images"))
    note = ("<p class=\"note\">One row per model and method, from the runs below. ★ marks the lowest agreement "
            "within each model where that method's test rejects (↓ lower is better, ↑ higher; the fidelity run's "
            "paired tests are in its own section). Low agreement means class-sensitive maps; "
            "a high drop, low deletion and high insertion AUC mean faithful maps. A contrastive method whose "
            "contrast set holds the other compared class (see each run's 'In contrast %') lowers agreement by "
            "construction: read both halves together.</p>")
    alpha = min((float(s.get("alpha") or 0.05) for s in summaries), default=0.05)
    return table_html(rows, columns, groups=[row["model"] for row in rows],
                      caption="Class sensitivity and fidelity, per model and method",
                      star=lambda row, column: column.key == "mean" and _as_p(row.get("p")) < alpha) + note
