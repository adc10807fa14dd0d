"""The light install: the methods, the engine and the metrics work with the core dependencies alone
(torch, torchvision, numpy, scipy, pillow, tqdm); the extras are imported only where they are used."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import case_saliency

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("timm", "captum", "pandas", "matplotlib", "typer", "skimage", "sklearn", "efficientnet_lite0",
               "pytorch_grad_cam")

# Runs in a fresh interpreter in which importing any extra fails, as in `pip install case-saliency`.
CORE_ONLY = f"""
import sys
BLOCKED = {EXTRAS_ONLY!r}
for name in BLOCKED:
    sys.modules[name] = None  # `import name` fails and find_spec says "not installed", as without the extra

import torch, torchvision
from case_saliency import CASE, GradCAM, GradCAMPlusPlus, ScoreCAM, TopLogits, get_method
from case_saliency.metrics import topk_agreement
from case_saliency.metrics.stats import agreement_below

torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10).eval()
images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
both = CASE(model, target_layer="layer4", contrast=TopLogits(k=1))(images, targets="topk:2")
grad = GradCAM(model, target_layer="layer4")(images, targets="topk:2")
assert both.shape == grad.shape == (2, 2, 64, 64)
get_method("gradcam++", model, target_layer="layer4")(images)
agreement = topk_agreement(grad[:, 0], grad[:, 1], 5.0)
assert agreement.shape == (2,)
agreement_below([10.0, 20.0, 30.0, 40.0, 45.0, 12.0], threshold=50.0)
loaded = [name for name, module in sys.modules.items() if name.split(".")[0] in BLOCKED and module is not None]
assert not loaded, loaded
print("core only: ok")
"""


@pytest.mark.slow
def test_methods_and_metrics_need_no_extra():
    env = {**os.environ, "PYTHONPATH": str(Path(case_saliency.__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", CORE_ONLY], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 and "core only: ok" in result.stdout, result.stderr[-3000:]


def test_extras_are_declared_as_the_readme_says():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement.split(">")[0].split("<")[0].split("=")[0] for requirement in project["dependencies"]}
    assert core == {"torch", "torchvision", "numpy", "scipy", "pillow", "tqdm"}
    extras = project["optional-dependencies"]
    assert {"models", "cli", "captum", "all", "test"} <= set(extras)
    assert any(r.startswith("case-saliency[all]") for r in extras["test"])
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "'.[test]'" in setup
