"""How tests/data/legacy was written (run from the repository root, with the run layer before its redesign: its keyword API)."""
import shutil, sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image
sys.path.insert(0, "tests")
from legacy_support import tiny_model, TRANSFORM, make_images
from case_saliency.data import open_dataset
from case_saliency.runs import run_diagnose, run_fidelity

root = Path("tests/data/legacy")
make_images(root / "images")
ds = open_dataset(f"folder:{root/'images'}")
for kind in ("diagnose", "fidelity"):
    out = root / kind
    shutil.rmtree(out, ignore_errors=True)
common = dict(methods=["gradcam", "case"], n=0, seed=0, layer="features.3", correct_only=False, batch_size=2,
              transform=TRANSFORM, class_names=["disc", "square"], model_name="tiny", progress=False, workers=0,
              dataset_name="folder:images")
run_diagnose(tiny_model(), ds, root / "diagnose", k_percent=[5, 10], gallery=2, command="legacy diagnose", **common)
run_fidelity(tiny_model(), ds, root / "fidelity", k_percent=50, steps=2, command="legacy fidelity", **common)
