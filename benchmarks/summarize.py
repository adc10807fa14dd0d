"""Wall time of `case-saliency summarize RUN` on a synthetic diagnose run, before and after a change.

Builds a diagnose run directory (docs/run-format.md: config.json, meta.json, results.csv with its
crc32 cells, written with the library's own row formatter) of ``--images`` images x 7 methods at
k = 5%, with agreements quantised as real ones are (ties) and a contrastive method whose contrast
holds the other compared class on a fifth of the pairs; then times the command with the source tree
of ``--before`` (a git revision, exported with ``git archive``) and with this tree, interleaved
(before, after, before, ...), and prints the medians and their ratio. Run from the repository root:

    python benchmarks/summarize.py --images 200 --repeats 5 --before main

A loaded machine makes single timings noisy; the interleaving and medians make the ratio fair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from source_tree import export_tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from case_saliency.runs.rows import DiagnoseRow  # noqa: E402
from case_saliency.runs.store import format_rows, header_line  # noqa: E402

METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case")
TOP_PIXELS = 50  # agreement = shared top pixels / top set: multiples of 2%, so ties are common


def build_run(folder: Path, images: int, seed: int = 0) -> Path:
    """Write a diagnose run of ``images`` images x 7 methods into ``folder``; return it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.beta(2.0, 3.0, images)  # an image's difficulty, shared by the methods (paired data)
    shift = {"gradcam": 0.0, "gradcam++": 0.03, "hirescam": 0.0, "xgradcam": 0.0, "layercam": 0.05,
             "finercam": -0.02, "case": -0.05}
    rows = []
    for i in range(images):
        agreements = {}
        for method in METHODS:
            share = np.clip(base[i] + shift[method] + rng.normal(0, 0.08), 0, 1)
            agreements[method] = 100.0 * round(share * TOP_PIXELS) / TOP_PIXELS
        for method in ("hirescam", "xgradcam"):  # equal to Grad-CAM at a GAP + linear head
            agreements[method] = agreements["gradcam"]
        for method in METHODS:
            agreement = agreements[method]
            circular = method == "case" and rng.random() < 0.2
            rows.append({"image_id": f"photos/{i:04d}.jpg", "method": method, "k_percent": 5.0,
                         "agreement": float(agreement), "spearman": float(rng.uniform(0, 1)),
                         "ssim": float(rng.uniform(0, 1)), "degenerate": False, "class1": int(rng.integers(0, 1000)),
                         "class2": int(rng.integers(0, 1000)), "prob1": 0.6, "prob2": 0.2, "label": -1,
                         "contrast1": "1 2 3" if method == "case" else "", "contrast2": "4 5 6" if method == "case"
                         else "", "other_in_contrast": bool(circular), "positive1": 3000, "positive2": 2900,
                         "sparse": False, "error": ""})
    (folder / "results.csv").write_text(header_line(DiagnoseRow.columns()) + format_rows(rows, DiagnoseRow.columns()))
    config = {"kind": "diagnose", "model": "synthetic", "weights": None, "dataset": "synthetic", "methods": METHODS,
              "n": images, "seed": seed, "k_percent": [5.0], "threshold": 50.0, "alpha": 0.05, "layer": "features",
              "contrast": "classifier:3", "contrast_source": "fc", "method_contrasts": {"case": "classifier:3"},
              "ties": "index", "sparse": "pad", "correct_only": False, "protocol": "synthetic", "fill": None,
              "signed": False, "steps": None, "batch_size": 8, "gallery": 0, "command": "synthetic"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "meta.json").write_text(json.dumps({"sample_info": {"requested": images, "size": images}}))
    return folder




def time_summarize(src: Path, run_dir: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "case_saliency.cli", "summarize", str(run_dir)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default="main", help="git revision of the 'before' tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = build_run(Path(tmp) / "run", args.images)
        before = export_tree(args.before, Path(tmp) / "before")
        trees = {"before": before, "after": ROOT / "src"}
        times: dict[str, list[float]] = {name: [] for name in trees}
        for src in trees.values():  # warm the file cache and the bytecode of each tree once
            time_summarize(src, run_dir)
        for _ in range(args.repeats):
            for name, src in trees.items():
                times[name].append(time_summarize(src, run_dir))
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = args.images * len(METHODS)
    print(f"summarize of a {rows}-row diagnose run ({args.images} images x {len(METHODS)} methods, k = 5%), "
          f"median of {args.repeats}, interleaved:")
    for name, values in times.items():
        print(f"  {name:6s} ({args.before if name == 'before' else 'this tree'}): {medians[name]:.2f} s  "
              f"[{', '.join(f'{v:.2f}' for v in values)}]")
    print(f"  ratio before / after: {medians['before'] / medians['after']:.1f}x")


if __name__ == "__main__":
    main()
