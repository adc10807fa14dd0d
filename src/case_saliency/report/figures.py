"""Figures of a run, drawn with matplotlib from plain arrays, saved as PNG (for the page) and PDF
(for papers).

Every function takes arrays and returns a ``matplotlib.figure.Figure`` (no pyplot state, no
global backend), so a test can read back what was drawn. Methods get distinct colour-blind-safe
hues, and lines also differ in style and marker, so the figures survive greyscale printing; heat
maps use cividis, saliency overlays jet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg", force=False)  # headless: the report never opens a window
import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.artist import Artist
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # matplotlib >= 3.9; only its stubs need it

# Readable at 100% on a screen and in a one-column paper figure.
METHOD_TITLES = {"gradcam": "Grad-CAM", "case": "CASE", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM",
                 "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM", "finercam": "Finer-CAM", "scorecam": "Score-CAM",
                 "eigencam": "EigenCAM", "ablationcam": "Ablation-CAM"}


def _map_panel(ax: Any, image: np.ndarray, values: np.ndarray, alpha: float, k_percent: float | None,
               title: str | None) -> None:
    """One map over its image, its top-k% outlined in white (not for a constant map), no ticks."""
    ax.imshow(overlay(image, values, alpha))
    if k_percent is not None and np.ptp(np.nan_to_num(values)) > 0:
        ax.contour(top_region(values, k_percent), levels=[0.5], colors="white", linewidths=1.1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)


def _agreement_title(method: str, titles: Mapping[str, str], agreement: Mapping[str, float | None]) -> str:
    """A method column's title: its name, and the agreement of its first two maps where one was computed."""
    share = agreement.get(method)
    text = "" if method not in agreement else (
        "\nagreement n/a" if share is None or not np.isfinite(share) else f"\nagreement {share:.0f}%")
    return f"{titles.get(method, method)}{text}"


def method_title(spec: str) -> str:
    """A method's display name: "Grad-CAM", "CASE", or the spec itself."""
    return METHOD_TITLES.get(spec, spec)


STYLE: dict[RcKeyType, Any] = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.dpi": 100, "savefig.dpi": 150,
         "axes.spines.top": False, "axes.spines.right": False, "pdf.fonttype": 42,
         "text.parse_math": False}  # names (classes, methods) are drawn as text: "$\foo$ x" is no mathtext
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
OVERLAY_CMAP = "jet"  # the overlay users know from pytorch-grad-cam
CONFUSION_CMAP = "cividis"


# Okabe and Ito's colour-blind-safe qualitative palette: methods get distinct hues (a sequential
# map made seven near-identical greens); line styles and markers tell them apart in greyscale.
METHOD_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


def method_colours(count: int) -> list[str]:
    """``count`` distinct colours, one per method (the palette repeats past eight)."""
    return [METHOD_PALETTE[i % len(METHOD_PALETTE)] for i in range(max(count, 1))]


def _grid(count: int, max_columns: int = 4) -> tuple[int, int]:
    columns = min(max(count, 1), max_columns)
    return int(np.ceil(max(count, 1) / columns)), columns


def _finite(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def agreement_histograms(agreement: Mapping[str, ArrayLike], threshold: float, k_percent: float = 5.0,
                         bin_width: float = 5.0) -> Figure:
    """One panel per method: histogram of top-k% agreement (percent) as relative frequency, so the
    bar heights of a panel sum to 1 over its finite values; NaN (degenerate pairs) are left out and
    counted in the title. The test's threshold is drawn as a vertical dashed line, the mean as a
    dotted one.

    agreement: {method: (N,) percentages}.
    """
    methods = list(agreement)
    rows, columns = _grid(len(methods))
    bins = np.arange(0.0, 100.0 + bin_width / 2, bin_width)
    with rc_context(STYLE):
        fig = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)).ravel()
        colour = method_colours(1)[0]
        for ax, method in zip(axes, methods, strict=False):
            values = _finite(agreement[method])
            nan_count = np.asarray(agreement[method], dtype=np.float64).size - values.size
            if values.size:
                ax.hist(values, bins=bins, weights=np.full(values.size, 1.0 / values.size), color=colour,
                        edgecolor="white", linewidth=0.5, label="images")
                ax.axvline(float(values.mean()), color="black", linestyle=":", linewidth=1.2,
                           label=f"mean {values.mean():.1f}")
            ax.axvline(threshold, color="black", linestyle="--", linewidth=1.5, label=f"threshold {threshold:g}")
            title = f"{method}: n={values.size}"
            title += f", mean {values.mean():.1f}" if values.size else ""
            title += f", {nan_count} degenerate" if nan_count else ""
            ax.set_title(title)
            ax.set_xlim(0, 100)
        for ax in axes[len(methods):]:
            ax.set_visible(False)
        # One legend for all panels, outside them (the bars can sit anywhere in 0-100); the means
        # differ per panel, so their entry is just "mean".
        entries: dict[str, Artist] = {}
        for ax in axes[: len(methods)]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=False):
                entries.setdefault("mean" if label.startswith("mean") else label, handle)
        order = ["images", "mean"] + [label for label in entries if label.startswith("threshold")]
        entries = {label: entries[label] for label in order if label in entries}
        if entries:
            fig.legend(list(entries.values()), list(entries), loc="outside upper center", ncol=len(entries),
                       frameon=False)
        fig.supxlabel(f"top-{k_percent:g}% agreement of the top-1 and top-2 maps (%)")
        fig.supylabel("relative frequency")
    return fig


def drop_boxplots(values: Mapping[str, ArrayLike], ylabel: str = "relative confidence drop") -> Figure:
    """Box plots of a per-image score (e.g. the relative confidence drop), one box per method, NaN
    left out. Boxes: quartiles; whiskers: 1.5 IQR; white diamond: the mean; the n under each name."""
    methods = list(values)
    data = [_finite(values[m]) for m in methods]
    colours = method_colours(len(methods))
    with rc_context(STYLE):
        fig = Figure(figsize=(max(4.0, 1.1 * len(methods) + 1.5), 3.4), layout="constrained")
        ax = fig.subplots()
        parts = ax.boxplot(data, patch_artist=True,
                           showmeans=True, widths=0.6,
                           meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                                      "gid": "mean"},
                           medianprops={"color": "black", "linewidth": 1.8, "gid": "median"},
                           flierprops={"marker": ".", "alpha": 0.6})
        ax.set_xticks(range(1, len(methods) + 1), [f"{m}\nn={d.size}" for m, d in zip(methods, data, strict=False)])
        for box, colour in zip(parts["boxes"], colours, strict=False):
            box.set_facecolor(colour)
            box.set_alpha(0.8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    return fig


def curve_band(curves: np.ndarray,
               limits: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the band mean +- 1 SD (ddof=1; zero width for one curve) of curves (N, S+1), NaN
    rows ignored, the band clipped to ``limits`` (probabilities: [0, 1]): (mean, lower, upper),
    each (S+1,)."""
    curves = np.asarray(curves, dtype=np.float64)
    curves = curves[np.isfinite(curves).all(axis=1)]
    mean = curves.mean(axis=0)
    sd = curves.std(axis=0, ddof=1) if curves.shape[0] > 1 else np.zeros_like(mean)
    return mean, np.clip(mean - sd, *limits), np.clip(mean + sd, *limits)


def deletion_insertion_curves(fractions: ArrayLike, deletion: Mapping[str, np.ndarray],
                              insertion: Mapping[str, np.ndarray]) -> Figure:
    """Two panels: deletion and insertion curves (class probability against the fraction of pixels
    removed / revealed), per method the mean curve over images with a band of mean +- 1 SD clipped
    to [0, 1] (see :func:`curve_band`).

    fractions: (S+1,); deletion, insertion: {method: (N, S+1)}.
    """
    x = np.asarray(fractions, dtype=np.float64)
    methods = list(dict.fromkeys([*deletion, *insertion]))
    colours = method_colours(len(methods))
    with rc_context(STYLE):
        fig = Figure(figsize=(9.0, 3.6), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, table, title, xlabel in ((axes[0], deletion, "deletion (lower is better)",
                                          "fraction of pixels removed"),
                                         (axes[1], insertion, "insertion (higher is better)",
                                          "fraction of pixels revealed")):
            for i, method in enumerate(methods):
                if method not in table or np.asarray(table[method]).size == 0:
                    continue
                mean, lower, upper = curve_band(table[method])
                ax.fill_between(x, lower, upper, color=colours[i], alpha=0.08, linewidth=0)
                ax.plot(x, mean, color=colours[i], linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                        marker=MARKERS[i % len(MARKERS)], markersize=3.5, linewidth=1.6, label=method)
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("class probability (mean, band ±1 SD)")
        for ax, where in ((axes[1], "lower right"), (axes[0], "upper right")):
            if ax.lines:  # one legend, on the insertion panel unless it is empty
                ax.legend(loc=where, frameon=False)
                break
    return fig


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, cmap: str = OVERLAY_CMAP) -> np.ndarray:
    """An (H, W) map in [0, 1] blended over an (H, W, 3) uint8 image: (H, W, 3) float in [0, 1],
    ``(1 - alpha) * image / 255 + alpha * cmap(map)`` (jet by default, as pytorch-grad-cam's
    ``show_cam_on_image``: blue = low, red = high). NaN in the map counts as 0."""
    base = np.asarray(image, dtype=np.float64) / 255.0
    values = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0), 0.0, 1.0)
    if values.shape != base.shape[:2]:
        raise ValueError(f"map {values.shape} and image {base.shape[:2]} differ in size; the gallery "
                         "stores both at the model's input size")
    coloured = colormaps[cmap](values)[..., :3]
    return (1.0 - alpha) * base + alpha * coloured


def top_region(saliency: np.ndarray, k_percent: float) -> np.ndarray:
    """The (H, W) boolean mask of a map's top-k% pixels, chosen as the agreement score chooses them
    (``case_saliency.metrics.top_mask``), so the outline shows exactly what the score compares."""
    import torch

    from ..metrics import top_mask

    values = torch.from_numpy(np.nan_to_num(np.asarray(saliency, dtype=np.float32)))
    return top_mask(values[None], float(k_percent))[0].numpy()


def gallery_figure(image: np.ndarray, maps: Mapping[str, np.ndarray], class_names: Sequence[str],
                   probs: ArrayLike, alpha: float = 0.5, agreement: Mapping[str, float | None] | None = None,
                   k_percent: float | None = 5.0, titles: Mapping[str, str] | None = None) -> Figure:
    """One image and each method's maps for its top-1 (upper row) and top-2 class (lower row), overlaid
    on the image in jet (red = salient) with one colour bar; each map's top-k% region outlined in white
    (what the agreement compares), and each method's top-1/top-2 agreement over its column.

    image: (H, W, 3) uint8; maps: {method: (2, H, W) in [0, 1]}; class_names, probs: the top-1 and
    top-2 classes' names and probabilities; agreement: {method: percent or None (constant map)};
    k_percent: the outlined share (None: no outline); titles: display names of the methods.
    """
    methods = list(maps)
    probabilities = np.asarray(probs, dtype=np.float64).ravel()
    columns = 1 + len(methods)
    agreement = agreement or {}
    titles = titles or {}
    with rc_context(STYLE):
        fig = Figure(figsize=(1.75 * (columns + 1) + 1.0, 4.1), layout="constrained")
        # The photo spans both rows at twice a map's width: the same scale as the maps.
        grid = fig.add_gridspec(2, columns, width_ratios=[2.0] + [1.0] * len(methods))
        photo = fig.add_subplot(grid[:, 0])
        photo.imshow(np.asarray(image, dtype=np.uint8))
        photo.set_title("image")
        photo.set_axis_off()
        map_axes = []
        for j, method in enumerate(methods, start=1):
            for row in range(2):
                ax = fig.add_subplot(grid[row, j])
                map_axes.append(ax)
                _map_panel(ax, image, maps[method][row], alpha, k_percent,
                           _agreement_title(method, titles, agreement) if row == 0 else None)
                if j == 1:
                    ax.set_ylabel(f"top-{row + 1}: {_short(class_names[row])}\np = {probabilities[row]:.2f}")
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=OVERLAY_CMAP), ax=map_axes, shrink=0.85,
                           aspect=25, pad=0.02)
        bar.set_label("saliency (each map scaled to [0, 1])")
        if k_percent is not None:
            fig.text(0.01, 0.01, f"white outline: each map's top {k_percent:g}% pixels (what the agreement compares)",
                     fontsize=8, color="#444444")
    return fig


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_rates(confusion: np.ndarray) -> np.ndarray:
    """Each row of a (K, K) confusion matrix divided by its sum (empty rows stay 0)."""
    table = np.asarray(confusion, dtype=np.float64)
    sums = table.sum(axis=1, keepdims=True)
    return np.divide(table, sums, out=np.zeros_like(table), where=sums > 0)


def contrast_neighbours(confusion: np.ndarray, k: int = 3) -> np.ndarray:
    """Each class's k contrast neighbours (K, k): the largest off-diagonal row rates, ties to the
    lower class index, the same rule as ``case_saliency.ConfusionNeighbours``."""
    rates = row_rates(confusion)
    np.fill_diagonal(rates, -1.0)
    return np.argsort(-rates, axis=1, kind="stable")[:, : min(k, rates.shape[0] - 1)]


def shown_classes(confusion: np.ndarray, limit: int = 20) -> np.ndarray:
    """Which classes a heat map shows: all when K <= limit, else the ``limit`` classes with the
    largest off-diagonal rate mass (the most confused), in class order."""
    size = np.asarray(confusion).shape[0]
    if size <= limit:
        return np.arange(size)
    rates = row_rates(confusion)
    np.fill_diagonal(rates, 0.0)
    mass = rates.sum(axis=1) + rates.sum(axis=0)
    return np.sort(np.argsort(-mass, kind="stable")[:limit])


def confusion_heatmap(confusion: np.ndarray, class_names: Sequence[str], k: int = 3, limit: int = 20) -> Figure:
    """The confusion matrix as a heat map of row rates (rows: true class, each summing to 1), with
    each shown class's k contrast neighbours listed beside it. For K > limit only the most confused
    classes are shown (see :func:`shown_classes`)."""
    rates = row_rates(confusion)
    shown = shown_classes(confusion, limit)
    neighbours = contrast_neighbours(confusion, k)
    names = [_short(str(class_names[i])) for i in shown]
    size = len(shown)
    lines = [f"{_short(str(class_names[c]), 16)}: " + ", ".join(
        f"{_short(str(class_names[n]), 14)} {rates[c, n]:.2f}" for n in neighbours[c]) for c in shown]
    font = 8 if size > 12 else 9
    # Monospace glyphs are about 0.6 em wide: size the listing's panel to its longest line.
    listing_width = 0.6 * font / 72 * max(len(line) for line in lines) + 0.3
    with rc_context(STYLE):
        side = max(3.5, 0.32 * size + 1.5)
        fig = Figure(figsize=(side + 0.8 + listing_width, side), layout="constrained")
        grid = fig.add_gridspec(1, 2, width_ratios=[side + 0.8, listing_width])
        ax = fig.add_subplot(grid[0, 0])
        image = ax.imshow(rates[np.ix_(shown, shown)], cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0)
        if size <= 12:  # small matrices: print each rate, dark text on light cells and vice versa
            for i, row in enumerate(shown):
                for j, col in enumerate(shown):
                    value = rates[row, col]
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if value > 0.55 else "white")
        ax.set_xticks(range(size), names, rotation=90)
        ax.set_yticks(range(size), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        subset = "" if size == rates.shape[0] else f" ({size} most confused of {rates.shape[0]})"
        ax.set_title("confusion (row rates)" + subset)
        fig.colorbar(image, ax=ax, shrink=0.8, label="rate")
        text = fig.add_subplot(grid[0, 1])
        text.set_axis_off()
        text.set_title(f"contrast neighbours (k={neighbours.shape[1]})", loc="left")
        text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=font,
                  transform=text.transAxes)
    return fig


def save_figure(fig: Figure, folder: Path, stem: str, dpi: int | None = None) -> tuple[Path, Path]:
    """Write ``folder/stem.png`` and ``folder/stem.pdf``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
    # The PDF backend's font subsetting (fontTools) logs every glyph at INFO; the CLI logs INFO.
    font_logger = logging.getLogger("fontTools")
    level = font_logger.level
    font_logger.setLevel(logging.WARNING)
    engine = fig.get_layout_engine()
    try:
        with rc_context(STYLE):
            fig.savefig(png, dpi=dpi or STYLE["savefig.dpi"], facecolor="white")
            # The PDF keeps the PNG's layout: laying a figure out again costs as much as drawing it, and moves
            # its axes by ~0.1% of the figure at the PDF's resolution.
            if engine is not None:
                fig.set_layout_engine("none")
            fig.savefig(pdf, facecolor="white")
    finally:
        font_logger.setLevel(level)
        if engine is not None:
            fig.set_layout_engine(engine)
    return png, pdf

DIFFERENCE_CMAP = "RdBu_r"  # red: more evidence for the first class, blue: for the second


def explain_figure(image: np.ndarray, maps: Mapping[str, np.ndarray], class_names: Sequence[str],
                   probs: ArrayLike, agreement: Mapping[str, float | None] | None = None,
                   k_percent: float | None = 5.0, titles: Mapping[str, str] | None = None, alpha: float = 0.5,
                   chosen: bool = False, title: str | None = None) -> Figure:
    """"Why A and not B?" for one image: the image, a row per class (its name and probability), a
    column per method (each map over the image in jet, its top-k% region outlined in white, the
    method's agreement of the first two maps over its column), a colour bar, and a last column of
    each method's A-minus-B difference (red: more A, blue: more B).

    image: (H, W, 3) uint8; maps: {method: (M, H, W) in [0, 1]}; class_names, probs: the M classes'
    names and probabilities; agreement: {method: percent or None}; chosen: the classes were asked
    for (rows are labelled by name, not "top-1:"); title: a line over the figure (the file name).
    """
    methods = list(maps)
    probabilities = np.asarray(probs, dtype=np.float64).ravel()
    rows = len(class_names)
    agreement = agreement or {}
    titles = titles or {}
    pair = rows >= 2
    columns = 1 + len(methods) + (1 if pair else 0)
    with rc_context(STYLE):
        fig = Figure(figsize=(1.9 * columns + 1.6, 1.9 * max(rows, 2) + 0.8), layout="constrained")
        if title:
            fig.suptitle(title, fontsize=10)
        grid = fig.add_gridspec(rows, columns)
        map_axes = []
        for row in range(rows):
            photo = fig.add_subplot(grid[row, 0])
            photo.imshow(np.asarray(image, dtype=np.uint8))
            photo.set_xticks([])
            photo.set_yticks([])
            label = _short(class_names[row], 26) if chosen else f"top-{row + 1}: {_short(class_names[row], 20)}"
            photo.set_ylabel(f"{label}\np = {probabilities[row]:.2f}")
            if row == 0:
                photo.set_title("image")
            for j, method in enumerate(methods, start=1):
                ax = fig.add_subplot(grid[row, j])
                map_axes.append(ax)
                _map_panel(ax, image, maps[method][row], alpha, k_percent,
                           _agreement_title(method, titles, agreement) if row == 0 else None)
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=OVERLAY_CMAP), ax=map_axes, shrink=0.8,
                           aspect=25, pad=0.02, location="right")
        bar.set_label("saliency (each map scaled to [0, 1])")
        if pair:
            # One panel per method in the last column: on the class rows' grid when the counts match.
            cells = ([grid[i, columns - 1] for i in range(rows)] if len(methods) == rows
                     else [grid[:, columns - 1].subgridspec(len(methods), 1)[i, 0] for i in range(len(methods))])
            difference_axes = []
            # One symmetric scale for every method's difference, set by the largest: faint differences still show.
            limit = max([float(np.nanmax(np.abs(maps[m][0] - maps[m][1]))) for m in methods] + [0.05])
            for cell, method in zip(cells, methods, strict=True):
                ax = fig.add_subplot(cell)
                difference_axes.append(ax)
                difference = np.nan_to_num(maps[method][0] - maps[method][1])
                ax.imshow(np.asarray(image, dtype=np.uint8).mean(axis=2), cmap="gray")
                ax.imshow(difference, cmap=DIFFERENCE_CMAP, vmin=-limit, vmax=limit, alpha=0.75)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{titles.get(method, method)}: A − B")
            diff_bar = fig.colorbar(ScalarMappable(Normalize(-limit, limit), cmap=DIFFERENCE_CMAP), ax=difference_axes,
                                    shrink=0.8, aspect=25, pad=0.02)
            diff_bar.set_label(f"B: {_short(class_names[1], 16)}  ←  →  A: {_short(class_names[0], 16)}")
        if k_percent is not None:
            fig.supxlabel(f"white outline: each map's top {k_percent:g}% pixels; agreement: the share of them the "
                          "first two maps have in common (lower: the method tells the classes apart)",
                          fontsize=7.5, color="#444444")
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int | None = None) -> Path:
    """Write ``fig`` as one PNG at ``path`` (parents created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with rc_context(STYLE):
        fig.savefig(target, dpi=dpi or STYLE["savefig.dpi"], facecolor="white")
    return target


__all__ = ["explain_figure", "save_png", "agreement_histograms", "drop_boxplots",
           "curve_band", "deletion_insertion_curves", "overlay",
           "gallery_figure", "top_region", "row_rates", "contrast_neighbours", "shown_classes", "confusion_heatmap",
           "save_figure", "method_colours"]
