"""The figures of docs/results.md, drawn by the library's report functions from the study runs:

- ``gallery-<model>.png``: the images of a diagnose run's gallery where CASE's and Grad-CAM's
  top-1/top-2 agreements differ most (Grad-CAM's two maps overlap, CASE's do not; and the reverse);
- ``histograms-<model>.png``: agreement histograms (top 5%) of a diagnose run, threshold 50 drawn;
- ``curves-<model>.png``: deletion and insertion curves of a fidelity run.

    python -m experiments.figures [--out runs/experiments] [--to docs/results]

PNG only, at a low resolution (the document commits them; keep them small).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from case_saliency.runs.store import atomic_write

from .numbers import finished

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
