"""The main job: EfficientNet-Lite0 on the 14 sample photos of scikit-image and scikit-learn. For each
photo, the top-1 and top-2 classes, the Grad-CAM and CASE maps of both, and their top-5% agreement
(high = the method shows nearly the same evidence for two different classes). Offline; the output
folder is a diagnose run directory (docs/run-format.md) plus summary.json; the side-by-side PNGs
and the report page are drawn from it by ``report.photos.draw_demo`` (the command does both)."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any


from ..core.errors import CaseSaliencyError
from ..data import SamplePhotos
from ..models import load_model
from ..runs.diagnose import run_diagnose
from ..runs.rundir import RunDir
from ..runs.settings import DiagnoseSettings
from ..runs.store import file_stem, write_json

DEMO_METHODS = ("gradcam", "case")
METHOD_TITLES = {"gradcam": "Grad-CAM", "case": "CASE"}
# What a demo run writes; only these are removed when a previous demo output is overwritten.
DEMO_FILES = ("config.json", "meta.json", "results.csv", "summary.json", "report.html")
DEMO_FOLDERS = ("gallery", "figures", "photos")


class OutputFolderInUse(CaseSaliencyError, ValueError):
    """The output folder holds something other than a previous demo."""


def prepare_out(out: Path, create: bool = True) -> None:
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
             progress: bool = True, report: bool = True) -> dict[str, Any]:
    """Run the demo's diagnose into ``out`` and return the summary (also written to ``out/summary.json``).

    Args:
        out: the output folder (new, empty, or a previous demo's, which is replaced).
        model_name: an offline model (efficientnet_lite0/1/2). k_percent: the agreement's top-k%.
        progress: a progress bar. report: whether the summary names the report page (drawn by
            ``report.photos.draw_demo``).
    Returns:
        The summary: per photo its classes, agreement and figure path, and the means.
    Raises:
        OutputFolderInUse: ``out`` holds anything but a previous demo.

    Cost: one forward pass and one backward pass to the target layer per method for all 14 photos.
    """
    started = time.time()
    out = Path(out)
    prepare_out(out, create=False)  # refuse a folder in use before spending time on the model
    loaded = load_model(model_name)
    prepare_out(out)
    photos_set = SamplePhotos()
    # CASE's contrast: the run's default (core.contrast.default_contrast; model-level: the test is not circular).
    settings = DiagnoseSettings(methods=DEMO_METHODS, n=len(photos_set), seed=0, k_percent=(k_percent,),
                                batch_size=len(photos_set), gallery=len(photos_set),
                                command=f"case-saliency demo --out {out}")
    run_diagnose(loaded, photos_set, out, settings, progress=progress)
    run = RunDir.read(out)
    contrast = run.config["contrast"]
    rows = run.rows
    by_image: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_image.setdefault(row["image_id"], {})[row["method"]] = row
    # The table follows the photos' order in SAMPLE_PHOTOS, not the run's seeded order.
    ordered = [image_id for image_id in photos_set.ids if image_id in by_image]
    photos: list[dict[str, Any]] = []
    names = loaded.require_class_names()
    for image_id in ordered:
        first = next(iter(by_image[image_id].values()))
        classes = (int(first["class1"]), int(first["class2"]))
        probs = (float(first["prob1"]), float(first["prob2"]))
        agreement = {m: _number(by_image[image_id][m]["agreement"]) for m in DEMO_METHODS if m in by_image[image_id]}
        errors = {m: by_image[image_id][m]["error"] for m in DEMO_METHODS
                  if m in by_image[image_id] and by_image[image_id][m].get("error")}
        photos.append({
            "id": image_id,
            "top1": {"class": classes[0], "name": names[classes[0]], "prob": probs[0]},
            "top2": {"class": classes[1], "name": names[classes[1]], "prob": probs[1]},
            "agreement": agreement,
            "contrast": {m: [by_image[image_id][m].get("contrast1", ""), by_image[image_id][m].get("contrast2", "")]
                         for m in DEMO_METHODS if m == "case" and m in by_image[image_id]},
            "errors": errors,
            "figure": f"photos/{file_stem(image_id)}.png",
        })
    means = {}
    for method in DEMO_METHODS:
        values = [p["agreement"][method] for p in photos if p["agreement"].get(method) is not None]
        means[method] = sum(values) / len(values) if values else None
    summary = {
        "demo": True,
        "model": loaded.identity,
        "layer": loaded.target_layer,
        "methods": list(DEMO_METHODS),
        "contrast": contrast,
        "k_percent": k_percent,
        "photos": photos,
        "mean_agreement": means,
        "report": "report.html" if report else None,
        "seconds": round(time.time() - started, 2),
        "note": ("agreement = share of the top-k% pixels of the top-1 map that are also top-k% pixels of the "
                 "top-2 map; high values mean the method shows the same evidence for both classes"),
    }
    write_json(out / "summary.json", summary)
    return summary
