"""`case-saliency explain`: "why A and not B?" for image files, on a photo (Lite0), a Fashion-MNIST
checkpoint with its class names, a model built by a user's file, and a random-weight transformers ViT."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from case_saliency import CASE, ExplicitContrast
from case_saliency.cli import app
from case_saliency.workflows.explain import explain_images, expand_images, resolve_class, resolve_classes

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _check_outputs(out: Path, names: list[str], stem: str) -> str:
    png = out / f"{stem}.explain.png"
    with Image.open(png) as figure:
        width, height = figure.size
    assert width > 900 and 500 < height < width  # a row per class, a column per method and the difference
    page = (out / "explain.html").read_text()
    assert all(name in page for name in names), names
    assert "data:image/png;base64," in page and "src=\"http" not in page  # self-contained
    return page


def test_class_names_resolve_by_name_prefix_part_or_index_and_errors_name_the_closest():
    assert resolve_class("coat", FASHION) == 4
    assert resolve_class("Ank", FASHION) == 9 and resolve_class("boot", FASHION) == 9
    assert resolve_class("6", FASHION) == 6
    assert resolve_classes("Coat,shirt", FASHION) == [4, 6]
    with pytest.raises(ValueError, match="ambiguous.*'Sandal'.*'Sneaker'"):
        resolve_class("s", FASHION)
    with pytest.raises(ValueError, match="closest names: 'Coat'"):
        resolve_class("coats", FASHION)
    with pytest.raises(ValueError, match="out of range"):
        resolve_class("10", FASHION)


def test_explain_a_photo_with_lite0_writes_the_figure_and_page(tmp_path):
    from skimage import data

    photo = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    out = tmp_path / "out"
    result = _invoke(["explain", str(photo), "--model", "efficientnet_lite0", "--classes", "egyptian,tabby",
                      "--out", str(out), "--html"])
    line = next(line for line in result.output.splitlines() if line.startswith(str(photo)))
    assert re.search(r"Egyptian cat \(0\.\d\d\) vs tabby \(0\.\d\d\); top-5% agreement: gradcam \d+%, case \d+%", line)
    assert f"wrote 1 figure(s) to {out}/" in result.output
    _check_outputs(out, ["Egyptian cat", "tabby"], "chelsea")


def _fashion_checkpoint(path: Path) -> Path:
    """A case-saliency checkpoint (random weights) of the ResNet-like Fashion-MNIST family, with its
    stored preprocessing and class names."""
    from case_saliency.models import CHECKPOINT_FORMAT
    from case_saliency.models.fashion import build, target_layer

    torch.manual_seed(0)
    model = build("resnet", num_classes=10, in_channels=1)
    meta = {"architecture": "resnet", "num_classes": 10, "in_channels": 1, "input_size": 28, "resize": 28, "crop": 28,
            "mean": [0.286], "std": [0.353], "class_names": FASHION, "target_layer": target_layer("resnet"), "seed": 0}
    torch.save({"format": CHECKPOINT_FORMAT, "meta": meta, "state_dict": model.state_dict()}, path)
    return path


def test_explain_a_fashion_checkpoint_uses_its_class_names(tmp_path):
    checkpoint = _fashion_checkpoint(tmp_path / "fashion.pt")
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), mode="L").save(images / f"item{i}.png")
    out = tmp_path / "out"
    result = _invoke(["explain", str(images), "--model", str(checkpoint), "--classes", "coat,shirt", "--out", str(out),
                      "--html", "--versus"])
    assert "preprocessing" not in result.output  # stored in the checkpoint: nothing assumed
    assert result.output.count("Coat (0.") == 2 and "Shirt (0." in result.output
    _check_outputs(out, ["Coat", "Shirt"], "item0")
    assert (out / "item1.explain.png").is_file()


BUILD_FILE = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return {"logits": self.head(self.features(x).mean(dim=(2, 3)))}


def build():
    torch.manual_seed(0)
    return Small()
'''


def test_explain_a_model_built_by_a_users_file_with_weights_and_class_names(tmp_path):
    source = tmp_path / "my_models.py"
    source.write_text(BUILD_FILE)
    namespace: dict = {}
    exec(BUILD_FILE, namespace)  # the same network, for its weights
    weights = tmp_path / "small.pt"
    torch.manual_seed(1)
    torch.save(namespace["build"]().state_dict(), weights)
    names = tmp_path / "classes.json"
    names.write_text(json.dumps({"0": "apple", "1": "banana", "2": "cherry", "3": "date"}))
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    result = _invoke(["explain", str(photo), "--model", f"{source}:build", "--weights", str(weights),
                      "--class-names", str(names), "--size", "32", "--no-crop", "--out", str(out), "--html"])
    assert "preprocessing: resize to 32 (no crop)" in result.output
    shown = re.search(r"photo\.jpg: (\w+) \(0\.\d\d\) vs (\w+) \(0\.\d\d\)", result.output)
    assert shown and {shown[1], shown[2]} <= {"apple", "banana", "cherry", "date"}
    _check_outputs(out, [shown[1], shown[2]], "photo")
    # without --size the command says what it assumed, once
    again = _invoke(["explain", str(photo), "--model", f"{source}:build", "--out", str(tmp_path / "again")])
    assert again.output.count("preprocessing assumed") == 1 and "--size N" in again.output


VIT_FILE = '''
import torch
from transformers import ViTConfig, ViTForImageClassification


def build():
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=5,
                       id2label={0: "heron", 1: "otter", 2: "kayak", 3: "willow", 4: "lantern"},
                       label2id={"heron": 0, "otter": 1, "kayak": 2, "willow": 3, "lantern": 4})
    torch.manual_seed(0)
    return ViTForImageClassification(config)
'''


def test_explain_a_random_weight_transformers_vit_names_its_id2label_classes(tmp_path):
    pytest.importorskip("transformers", reason="needs the [hf] extra: pip install 'case-saliency[hf]'")
    source = tmp_path / "vit_build.py"
    source.write_text(VIT_FILE)
    photo = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    result = _invoke(["explain", str(photo), "--model", f"{source}:build", "--out", str(out), "--html"])
    shown = re.search(r"scene\.png: (\w+) \(0\.\d\d\) vs (\w+) \(0\.\d\d\)", result.output)
    assert shown and {shown[1], shown[2]} <= {"heron", "otter", "kayak", "willow", "lantern"}
    page = _check_outputs(out, [shown[1], shown[2]], "scene")
    assert "class 0" not in page


def test_versus_gives_a_map_for_a_with_b_as_its_contrast_and_b_with_a(lite0, photos):
    from case_saliency.models import LoadedModel
    from case_saliency.models.preprocess import Preprocess

    loaded = LoadedModel.wrap(lite0, transform=Preprocess(224, 224, (0.5,) * 3, (0.5,) * 3),
                              class_names=[f"c{i}" for i in range(1000)], target_layer="bn2")
    images = [Image.fromarray(((photos[i].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).astype(np.uint8))
              for i in range(2)]
    pair = [285, 281]
    versus = explain_images(loaded, images, ["a", "b"], classes=pair, methods=["case"], versus=True)
    assert versus[0].contrast == {"case": "versus"}
    tensor = loaded.preprocess(images)
    for slot, (target, other) in enumerate([(285, 281), (281, 285)]):
        reference = CASE(lite0, target_layer="bn2", contrast=ExplicitContrast([other])).explain(
            tensor, [target, target], normalize=True).maps
        for i in range(2):
            assert np.allclose(versus[i].maps["case"][slot], reference[i].numpy(), atol=1e-5)


def test_images_from_folders_and_globs_and_missing_ones_named(tmp_path):
    for name in ("a.png", "b.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_images([tmp_path])] == ["a.png", "b.jpg"]
    assert [p.name for p in expand_images([str(tmp_path / "*.png")])] == ["a.png"]
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        expand_images([tmp_path / "missing.png"])


def test_explain_help_imports_no_torch():
    import os
    import subprocess
    import sys

    import case_saliency

    env = {**os.environ, "PYTHONPATH": str(Path(case_saliency.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "case_saliency.cli", "explain", "--help"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "--classes" in done.stdout and "--versus" in done.stdout
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "numpy", "matplotlib", "PIL"}, imported & {"torch", "numpy", "matplotlib", "PIL"}
