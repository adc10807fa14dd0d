"""The figures of docs/results.md, drawn by the library's report functions from the study runs:

- ``gallery-<model>.png``: the images of a diagnose run's gallery where CASE's and Grad-CAM's
  top-1/top-2 agreements differ most (Grad-CAM's two maps overlap, CASE's do not; and the reverse);
- ``histograms-<model>.png``: agreement histograms (top 5%) of a diagnose run, threshold 50 drawn;
- ``curves-<model>.png``: deletion and insertion curves of a fidelity run;
- ``forest.png`` and ``slopes.png`` (the reviewed study, ``document.write_review``): each method minus
  Grad-CAM with its interval per model and setting, and per photo Grad-CAM's and CASE's agreement.

    python -m experiments.figures [--out runs/experiments] [--to docs/results]

PNG only, at a low resolution (the document commits them; keep them small).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from case_saliency.runs.store import atomic_write

from .numbers import finished

if TYPE_CHECKING:
    from .evidence import Agreements, Difference


def display_name(method: str) -> str:
    from case_saliency.runs.summary import display_name as named

    return named(method)

DPI = 72
# (study folder, model folder) pairs drawn by default: one model of each kind.
DEFAULT_RUNS = (("efficientnet_lite0", "photos"), ("resnet-seed0", "fashion"), ("densenet-seed0", "fashion"),
                ("vgg-seed0", "fashion"), ("efficientnet_lite0-seed0", "finetune"))
HISTOGRAM_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam", "finercam", "case", "eigencam", "random")
GALLERY_METHODS = ("gradcam", "case")
CURVE_METHODS = ("gradcam", "gradcam++", "layercam", "case", "random")


def _save(fig: Any, folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write(folder / f"{stem}.png", lambda handle: fig.savefig(handle, format="png", dpi=DPI,
                                                                         facecolor="white"))


def gallery(run_dir: Path, folder: Path, stem: str, count: int = 2) -> Path | None:
    """The ``count`` gallery images with the largest Grad-CAM minus CASE agreement (top 5%), and the one
    with the largest CASE minus Grad-CAM agreement (where CASE does worse), stacked in one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from case_saliency.report.figures import gallery_figure
    from case_saliency.report.rundir import read_run

    run = read_run(run_dir)
    agreement: dict[str, dict[str, float]] = {}
    for row in run.rows:
        if row["method"] in GALLERY_METHODS and float(row["k_percent"]) == 5.0 and not row.get("error"):
            agreement.setdefault(row["image_id"], {})[row["method"]] = float(row["agreement"] or "nan")
    items = [item for item in run.gallery if all(m in item.maps for m in GALLERY_METHODS)
             and all(np.isfinite(agreement.get(item.image_id, {}).get(m, np.nan)) for m in GALLERY_METHODS)]
    if not items:
        return None
    gap = {item.image_id: agreement[item.image_id]["gradcam"] - agreement[item.image_id]["case"] for item in items}
    ordered = sorted(items, key=lambda item: gap[item.image_id], reverse=True)
    chosen = ordered[:count] + ([ordered[-1]] if len(ordered) > count else [])
    images = []
    for item in chosen:
        names = [run.class_name(int(c)) for c in item.classes]
        fig = gallery_figure(item.image, {m: item.maps[m] for m in GALLERY_METHODS}, names, item.probs.tolist())
        a = agreement[item.image_id]
        fig.suptitle(f"{item.image_id}: agreement Grad-CAM {a['gradcam']:.0f}%, CASE {a['case']:.0f}%", fontsize=9)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba())[..., :3])
    width = max(im.shape[1] for im in images)
    padded = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255) for im in images]
    stacked = np.concatenate(padded, axis=0)
    from PIL import Image

    picture = Image.fromarray(stacked)
    picture = picture.resize((int(picture.width * 0.6), int(picture.height * 0.6)), Image.Resampling.LANCZOS)
    folder.mkdir(parents=True, exist_ok=True)
    small = picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT)  # small to commit
    return atomic_write(folder / f"{stem}.png", lambda handle: small.save(handle, format="PNG", optimize=True))


def histograms(run_dir: Path, folder: Path, stem: str) -> Path:
    from case_saliency.report.figures import agreement_histograms
    from case_saliency.report.rundir import read_run

    run = read_run(run_dir)
    values: dict[str, list[float]] = {}
    for row in run.rows:
        if row["method"] in HISTOGRAM_METHODS and float(row["k_percent"]) == 5.0 and not row.get("error"):
            values.setdefault(row["method"], []).append(float(row["agreement"] or "nan"))
    ordered = {m: values[m] for m in HISTOGRAM_METHODS if m in values}
    return _save(agreement_histograms(ordered, 50.0, 5.0), folder, stem)


def curves(run_dir: Path, folder: Path, stem: str) -> Path | None:
    from case_saliency.report.figures import deletion_insertion_curves
    from case_saliency.report.rundir import read_run

    run = read_run(run_dir)
    steps = int(run.config.get("steps") or 0)
    if steps == 0:
        return None
    deletion = {m: run.curves(m, "deletion_curve") for m in CURVE_METHODS if m in run.methods}
    insertion = {m: run.curves(m, "insertion_curve") for m in CURVE_METHODS if m in run.methods}
    fractions = np.linspace(0.0, 1.0, steps + 1)
    return _save(deletion_insertion_curves(fractions, deletion, insertion), folder, stem)


def forest_plot(differences: Sequence[Difference], folder: Path, stem: str = "forest",
                methods: Sequence[str] | None = None, margin: float = 5.0, per_row: int = 5) -> Path | None:
    """Each method minus Grad-CAM (agreement points; lower: more class-specific) with its bootstrap 95 %
    interval, one row per model and setting, one panel per method (CASE first, ``per_row`` panels a row),
    the ±margin band of equivalence shaded; a filled marker where the Holm-corrected test rejects.
    Returns None without rows."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    order = list(methods or dict.fromkeys(d.method for d in differences))
    order = sorted(order, key=lambda m: (m != "case", order.index(m)))
    rows = list(dict.fromkeys((d.model, d.setting) for d in differences))
    if not rows or not order:
        return None
    by_key = {(d.model, d.setting, d.method): d for d in differences}
    columns = min(len(order), per_row)
    panel_rows = -(-len(order) // columns)
    fig, axes = plt.subplots(panel_rows, columns, figsize=(2.2 * columns + 2.4, (0.28 * len(rows) + 1.2) * panel_rows),
                             sharey=True, squeeze=False)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    for ax, method in zip(list(axes.flat)[:len(order)], order, strict=True):
        ax.axvspan(-margin, margin, color="0.92", zorder=0)
        ax.axvline(0.0, color="0.5", linewidth=0.8, zorder=1)
        for y, (model, setting) in enumerate(rows):
            d = by_key.get((model, setting, method))
            if d is None or not np.isfinite(d.mean):
                continue
            rejected = d.verdict in ("lower", "higher")
            ax.errorbar([d.mean], [y], xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", markersize=3.5,
                        color="C3" if method == "case" else "C0", mfc="C3" if method == "case" and rejected else
                        ("C0" if rejected else "white"), capsize=2, linewidth=1)
        ax.set_title(display_name(method), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("− Grad-CAM (points)", fontsize=7)
    for first in axes[:, 0]:
        first.set_yticks(range(len(rows)))
        first.set_yticklabels([f"{model.replace('efficientnet_', '')}, {setting}" for model, setting in rows],
                              fontsize=7)
    axes[0][0].invert_yaxis()  # shared: every panel's first row on top
    fig.tight_layout()
    path = _save(fig, folder, stem)
    plt.close(fig)
    return path


def slope_plot(agreements: Sequence[Agreements], folder: Path, stem: str = "slopes",
               out_of_distribution: Sequence[str] = ()) -> Path | None:
    """Per photo, a line from Grad-CAM's top-1/top-2 agreement to CASE's (primary k), one panel per model;
    out-of-distribution photos dashed. Returns None without data."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not agreements:
        return None
    fig, axes = plt.subplots(1, len(agreements), figsize=(2.4 * len(agreements) + 0.6, 3.0), sharey=True,
                             squeeze=False)
    for ax, a in zip(axes[0], agreements, strict=True):
        for image_id, g, c in zip(a.image_ids, a.gradcam, a.case, strict=True):
            away = image_id in out_of_distribution
            ax.plot([0, 1], [g, c], color="C1" if away else "C0", linestyle="--" if away else "-", linewidth=0.9,
                    marker="o", markersize=2.5)
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["Grad-CAM", "CASE"], fontsize=7)
        ax.set_xlim(-0.25, 1.25)
        ax.set_title(a.model.replace("efficientnet_", ""), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("top-1/top-2 agreement (%)", fontsize=7)
    axes[0][0].plot([], [], color="C0", linewidth=0.9, label="in distribution")
    axes[0][0].plot([], [], color="C1", linestyle="--", linewidth=0.9, label="out of distribution")
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    path = _save(fig, folder, stem)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/experiments"), help="the studies' output folder")
    parser.add_argument("--to", type=Path, default=Path("docs/results"), help="where the PNGs go")
    args = parser.parse_args(argv)
    written: list[Path | None] = []
    for model, _study in DEFAULT_RUNS:
        base = args.out / model
        if finished(base / "diagnose"):
            written.append(histograms(base / "diagnose", args.to, f"histograms-{model}"))
            written.append(gallery(base / "diagnose", args.to, f"gallery-{model}"))
        for run in ("fidelity-curves", "fidelity-zero"):  # the fine-tunes' curves are a run of their own
            if finished(base / run):
                drawn = curves(base / run, args.to, f"curves-{model}")
                if drawn is not None:
                    written.append(drawn)
                    break
    for path in written:
        if path is not None:
            print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
