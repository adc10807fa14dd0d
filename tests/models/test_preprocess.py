"""Preprocessing is never guessed silently: checkpoints and state-dict files carry it (and their class
names), the command line sets it (--size, --crop/--no-crop, --mean, --std, --class-names), and where it
is assumed the command says so once."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.data import open_dataset
from case_saliency.data.images import read_class_index
from case_saliency.models import Preprocess, load_model
from needs import needs_fashion_mnist

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_preprocess_options_describe_and_round_trip():
    default = Preprocess(256, 224, *IMAGENET)
    assert default.with_options(size=112, crop=False) == Preprocess(112, 112, *IMAGENET)
    assert default.with_options(size=112, crop=True) == Preprocess(128, 112, *IMAGENET)
    assert default.with_options(size=112) == Preprocess(128, 112, *IMAGENET)  # the crop ratio kept
    assert default.with_options(mean=(0.5,) * 3).mean == (0.5, 0.5, 0.5)
    assert default.describe() == "resize 256, crop 224, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"
    assert Preprocess.from_dict(default.to_dict()) == default


def test_class_name_files_in_every_documented_format(tmp_path):
    names = ["T-shirt/top", "Ankle boot", "Bag"]
    formats = {"lines.txt": "\n".join(names) + "\n", "list.json": json.dumps(names),
               "map.json": json.dumps({str(i): n for i, n in enumerate(names)}),
               "classes.txt": "T-shirt/top\nAnkle boot\nBag"}
    for file, text in formats.items():
        (tmp_path / file).write_text(text)
        assert read_class_index(tmp_path / file)[1] == names, file
    (tmp_path / "bad.json").write_text(json.dumps({"a": {"b": 1}}))
    with pytest.raises(ValueError, match="one class name per line"):
        read_class_index(tmp_path / "bad.json")


def test_imagefolder_with_index_folders_and_a_names_file(tmp_path):
    for label in ("0", "2"):
        (tmp_path / label).mkdir()
        Image.new("L", (8, 8), 50).save(tmp_path / label / "x.png")
    (tmp_path / "classes.txt").write_text("T-shirt/top\nAnkle boot\nBag\n")
    data = open_dataset(f"imagefolder:{tmp_path}")
    assert data.class_names == ["T-shirt/top", "Ankle boot", "Bag"] and sorted(data.labels) == [0, 2]


def test_a_state_dict_says_what_it_assumed_and_a_given_or_stored_one_is_used(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    assumed = load_model("resnet18", weights=plain)
    assert assumed.assumed_preprocess and "resize 256, crop 224" in assumed.assumed_preprocess
    assert "--size N" in assumed.assumed_preprocess
    given = load_model("resnet18", weights=plain, preprocess=Preprocess(112, 112, *IMAGENET),
                       class_names=["a", "b", "c"])
    assert given.assumed_preprocess is None and given.input_size == 112 and given.class_names == ["a", "b", "c"]
    stored = tmp_path / "stored.pt"
    torch.save({"state_dict": model.state_dict(), "preprocess": Preprocess(112, 112, *IMAGENET).to_dict(),
                "class_names": ["x", "y", "z"]}, stored)
    read = load_model("resnet18", weights=stored)
    assert read.assumed_preprocess is None and read.transform == Preprocess(112, 112, *IMAGENET)
    assert read.class_names == ["x", "y", "z"]
    text = repr(read)
    assert len(text) < 200 and "ResNet" in text and "3 classes" in text and "resize to 112" in text
    wrong = tmp_path / "two.txt"
    wrong.write_text("a\nb\n")
    with pytest.raises(ValueError, match="2 class names in .*two.txt for a model with 3 classes"):
        load_model("resnet18", weights=plain, class_names=wrong)


def _fashion_folder(root, count: int):
    from case_saliency.data.fashion_mnist import CLASS_NAMES, FashionMNIST

    test = FashionMNIST("test")
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    for i in range(count):
        folder = root / str(int(test.labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i], mode="L").save(folder / f"{i:05d}.png")


@pytest.mark.slow
@needs_fashion_mnist
def test_confusion_reports_the_real_accuracy_of_a_resnet18_trained_at_112_px(tmp_path):
    """A torchvision resnet18 trained briefly at 112 px and saved as a plain state dict: `confusion`
    with --size 112 --no-crop gives the accuracy of the model as trained (here computed through the
    same Preprocess); without the flags it says what it assumed (ImageNet's resize 256, crop 224)."""
    import torch.nn.functional as F

    from case_saliency.data.fashion_mnist import FashionMNIST
    from case_saliency.workflows.confusion import compute_confusion

    torch.manual_seed(0)
    images, labels = FashionMNIST("train").tensors()
    model = torchvision.models.resnet18(num_classes=10)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    mean, std = torch.tensor(IMAGENET[0]).view(1, 3, 1, 1), torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
    for _ in range(40):
        index = torch.randint(0, 6000, (16,))
        batch = F.interpolate(images[index], size=(112, 112), mode="bilinear", align_corners=False)
        batch = batch.expand(-1, 3, -1, -1)
        loss = F.cross_entropy(model((batch - mean) / std), labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    weights = tmp_path / "resnet18-fashion112.pt"
    torch.save(model.eval().state_dict(), weights)
    folder = tmp_path / "images"
    _fashion_folder(folder, 60)
    base = ["confusion", "--model", "resnet18", "--weights", str(weights), "--data", f"imagefolder:{folder}",
            "--class-names", str(folder / "classes.txt")]
    real = CliRunner().invoke(app, [*base, "--size", "112", "--no-crop", "--out", str(tmp_path / "real.json")])
    assumed = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "assumed.json")])
    assert real.exit_code == 0 and assumed.exit_code == 0, real.output + assumed.output
    accuracy = {name: float(re.search(r"accuracy ([\d.]+)%", run.output)[1]) for name, run in
                (("real", real), ("assumed", assumed))}
    assert "note: resnet18 weights without stored preprocessing" in assumed.output
    assert "resize 256, crop 224" in assumed.output and "note:" not in real.output
    expected = compute_confusion(load_model("resnet18", weights, preprocess=Preprocess(112, 112, *IMAGENET)),
                                 open_dataset(f"imagefolder:{folder}"), progress=False)
    assert accuracy["real"] == pytest.approx(np.trace(expected) / expected.sum() * 100, abs=0.01)
    assert accuracy["real"] > 30  # well above chance (10%) after 40 steps
    print(f"accuracy with --size 112 --no-crop: {accuracy['real']:.1f}%; assumed ImageNet preprocessing: "
          f"{accuracy['assumed']:.1f}%")


@pytest.mark.parametrize("shape, preprocess", [
    ((300, 451, 3), Preprocess(256, 224, *IMAGENET)), ((28, 28), Preprocess(112, 112, (0.5,), (0.5,), channels=1)),
    ((37, 90, 3), Preprocess(112, 112, (0.5,) * 3, (0.5,) * 3)),
    ((20, 20, 3), Preprocess(16, 24, (0.5,) * 3, (0.5,) * 3)),
    ((511, 333, 3), Preprocess(224, 224, (0.5,) * 3, (0.5,) * 3))])
def test_preprocess_equals_torchvisions_transforms_exactly(shape, preprocess):
    """Preprocess resizes and crops with PIL (no torchvision import): the same tensors as torchvision's
    Resize, CenterCrop (with its zero padding), ToTensor and Normalize on PIL images."""
    import torchvision.transforms.functional as TF

    array = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    image = Image.fromarray(array, mode="L" if len(shape) == 2 else "RGB")
    plain = image.convert("RGB" if preprocess.channels == 3 else "L")
    geometry = TF.center_crop(TF.resize(plain, preprocess.resize, interpolation=TF.InterpolationMode.BILINEAR),
                              [preprocess.crop, preprocess.crop])
    expected = TF.normalize(TF.to_tensor(geometry), list(preprocess.mean), list(preprocess.std))
    assert torch.equal(preprocess(image), expected)


def test_imagenet_class_names_read_without_importing_torchvision():
    from case_saliency.models.zoo import imagenet_class_names

    assert imagenet_class_names() == list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_a_timm_name_with_a_state_dict_says_what_it_assumed(tmp_path):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3)
    weights = tmp_path / "vit.pt"
    torch.save(model.state_dict(), weights)
    loaded = load_model("vit_tiny_patch16_224", weights=weights, class_names=["a", "b", "c"])
    assert loaded.assumed_preprocess and "timm's pretrained_cfg" in loaded.assumed_preprocess
    assert loaded.target_layer == "blocks.11.norm1" and loaded.reshape is not None
    sized = load_model("vit_tiny_patch16_224", weights=weights, preprocess=Preprocess(224, 224, (0.5,) * 3, (0.5,) * 3))
    assert sized.assumed_preprocess is None and "class 0" in sized.class_names


def test_run_commands_take_the_model_options(tmp_path, capsys):
    from case_saliency.cli import run_options
    from case_saliency.cli.model_options import model_options

    torch.manual_seed(0)
    weights = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "a.png")
    loaded, *_ = run_options.resolve_inputs("resnet18", str(weights), f"folder:{tmp_path / 'images'}", None, "gradcam",
                                            1, None, "cpu", None, model_options(112, False, None, None, None))
    assert loaded.transform == Preprocess(112, 112, *IMAGENET) and loaded.assumed_preprocess is None
    assert "preprocessing: resize to 112 (no crop)" in capsys.readouterr().err
    run_options.resolve_inputs("resnet18", str(weights), f"folder:{tmp_path / 'images'}", None, "gradcam", 1, None,
                               "cpu")
    assert capsys.readouterr().err.count("note: resnet18 weights without stored preprocessing") == 1
