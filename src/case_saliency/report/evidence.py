"""Reports of the evidence folders: a planted ground truth (`case-saliency planted --out DIR`) and the
sanity checks (`case-saliency sanity --out DIR`), each one self-contained HTML page (the run
report's page and style, figures embedded as PNG and written as PNG and PDF to ``figures/``).

- **planted**: per method the planted contrast and the grid pointing score with their 95 %
  intervals (a dot-and-whisker figure), the table of all four scores, and a gallery of four
  patched images, the patch outlined, with each method's maps of the patch class and of the
  garment class, redrawn from the folder's checkpoint (loaded with ``weights_only=True``);
- **sanity**: per method the similarity of the maps to the trained model's (Spearman, SSIM, top-k
  overlap) against the cascading-randomisation step (Adebayo et al.'s figure), the randomised
  models' top-1/top-2 agreement, and per method whether a randomised or shuffled-label model still
  passes the class-sensitivity test.

:func:`evidence_kind` tells the folders apart from run directories, for `report` and `summarize`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..runs.store import RunDirError, atomic_write
from . import figures as F
from .figures import method_title
from .page import _page
from .tables import Column, e, key_values, number, table_html

KINDS = ("planted", "sanity")
GALLERY_IMAGES = 4


def _figure(fig: Figure, folder: Path, stem: str, alt: str, caption: str) -> str:
    """Save ``fig`` as ``folder/stem.png`` and ``.pdf`` (``figures.save_figure``) and return a
    <figure> with the PNG embedded; ``caption`` is HTML."""
    png, pdf = F.save_figure(fig, folder, stem)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(alt)}"><figcaption>{caption} '
            f'<span class="files">({e(png.name)}, {e(pdf.name)} in {e(folder.name)}/)</span></figcaption></figure>')


def _read_summary(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / "summary.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path}: not readable JSON ({error}); rerun the command that wrote it") from None
    return data if isinstance(data, dict) else None


def evidence_kind(folder: str | Path) -> str | None:
    """Which evidence folder ``folder`` is: "planted" (summary.json with the training's settings and
    a summary per method), "planted-seeds" (`planted --seeds`: the seeds pooled, a planted folder per
    seed inside), "sanity" (summary.json with a list of per-step entries), or None (e.g. a
    run directory of `diagnose` or `fidelity`, which has config.json).

    Raises:
        RunDirError: a summary.json that is not JSON.
    """
    folder = Path(folder)
    if not folder.is_dir() or (folder / "config.json").exists():
        return None
    data = _read_summary(folder)
    if data is None:
        return None
    summary = data.get("summary")
    if "planted" in data and isinstance(summary, dict):
        return "planted"
    if isinstance(data.get("seeds"), list) and isinstance(data.get("pooled"), dict):
        return "planted-seeds"
    if isinstance(summary, list) and all(isinstance(s, dict) and "step" in s and "passes" in s for s in summary):
        return "sanity"
    return None


def _nan(value: Any) -> Any:
    """JSON's null (how NaN was written) back to NaN, in nested dicts and lists."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {key: _nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan(item) for item in value]
    return value


def _load(folder: Path, kind: str) -> dict[str, Any]:
    if evidence_kind(folder) != kind:
        raise RunDirError(f"{folder}: not a folder written by `case-saliency {kind} --out` (its summary.json is "
                          "missing or of another kind)")
    data = _read_summary(folder)
    assert data is not None
    data["summary"] = _nan(data["summary"])
    return data


def interval(value: Mapping[str, float], digits: int = 3) -> str:
    """'mean [low, high]' as the planted summary prints it ('–' where undefined)."""
    mean, low, high = (number(value.get(key), digits) for key in ("mean", "low", "high"))
    return f"{mean} [{low}, {high}]"


# ---------------------------------------------------------------- planted

PLANTED_SCORES = (("contrast", "planted contrast", "patch map on the patch − garment map on the patch", 0.0,
                   "0: both maps in one place"),
                  ("focus", "grid pointing (2×2 mosaics)", "share of a quadrant's class's map in that quadrant", 0.25,
                   "chance 0.25"))


def forest_figure(summary: Mapping[str, Mapping[str, Any]],
                  scores: Sequence[tuple[str, str, str, float, str]] = PLANTED_SCORES) -> Figure:
    """A dot-and-whisker (forest) figure: one panel per score, one row per method, the mean and its
    95 % interval; a dotted line at each score's reference (no contrast, chance).

    Args:
        summary: {method: {score: {"mean", "low", "high"}}} (``workflows.planted.summarise``).
        scores: (key, title, x label, reference value, reference label) per panel.
    Returns:
        The figure; an undefined score is marked "n/a" on its row.
    """
    methods = list(summary)
    colours = F.method_colours(len(methods))
    with rc_context(F.STYLE):
        fig = Figure(figsize=(4.2 * len(scores), 0.9 + 0.42 * max(len(methods), 1)), layout="constrained")
        axes = fig.subplots(1, len(scores), sharey=True, squeeze=False)[0]
        for ax, (key, title, label, reference, reference_label) in zip(axes, scores, strict=True):
            for row, method in enumerate(methods):
                value = summary[method].get(key, {})
                mean, low, high = (float(value.get(k, math.nan)) for k in ("mean", "low", "high"))
                y = len(methods) - 1 - row
                if not math.isfinite(mean):
                    ax.text(0.5, y, "n/a (none scored)", va="center", ha="center", color="#666666", fontsize=8,
                            transform=ax.get_yaxis_transform())
                    continue
                if math.isfinite(low) and math.isfinite(high):
                    ax.hlines(y, low, high, color=colours[row], linewidth=2.2)
                ax.plot([mean], [y], marker=F.MARKERS[row % len(F.MARKERS)], color=colours[row], markersize=7,
                        linestyle="none")
            ax.axvline(reference, color="#555555", linestyle=":", linewidth=1.0)
            ax.annotate(reference_label, (reference, 0.0), xycoords=("data", "axes fraction"), fontsize=8,
                        color="#555555", ha="left", va="bottom", xytext=(3, 2), textcoords="offset points")
            low_limit = min([reference - 0.05] + [float(summary[m].get(key, {}).get("low", math.nan))
                                                  for m in methods if math.isfinite(float(summary[m].get(key, {})
                                                                                          .get("low", math.nan)))])
            ax.set_xlim(max(low_limit, -1.0), 1.0)
            ax.set_title(title)
            ax.set_xlabel(label)
            ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        axes[0].set_yticks(range(len(methods)), [method_title(m) for m in reversed(methods)])
        axes[0].set_ylim(-0.6, len(methods) - 0.4)
    return fig


def _gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8."""
    return np.repeat((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def planted_gallery_figure(items: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> Figure:
    """Patched images and each method's two maps: per image an upper row (the patch class's map) and a
    lower row (the garment class's map), the image in the first column, the patch outlined in every
    panel (cyan on the image, white on the maps), the scored share over each map.

    Args:
        items: per image {"pixels": (H, W) in [0, 1] patched, "patch": (row, col, size), "garment": the
            garment class's name, "probs": (patch class p, garment class p), "maps": {method: (2, H, W)},
            "shares": {method: (patch share, garment share)}}.
        methods: the methods' order (columns).
    Returns:
        The figure.
    """
    columns = 1 + len(methods)
    with rc_context(F.STYLE):
        fig = Figure(figsize=(1.25 * columns + 0.9, 2.55 * max(len(items), 1)), layout="constrained")
        grid = fig.add_gridspec(2 * max(len(items), 1), columns)
        for n, item in enumerate(items):
            image = _gray(np.asarray(item["pixels"], dtype=np.float64))
            row, col, size = item["patch"]
            photo = fig.add_subplot(grid[2 * n:2 * n + 2, 0])
            photo.imshow(image)
            photo.add_patch(Rectangle((col - 0.5, row - 0.5), size, size, fill=False, edgecolor="cyan", linewidth=1.4))
            photo.set_title(f"{item['image_id']}\n{item['garment']}", fontsize=8)
            photo.set_axis_off()
            for j, method in enumerate(methods, start=1):
                for half in range(2):
                    ax = fig.add_subplot(grid[2 * n + half, j])
                    values = np.nan_to_num(np.asarray(item["maps"][method][half], dtype=np.float64))
                    top = values.max()
                    ax.imshow(F.overlay(image, values / top if top > 0 else values))
                    ax.add_patch(Rectangle((col - 0.5, row - 0.5), size, size, fill=False, edgecolor="white",
                                           linewidth=1.0))
                    ax.set_xticks([])
                    ax.set_yticks([])
                    share = item["shares"][method][half]
                    where = "on patch" if half == 0 else "on garment"
                    heading = f"{method_title(method)}\n" if n == 0 and half == 0 else ""
                    ax.set_title(f"{heading}{where} {number(share, 2)}", fontsize=8)
                    if j == 1:
                        name = "patch class" if half == 0 else F._short(str(item["garment"]), 14)
                        ax.set_ylabel(f"{name}\np = {item['probs'][half]:.2f}", fontsize=8)
    return fig


def _planted_gallery(folder: Path, data: Mapping[str, Any], figures: Path, root: str | Path | None) -> str:
    """The gallery's HTML: up to four images whose top-1/top-2 are the patch and garment classes,
    redrawn with the folder's checkpoint; a note instead where the checkpoint or the data is missing,
    and a warning where the redrawn maps' shares differ from the scored ones."""
    import pandas as pd
    import torch

    from ..data.fashion_mnist import CLASS_NAMES, FashionMNIST
    from ..metrics.planted import planted_evidence
    from ..workflows.planted import (GARMENT_THRESHOLD, PATCH_CLASS, build_methods, load_planted, normalise,
                                     patch_pattern)

    checkpoint = folder / str(data.get("checkpoint", ""))
    if not checkpoint.is_file():
        return f'<p class="note">No gallery: the checkpoint {e(checkpoint.name)} is not in the folder.</p>'
    try:
        test = FashionMNIST("test", root)
    except (FileNotFoundError, ValueError) as error:
        return f'<p class="note">No gallery: the Fashion-MNIST test split is not readable ({e(error)}).</p>'
    rows = pd.read_csv(folder / "rows.csv")
    methods = [m for m in dict.fromkeys(rows["method"]) if m in data["summary"]]
    ok = rows[rows["planted_ok"].astype(bool)]
    chosen = list(dict.fromkeys(ok["image_id"]))[:GALLERY_IMAGES]
    if not chosen:
        return '<p class="note">No gallery: no image had the patch class as top-1 and its garment as top-2.</p>'
    if not all(str(i).startswith("test:") and str(i)[5:].isdigit() for i in chosen):
        return f'<p class="note">No gallery: image ids {e(chosen)} are not of the test split ("test:N").</p>'
    size = int(data.get("planted", {}).get("patch_size", 8))
    model = load_planted(checkpoint)  # torch.load(weights_only=True)
    try:
        built = build_methods(model, methods)
    except (ValueError, KeyError) as error:
        return f'<p class="note">No gallery: the methods cannot be built again ({e(error)}).</p>'
    first = ok.drop_duplicates("image_id").set_index("image_id").loc[chosen]
    images, _ = test.tensors()
    clean = images[[int(str(i)[5:]) for i in chosen]]  # (B, 1, H, W) in [0, 1]
    patched = clean.clone()
    masks = torch.zeros_like(clean[:, 0], dtype=torch.bool)  # (B, H, W): the patch, as planted_rows scores it
    for i, (row, col) in enumerate(zip(first["patch_row"].astype(int), first["patch_col"].astype(int), strict=True)):
        patched[i, 0, row:row + size, col:col + size] = patch_pattern(size)
        masks[i, row:row + size, col:col + size] = True
    labels = torch.tensor(first["label"].astype(int).tolist())
    targets = torch.stack([torch.full_like(labels, PATCH_CLASS), labels], dim=1)
    inputs = normalise(patched)
    maps = {m: method.explain(inputs, targets, relu=True, normalize=False).maps.detach().float().cpu()
            for m, method in built.items()}
    shares, differ = {}, []
    for m in methods:
        scores = planted_evidence(maps[m][:, 0], maps[m][:, 1], masks, clean[:, 0] > GARMENT_THRESHOLD)
        shares[m] = (scores.patch_share.numpy(), scores.garment_share.numpy())
        stored = rows[rows["method"] == m].drop_duplicates("image_id").set_index("image_id").loc[chosen, "patch_share"]
        if not np.allclose(shares[m][0], stored.to_numpy(dtype=np.float64), atol=1e-3, equal_nan=True):
            differ.append(m)
    items = [{"image_id": image_id, "pixels": patched[i, 0].numpy(), "patch": (int(first["patch_row"].iloc[i]),
                                                                               int(first["patch_col"].iloc[i]), size),
              "garment": CLASS_NAMES[int(labels[i])],
              "probs": (float(first["prob1"].iloc[i]), float(first["prob2"].iloc[i])),
              "maps": {m: maps[m][i].numpy() for m in methods},
              "shares": {m: (float(shares[m][0][i]), float(shares[m][1][i])) for m in methods}}
             for i, image_id in enumerate(chosen)]
    note = ""
    if differ:
        note = (f'<p class="note">The redrawn maps of {e(", ".join(differ))} do not give the scored patch shares '
                "(rows.csv): the library changed since the folder was written; rerun `case-saliency planted`.</p>")
    caption = (f"The first {len(items)} scored images whose top-1 is the patch class and top-2 their garment's class "
               "(patch outlined). Upper row: the patch class's map and its share on the patch; lower row: the garment "
               "class's map and its share on the garment outside the patch. A class-sensitive method puts the two "
               "maps in different places. Maps redrawn from the folder's checkpoint, each scaled to its maximum.")
    return note + _figure(planted_gallery_figure(items, methods), figures, "planted-gallery",
                          "planted gallery: patched images and each method's two maps", e(caption))


def _same(a: Any, b: Any, tolerance: float = 1e-6) -> bool:
    """Whether two summaries hold the same numbers (to ``tolerance``: float32 maps computed by two
    methods differ in the last bits), NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key], tolerance) for key in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance
    return bool(a == b)


def planted_sections(folder: Path, figures: Path, root: str | Path | None = None) -> tuple[str, str, list]:
    """(title, subtitle, sections) of a planted folder's page."""
    data = _load(folder, "planted")
    summary: dict[str, dict[str, Any]] = data["summary"]
    settings = data.get("planted", {})
    area = 100.0 * int(settings.get("patch_size", 8)) ** 2 / 784
    share_ok = data.get("planted_ok_share")
    ok_text = f"{100 * share_ok:.0f} %" if isinstance(share_ok, (int, float)) and math.isfinite(share_ok) else "–"
    lines = []
    for method, entry in summary.items():
        lines.append(f"<li><b>{e(method_title(method))}</b>: planted contrast {e(interval(entry['contrast']))}, "
                     f"grid pointing {e(interval(entry['focus']))}</li>")
    verdict = (f"<p>How well each method separates two classes whose evidence is known by construction: a patch "
               f"(an {int(settings.get('patch_size', 8))}×{int(settings.get('patch_size', 8))} checkerboard, "
               f"{area:.0f} % of the image) that makes an 11th class, pasted on a garment. The <b>planted contrast</b> "
               "is the share of the patch class's map on the patch minus the share of the garment class's map on the "
               "patch: "
               "0 when both maps sit in the same place (the method does not tell the classes apart), 1 when the "
               "patch class's map is all on the patch and the garment class's nowhere on it. The <b>grid pointing</b> "
               "score is the share of a class's map inside its quadrant of a 2×2 mosaic of four classes (chance 0.25). "
               "Means over images with seeded bootstrap 95 % intervals.</p>"
               f"<ul>{''.join(lines)}</ul>")
    figure = _figure(forest_figure(summary), figures, "planted-forest", "planted contrast and grid pointing",
                     "Per method, the mean (dot) and its bootstrap 95 % interval (whisker). Dotted: no contrast "
                     "(left), chance (right).")
    columns = [Column("Method", "method", str),
               Column("N", "n", lambda v: str(int(v)), title="images with top-1/top-2 = patch and garment class"),
               Column("Planted contrast [95 %]", "contrast", interval),
               Column("Patch share", "patch_share", interval, title="the patch class's map on the patch"),
               Column("Garment share", "garment_share", interval,
                      title="the garment class's map on the garment outside the patch"),
               Column("Grid pointing [95 %]", "focus", interval, title="chance 0.25"),
               Column("Quadrants", "quadrants", str, title="mosaic quadrants scored")]
    table_rows = [{"method": m, **entry, "n": entry.get("n", 0),
                   "quadrants": str(int(entry["focus"].get("n", 0))) if isinstance(entry.get("focus"), dict) else "0"}
                  for m, entry in summary.items()]
    table = table_html(table_rows, columns, caption=f"Scored images: {e(data.get('n', '–'))} patched, of which "
                       f"{ok_text} had top-1 = patch class and top-2 = the garment's class; "
                       f"{e(data.get('n_mosaics', '–'))} mosaics.")
    same: dict[str, list[str]] = {}
    for i, method in enumerate(summary):
        if not any(method in later for later in same.values()):
            twins = [m for m in list(summary)[i + 1:] if _same(summary[m], summary[method])]
            if twins:
                same[method] = twins
    if same:
        pairs = "; ".join(f"{', '.join(method_title(m) for m in twins)} = {method_title(first)}"
                          for first, twins in same.items())
        table += (f'<p class="note">The same numbers on every score: {e(pairs)} (at a layer that feeds a global '
                  "average pool and a linear head, HiResCAM's and XGrad-CAM's weights equal Grad-CAM's up to scale)."
                  "</p>")
    gallery = _planted_gallery(folder, data, figures, root)
    meta = key_values({k: v for k, v in data.items() if k != "summary"})
    sections = [("verdict", "Planted evidence", verdict + figure, 2), ("table", "Table", table, 2),
                ("gallery", "Gallery", gallery, 2), ("meta", "Settings", meta, 2)]
    title = f"Planted ground truth: {data.get('checkpoint', folder.name)}"
    subtitle = e(f"seed {data.get('seed', '–')} · {data.get('n', '–')} patched test images · "
                 f"{data.get('n_mosaics', '–')} mosaics · {settings.get('steps', '–')} training steps")
    return title, subtitle, sections


# ---------------------------------------------------------------- sanity

SIMILARITIES = (("spearman", "Spearman rank correlation", 0.0), ("ssim", "SSIM", 0.0),
                ("topk", "top-k % overlap", None))


def _order(summary: Sequence[Mapping[str, Any]]) -> tuple[list[int], dict[int, str]]:
    """The cascade's steps (0 = the trained model, shuffled-label model last) and their layer names."""
    names = {int(s["step"]): str(s["layer"]) for s in summary}
    steps = sorted(s for s in names if s >= 0)
    return steps, names


def cascade_figure(summary: Sequence[Mapping[str, Any]], rows: Any = None, k: float = 5.0,
                   threshold: float = 50.0) -> Figure:
    """Adebayo et al.'s cascading-randomisation figure: per similarity (Spearman, SSIM, top-k overlap)
    of a method's top-1 map to the trained model's, the median against the cascade step (the layers
    randomised so far, from the logits end down), one line per method, the interquartile band from
    the rows; the shuffled-label model as a separate point at the right; a fourth panel with the
    model's own top-1/top-2 agreement and the class-sensitivity threshold.

    Args:
        summary: ``workflows.sanity.summarise``'s entries. rows: the per-image rows (a DataFrame) for
            the bands, or None. k: the top share (percent): the overlap of unrelated maps. threshold:
            the agreement threshold (percent).
    Returns:
        The figure.
    """
    steps, names = _order(summary)
    methods = list(dict.fromkeys(str(s["method"]) for s in summary))
    colours = F.method_colours(len(methods))
    shuffled = any(int(s["step"]) == -1 for s in summary)
    x_of: dict[int, float] = {step: float(i) for i, step in enumerate(steps)}
    if shuffled:
        x_of[-1] = len(steps) + 0.6
    panels = [*SIMILARITIES, ("agreement", "top-1/top-2 agreement % (own maps)", threshold)]
    with rc_context(F.STYLE):
        fig = Figure(figsize=(13.5, 4.3), layout="constrained")
        axes = fig.subplots(1, len(panels), sharex=True)
        for ax, (key, label, reference) in zip(axes, panels, strict=True):
            column = "mean_agreement" if key == "agreement" else f"median_{key}"
            for i, method in enumerate(methods):
                entries = {int(s["step"]): s for s in summary if s["method"] == method}
                xs = [x_of[s] for s in steps if s in entries]
                ys = [float(entries[s][column]) for s in steps if s in entries]
                style = dict(color=colours[i], marker=F.MARKERS[i % len(F.MARKERS)], markersize=5)
                ax.plot(xs, ys, linestyle=F.LINE_STYLES[i % len(F.LINE_STYLES)], label=method_title(method),
                        **style)  # type: ignore[arg-type]
                if rows is not None and key != "agreement":
                    chosen = rows[rows["method"] == method]
                    quartiles = [np.nanpercentile(chosen[chosen["step"] == s][key].to_numpy(dtype=np.float64),
                                                  [25, 75]) if np.isfinite(chosen[chosen["step"] == s][key]
                                                                           .to_numpy(dtype=np.float64)).any()
                                 else (math.nan, math.nan) for s in steps if s in entries]
                    if quartiles:
                        band = np.asarray(quartiles)
                        ax.fill_between(xs, band[:, 0], band[:, 1], color=colours[i], alpha=0.12, linewidth=0)
                if -1 in entries:
                    ax.plot([x_of[-1]], [float(entries[-1][column])], linestyle="none", markerfacecolor="white",
                            **style)  # type: ignore[arg-type]
            line = k if key == "topk" else reference
            if line is not None:
                ax.axhline(line, color="#555555", linestyle=":", linewidth=1.0)
            ax.set_title(label)
            ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ticks = [x_of[s] for s in steps] + ([x_of[-1]] if shuffled else [])
        labels = [names[s] if s > 0 else "trained" for s in steps] + (["shuffled labels"] if shuffled else [])
        for ax in axes:
            ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7.5)
        axes[0].set_ylabel("median over images (band: quartiles)")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=min(len(methods), 8),
                   frameon=False)
        fig.supxlabel("randomised from the logits end down to this layer (open marker: the shuffled-label model)",
                      fontsize=9)
    return fig


def pass_table_rows(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per method: whether the trained, the fully randomised and the shuffled-label model pass the
    class-sensitivity test (with p), how many randomised steps pass, and what that means."""
    out = []
    steps, _ = _order(summary)
    for method in dict.fromkeys(str(s["method"]) for s in summary):
        entries = {int(s["step"]): s for s in summary if s["method"] == method}
        trained = entries.get(0)
        randomised = [entries[s] for s in steps if s > 0 and s in entries]
        last = randomised[-1] if randomised else None
        shuffled = entries.get(-1)
        random_passes = [r for r in randomised if r["passes"]] + ([shuffled] if shuffled and shuffled["passes"] else [])

        def verdict_of(entry: Mapping[str, Any] | None) -> str:
            return "–" if entry is None else f"{'yes' if entry['passes'] else 'no'} (p = {number(entry['p_below'])})"

        if trained is None or not trained["passes"]:
            meaning = "does not pass on the trained model"
        elif random_passes:
            meaning = "passes on a random model too: its pass means nothing"
        else:
            meaning = "passes on the trained model only: the pass reflects what the model learned"
        out.append({"method": method, "trained": verdict_of(trained), "randomised": verdict_of(last),
                    "steps": f"{sum(r['passes'] for r in randomised)} of {len(randomised)}",
                    "shuffled": verdict_of(shuffled), "meaning": meaning})
    return out


def _sanity_summary(folder: Path, data: dict[str, Any], rows: Any, threshold: float | None,
                    alpha: float | None) -> list[dict[str, Any]]:
    """The folder's summary, or (``threshold``/``alpha`` given) its verdicts recomputed from rows.csv;
    ``data``'s threshold and alpha are updated to those used."""
    if threshold is None and alpha is None:
        return list(data["summary"])
    if rows is None:
        raise RunDirError(f"{folder / 'rows.csv'} is missing: --threshold/--alpha recompute the verdicts from it")
    from ..workflows.sanity import summarise

    data["threshold"] = threshold if threshold is not None else data.get("threshold", 50.0)
    data["alpha"] = alpha if alpha is not None else data.get("alpha", 0.05)
    return summarise(rows.to_dict(orient="records"), float(data["threshold"]), float(data["alpha"]))


def sanity_sections(folder: Path, figures: Path, threshold: float | None = None, alpha: float | None = None
                    ) -> tuple[str, str, list]:
    """(title, subtitle, sections) of a sanity folder's page; ``threshold``/``alpha`` recompute the
    verdicts from rows.csv."""
    import pandas as pd

    data = _load(folder, "sanity")
    rows = pd.read_csv(folder / "rows.csv") if (folder / "rows.csv").is_file() else None
    summary = _sanity_summary(folder, data, rows, threshold, alpha)
    k, cut = float(data.get("k", 5.0)), float(data.get("threshold", 50.0))
    figure = _figure(cascade_figure(summary, rows, k, cut), figures, "sanity-cascade",
                     "cascading randomisation: similarity to the trained model's maps per step",
                     f"Similarity of each method's top-1 map on a randomised model to its map on the trained model "
                     f"(median over {e(data.get('n', '–'))} images, band: quartiles), against how far the weights are "
                     f"randomised. A method whose maps depend on the model falls to 0 (Spearman, SSIM) or to {k:g} % "
                     "(top-k overlap, unrelated maps) from the first step. Right panel: the model's own top-1/top-2 "
                     f"agreement; below the dotted {cut:g} % it can pass the class-sensitivity test.")
    verdicts = pass_table_rows(summary)
    passes = table_html(verdicts, [
        Column("Method", "method", str), Column("Trained model passes", "trained", str),
        Column("Fully randomised passes", "randomised", str), Column("Randomised steps passing", "steps", str),
        Column("Shuffled-label model passes", "shuffled", str), Column("What it means", "meaning", str)],
        caption=e(f"The class-sensitivity test (one-sided Wilcoxon of the top-1/top-2 agreement below {cut:g} %, "
                  f"p < {float(data.get('alpha', 0.05)):g}) on the trained model and on the randomised ones."))
    hollow = [row["method"] for row in verdicts if row["meaning"].startswith("passes on a random")]
    headline = (f"<p><b>{len(hollow)} of {len(verdicts)} methods pass the class-sensitivity test on a randomised or "
                f"shuffled-label model too</b>{': ' + e(', '.join(method_title(m) for m in hollow)) if hollow else ''}."
                " A method that passes on a random model: its pass means nothing (its top-1 and top-2 maps disagree "
                "whatever the model has learned).</p>")
    explanation = ("<p>The sanity checks of Adebayo et al. (NeurIPS 2018): a saliency method should explain the model, "
                   "so its maps should change when the model's weights are randomised (from the logits end down) or "
                   "when the model is trained on shuffled labels.</p>")
    full = table_html(summary, [
        Column("Method", "method", str), Column("Step", "step", lambda v: str(int(v))),
        Column("Randomised down to", "layer", str), Column("N", "n", lambda v: str(int(v))),
        Column("Spearman", "median_spearman", number), Column("SSIM", "median_ssim", number),
        Column("Top-k %", "median_topk", lambda v: number(v, 1)),
        Column("Agreement %", "mean_agreement", lambda v: number(v, 1)), Column("p", "p_below", number),
        Column("Passes", "passes", lambda v: "yes" if v else "no")],
        caption="Every step: medians of the similarities to the trained model's maps, the mean agreement, the test.")
    model = data.get("model", {})
    name = model.get("name", "model") if isinstance(model, dict) else str(model)
    meta = key_values({key: value for key, value in data.items() if key != "summary"})
    sections = [("passes", "Does a random model still pass?", headline + passes + explanation, 2),
                ("cascade", "Cascading randomisation", figure, 2), ("table", "Every step", full, 2),
                ("meta", "Settings", meta, 2)]
    subtitle = e(f"{data.get('data', '–')} · {data.get('n', '–')} images · top {k:g} % · seed {data.get('seed', '–')}"
                 + (f" · shuffled-label model {Path(str(data['shuffled'])).name}" if data.get("shuffled") else ""))
    return f"Sanity checks: {name}", subtitle, sections


# ---------------------------------------------------------------- the page and the text summary

def write_evidence_report(folder: str | Path, out: str | Path | None = None, *, threshold: float | None = None,
                          alpha: float | None = None, root: str | Path | None = None) -> Path:
    """Write the self-contained report of a planted or sanity folder and return its path.

    Args:
        folder: written by `case-saliency planted --out` or `case-saliency sanity --out`.
        out: the HTML file (default ``folder/report.html``); figures go to ``figures/`` beside it.
        threshold, alpha: sanity only: recompute the class-sensitivity verdicts.
        root: the Fashion-MNIST folder for the planted gallery (default: the usual place).
    Returns:
        The page's path.
    Raises:
        RunDirError: not an evidence folder, or --threshold/--alpha given for a planted folder.
    """
    folder = Path(folder)
    kind = evidence_kind(folder)
    target = Path(out) if out is not None else folder / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    figures = target.parent / "figures"
    if kind == "planted":
        if threshold is not None or alpha is not None:
            raise RunDirError(f"{folder} is a planted folder: --threshold and --alpha apply to sanity folders and runs")
        title, subtitle, sections = planted_sections(folder, figures, root)
    elif kind == "sanity":
        title, subtitle, sections = sanity_sections(folder, figures, threshold, alpha)
    elif kind == "planted-seeds":
        raise RunDirError(f"{folder} holds several planted seeds: report each seed's folder ({folder}/seed-S); "
                          f"`case-saliency summarize {folder}` pools them")
    else:
        raise RunDirError(f"{folder}: not a planted or sanity folder (no summary.json of theirs)")
    options = "".join([f" --out {target}" if out is not None else "",
                       f" --threshold {threshold:g}" if threshold is not None else "",
                       f" --alpha {alpha:g}" if alpha is not None else ""])
    sections.append(("reproduce", "This page", f"<pre><code>{e(f'case-saliency report {folder}{options}')}"
                     "</code></pre>", 2))
    atomic_write(target, _page(title, subtitle, sections))
    return target


def evidence_summary(folder: str | Path, as_json: bool = False, threshold: float | None = None,
                     alpha: float | None = None) -> str | None:
    """The summary table of a planted or sanity folder as `summarize` prints it (the workflows'
    ``format_summary``), or as JSON (NaN as null); None for any other folder.

    Args:
        folder: the folder. as_json: JSON instead of the table. threshold, alpha: sanity only:
            recompute the class-sensitivity verdicts from rows.csv.
    Raises:
        RunDirError: --threshold/--alpha for a planted folder; an unreadable summary.json.
    """
    import pandas as pd

    folder = Path(folder)
    kind = evidence_kind(folder)
    if kind is None:
        return None
    if kind == "planted-seeds":
        if threshold is not None or alpha is not None:
            raise RunDirError(f"{folder} is a planted folder: --threshold and --alpha apply to sanity folders and runs")
        from ..workflows.planted import format_seeds_summary

        pooled = _read_summary(folder) or {}
        if as_json:
            return json.dumps({"kind": kind, "seeds": pooled.get("seeds"), "pooled": pooled.get("pooled")}, indent=2)
        return format_seeds_summary({"seeds": pooled["seeds"], "pooled": _nan(pooled["pooled"])})
    data = _load(folder, kind)
    if kind == "planted":
        if threshold is not None or alpha is not None:
            raise RunDirError(f"{folder} is a planted folder: --threshold and --alpha apply to sanity folders and runs")
        from ..workflows.planted import format_summary as planted_summary

        if as_json:
            return json.dumps({"kind": kind, "summary": (_read_summary(folder) or {}).get("summary")}, indent=2)
        return planted_summary(data["summary"])
    from ..workflows.sanity import format_summary as sanity_summary

    rows = pd.read_csv(folder / "rows.csv") if threshold is not None or alpha is not None else None
    summary = _sanity_summary(folder, data, rows, threshold, alpha)
    if as_json:
        strict = [{key: None if isinstance(value, float) and not math.isfinite(value) else value
                   for key, value in entry.items()} for entry in summary]
        return json.dumps({"kind": kind, "threshold": data.get("threshold"), "alpha": data.get("alpha"),
                           "summary": strict}, indent=2, allow_nan=False)
    return sanity_summary(summary)


__all__ = ["KINDS", "evidence_kind", "write_evidence_report", "evidence_summary", "forest_figure",
           "planted_gallery_figure", "cascade_figure", "pass_table_rows", "interval"]
