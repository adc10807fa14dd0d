"""The main job: EfficientNet-Lite0 on the 14 sample photos of scikit-image and scikit-learn. For each
photo, the top-1 and top-2 classes, the Grad-CAM and CASE maps of both, and their top-5% agreement
(high = the method shows nearly the same evidence for two different classes). Offline; the output
folder is a diagnose run directory (docs/run-format.md) plus side-by-side PNGs, summary.json and
the report page."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CaseSaliencyError
from ..core.contrast import default_contrast
from ..data import SamplePhotos
from ..models import load_model

DEMO_METHODS = ("gradcam", "case")
METHOD_TITLES = {"gradcam": "Grad-CAM", "case": "CASE"}
# What a demo run writes; only these are removed when a previous demo output is overwritten.
DEMO_FILES = ("config.json", "meta.json", "results.csv", "summary.json", "report.html")
DEMO_FOLDERS = ("gallery", "figures", "photos")


class OutputFolderInUse(CaseSaliencyError, ValueError):
    """The output folder holds something other than a previous demo."""


def _prepare_out(out: Path, create: bool = True) -> None:
    """Check ``out`` is new, empty or a previous demo; with ``create``, clear the old demo files and create it."""
    if out.exists() and not out.is_dir():
        raise OutputFolderInUse(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        summary = out / "summary.json"
        try:
            is_demo = json.loads(summary.read_text()).get("demo") is True
        except (OSError, ValueError):
            is_demo = False
        if not is_demo:
            raise OutputFolderInUse(f"--out {out} is not empty and does not hold a previous demo; "
                                    "give a new or empty folder")
        if not create:
            return
        for name in DEMO_FILES:
            (out / name).unlink(missing_ok=True)
        for name in DEMO_FOLDERS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
    if create:
        out.mkdir(parents=True, exist_ok=True)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _figure(path: Path, image: np.ndarray, maps: dict[str, np.ndarray], names: tuple[str, str],
            probs: tuple[float, float], agreement: dict[str, float | None], k_percent: float) -> None:
    """One PNG per photo, drawn by the report's renderer (``figures.gallery_figure``): the photo, then
    per method its top-1 and top-2 maps overlaid, the top-k% regions outlined, the agreement above."""
    from . import figures as F

    fig = F.gallery_figure(image, maps, names, probs, agreement=agreement, k_percent=k_percent,
                           titles=METHOD_TITLES)
    fig.savefig(path, dpi=100, facecolor="white")


def format_table(photos: list[dict]) -> str:
    """The printed summary: one line per photo, then the means."""
    header = f"{'photo':<30} {'top-1 (p)':<28} {'top-2 (p)':<28} {'Grad-CAM':>9} {'CASE':>7}"
    lines = [header, "-" * len(header)]

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    for photo in photos:
        top1 = f"{photo['top1']['name'][:20]} ({photo['top1']['prob']:.2f})"
        top2 = f"{photo['top2']['name'][:20]} ({photo['top2']['prob']:.2f})"
        lines.append(f"{photo['id']:<30} {top1:<28} {top2:<28} {cell(photo['agreement'].get('gradcam')):>9} "
                     f"{cell(photo['agreement'].get('case')):>7}")
    lines.append("-" * len(header))
    means = {}
    for method in DEMO_METHODS:
        values = [p["agreement"][method] for p in photos if p["agreement"].get(method) is not None]
        means[method] = sum(values) / len(values) if values else None
    lines.append(f"{'mean top-5% agreement (%)':<88} {cell(means['gradcam']):>9} {cell(means['case']):>7}")
    return "\n".join(lines)


def run_demo(out: str | Path = "demo-output", model_name: str = "efficientnet_lite0", k_percent: float = 5.0,
             progress: bool = True, report: bool = True) -> dict:
    """Run the demo into ``out`` and return the summary (also written to ``out/summary.json``).

    Cost: one forward pass and one backward pass to the target layer per method for all 14 photos.
    Raises ``OutputFolderInUse`` when ``out`` holds anything but a previous demo.
    """
    from ..runs import run_diagnose
    from ..runs.store import file_stem, gallery_path, read_run, write_json

    started = time.time()
    out = Path(out)
    _prepare_out(out, create=False)  # refuse a folder in use before spending time on the model
    loaded = load_model(model_name)
    _prepare_out(out)
    photos_set = SamplePhotos()
    contrast = default_contrast()  # model-level (classifier neighbours): the top-1/top-2 test is not circular
    run_diagnose(loaded, photos_set, out, methods=DEMO_METHODS, n=len(photos_set), seed=0, k_percent=(k_percent,),
                 contrast=contrast, batch_size=len(photos_set), gallery=len(photos_set), progress=progress,
                 command=f"case-saliency demo --out {out}")
    rows = read_run(out).rows
    by_image: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_image.setdefault(row["image_id"], {})[row["method"]] = row
    # The table follows the photos' order in SAMPLE_PHOTOS, not the run's seeded order.
    ordered = [image_id for image_id in photos_set.ids if image_id in by_image]
    photos_dir = out / "photos"
    photos_dir.mkdir(exist_ok=True)
    photos: list[dict[str, Any]] = []
    names = loaded.require_class_names()
    for image_id in ordered:
        first = next(iter(by_image[image_id].values()))
        classes = (int(first["class1"]), int(first["class2"]))
        probs = (float(first["prob1"]), float(first["prob2"]))
        agreement = {m: _number(by_image[image_id][m]["agreement"]) for m in DEMO_METHODS if m in by_image[image_id]}
        errors = {m: by_image[image_id][m]["error"] for m in DEMO_METHODS
                  if m in by_image[image_id] and by_image[image_id][m].get("error")}
        figure = photos_dir / f"{file_stem(image_id)}.png"
        with np.load(gallery_path(out, image_id), allow_pickle=False) as data:
            maps = {m: data[f"map_{m}"] for m in DEMO_METHODS if f"map_{m}" in data.files}
            _figure(figure, data["image"], maps, (names[classes[0]], names[classes[1]]), probs, agreement, k_percent)
        photos.append({
            "id": image_id,
            "top1": {"class": classes[0], "name": names[classes[0]], "prob": probs[0]},
            "top2": {"class": classes[1], "name": names[classes[1]], "prob": probs[1]},
            "agreement": agreement,
            "contrast": {m: [by_image[image_id][m].get("contrast1", ""), by_image[image_id][m].get("contrast2", "")]
                         for m in DEMO_METHODS if m == "case" and m in by_image[image_id]},
            "errors": errors,
            "figure": figure.relative_to(out).as_posix(),
        })
    means = {}
    for method in DEMO_METHODS:
        values = [p["agreement"][method] for p in photos if p["agreement"].get(method) is not None]
        means[method] = sum(values) / len(values) if values else None
    report_path = None
    if report:
        try:
            from .page import write_report
        except ImportError:  # the report package is optional for the numbers
            pass
        else:
            report_path = write_report(out).relative_to(out).as_posix()
    summary = {
        "demo": True,
        "model": loaded.identity,
        "layer": loaded.target_layer,
        "methods": list(DEMO_METHODS),
        "contrast": contrast,
        "k_percent": k_percent,
        "photos": photos,
        "mean_agreement": means,
        "report": report_path,
        "seconds": round(time.time() - started, 2),
        "note": ("agreement = share of the top-k% pixels of the top-1 map that are also top-k% pixels of the "
                 "top-2 map; high values mean the method shows the same evidence for both classes"),
    }
    write_json(out / "summary.json", summary)
    return summary
