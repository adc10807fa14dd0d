"""How tests/data/legacy was written (run from the repository root with PYTHONPATH=src, with the run layer
before its redesign: its keyword API)."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from legacy_support import TRANSFORM, make_images, tiny_model  # noqa: E402

from case_saliency.data import open_dataset  # noqa: E402
from case_saliency.runs import run_diagnose, run_fidelity  # noqa: E402

root = Path("tests/data/legacy")
make_images(root / "images")
ds = open_dataset(f"folder:{root / 'images'}")
for kind in ("diagnose", "fidelity"):
    shutil.rmtree(root / kind, ignore_errors=True)
common = dict(methods=["gradcam", "case"], n=0, seed=0, layer="features.3", correct_only=False, batch_size=2,
              transform=TRANSFORM, class_names=["disc", "square"], model_name="tiny", progress=False, workers=0,
              dataset_name="folder:images")
run_diagnose(tiny_model(), ds, root / "diagnose", k_percent=[5, 10], gallery=2, command="legacy diagnose", **common)
run_fidelity(tiny_model(), ds, root / "fidelity", k_percent=50, steps=2, command="legacy fidelity", **common)
