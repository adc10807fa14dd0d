"""A careless or unlucky user's inputs (issue round 2, items 7, 9, 12, 13 and 15): each is refused with
one line naming the input and the fix, or handled, instead of a traceback or a silently wrong result."""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.text import Text
from PIL import Image, ImageOps
from torch import nn
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.data import ImageFiles, ImageFolderDataset, open_dataset
from case_saliency.data.fashion_mnist import CLASS_NAMES
from case_saliency.models import LoadedModel, load_model
from case_saliency.report import RunDirError, read_run, write_report
from case_saliency.report import figures as F
from needs import require_fashion_mnist

sys.path.insert(0, str(Path(__file__).parent))
from runs_support import LAYER, TRANSFORM, SmallCNN  # noqa: E402

MATH = r"$\foo1$ x"  # a class name matplotlib's mathtext cannot parse


def small_cnn(seed: int = 0) -> SmallCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCNN().eval()


def one_line(text: str) -> str:
    """The CLI's error line: exactly one, no traceback."""
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------- 7: label spaces matched


def test_confusion_refuses_a_dataset_labelled_in_another_label_space(tmp_path):
    require_fashion_mnist()
    out = tmp_path / "lite.json"
    result = CliRunner().invoke(app, ["confusion", "--model", "efficientnet_lite0", "--data", "fashion-mnist:test",
                                      "--limit", "20", "--out", str(out)])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert "fashion-mnist:test" in line and "10 classes" in line
    assert "efficientnet_lite0" in line and "1000" in line and "case-saliency train" in line
    assert not out.exists()  # no 1000x1000 matrix written


def test_confusion_matches_class_names_where_both_have_them(fashion):
    from case_saliency.workflows.confusion import check_label_space, compute_confusion

    shuffled = CLASS_NAMES[1:] + CLASS_NAMES[:1]  # the same ten names, in another order
    model = LoadedModel.wrap(small_cnn(), TRANSFORM, class_names=shuffled, name="cnn")
    with pytest.raises(ValueError, match=r"class 0 is 'Trouser' in cnn but 'T-shirt/top' in fashion-mnist:test "
                                         r"\(10 of 10 names differ: the same classes in another order\)"):
        compute_confusion(model, fashion, limit=8, progress=False)
    cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "Trouser"]
    with pytest.raises(ValueError, match=r"10 of 10 names differ: other classes"):
        check_label_space(LoadedModel.wrap(small_cnn(), TRANSFORM, class_names=cifar, name="cifar"), fashion)
    variants = [name.replace(" ", "_").upper() for name in CLASS_NAMES[:9]] + ["Handbag"]
    check_label_space(LoadedModel.wrap(small_cnn(), TRANSFORM, class_names=variants), fashion)  # spellings, one variant
    named = LoadedModel.wrap(small_cnn(), TRANSFORM, class_names=list(CLASS_NAMES), name="cnn")
    assert compute_confusion(named, fashion, limit=8, progress=False).shape == (10, 10)
    # placeholder names ("class 3") and WordNet ids name no class: only the count is compared
    check_label_space(LoadedModel.wrap(small_cnn(), TRANSFORM, class_names=[f"class {i}" for i in range(10)]),
                      fashion)
    unnamed = LoadedModel.wrap(small_cnn(), TRANSFORM, name="bare")
    check_label_space(unnamed, fashion)  # neither names nor a count to compare: nothing to refuse
    with pytest.raises(ValueError, match="no labels"):
        check_label_space(named, open_dataset("samples"))


# ---------------------------------------------------------------- 9: EXIF orientation


def _oriented(path: Path, orientation: int) -> Image.Image:
    """A 40x20 image with a red left half, saved with an EXIF orientation tag; returns what a viewer shows."""
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20, 0] = 255
    array[:5, :, 2] = 200
    image = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}))
    with Image.open(path) as stored:
        return ImageOps.exif_transpose(stored).convert("RGB")


def test_exif_orientation_applied_when_images_are_read(tmp_path):
    (tmp_path / "cats").mkdir()
    shown = {"cats/turned.jpg": _oriented(tmp_path / "cats" / "turned.jpg", 6),
             "cats/mirrored.png": _oriented(tmp_path / "cats" / "mirrored.png", 8)}
    for dataset in (ImageFiles(tmp_path), ImageFolderDataset(tmp_path)):
        items = {image_id: image for image, _, image_id in (dataset[i] for i in range(len(dataset)))}
        for image_id, expected in shown.items():
            assert items[image_id].size == (20, 40)  # rotated as a viewer shows it, not the stored 40x20
            assert np.array_equal(np.asarray(items[image_id]), np.asarray(expected))
        assert dataset.identity()["orientation"] == "EXIF applied"  # recorded where the data is described


# ---------------------------------------------------------------- 12: EfficientNet-Lite with other weights


def test_lite_with_resnet_weights_is_one_line(tmp_path):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match=r"r18.pth does not fit EfficientNet-Lite0") as error:
        load_model("efficientnet_lite0", str(path))
    assert "\n" not in str(error.value) and "missing" in str(error.value) and "conv1.weight" in str(error.value)
    result = CliRunner().invoke(app, ["confusion", "--model", "efficientnet_lite0", "--weights", str(path),
                                      "--limit", "5", "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 2
    assert "does not fit EfficientNet-Lite0" in one_line(result.output)


# ---------------------------------------------------------------- 13: mathtext, meta.json, train --out


def _figures_with(name: str) -> list:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    maps = {name: rng.random((2, 16, 16))}
    curves = {name: rng.random((3, 5))}
    return [F.gallery_figure(image, maps, [name, name], [0.6, 0.3], agreement={name: 40.0}, titles={name: name}),
            F.confusion_heatmap(rng.integers(0, 9, (4, 4)), [name, f"{name} 2", "$", "a$b$c"]),
            F.confusion_heatmap(rng.integers(0, 9, (30, 30)), [f"{name}{i}" for i in range(30)]),
            F.agreement_histograms({name: rng.random(10) * 100}, threshold=50),
            F.drop_boxplots({name: rng.random(10)}, ylabel=name),
            F.deletion_insertion_curves(np.linspace(0, 1, 5), curves, curves)]


def test_every_figure_draws_names_as_text_never_mathtext(tmp_path):
    for fig in _figures_with(MATH):
        fig.savefig(io.BytesIO(), format="png")  # drawing parses any mathtext: this raised before
        texts = [text for text in fig.findobj(Text) if "$" in text.get_text()]
        assert texts, "the names are drawn"
        for text in texts:
            assert not text._preprocess_math(text.get_text())[1], text.get_text()  # drawn literally
    F.save_figure(_figures_with(MATH)[0], tmp_path, "gallery")  # PNG and PDF


def test_report_of_a_run_with_mathtext_class_names(tmp_path, fashion):
    from case_saliency.runs import run_diagnose

    names = list(CLASS_NAMES)
    names[:3] = [MATH, r"$\alpha$", "50$ & $x"]
    run = run_diagnose(small_cnn(), fashion, tmp_path / "run", methods=["gradcam"], n=4, seed=0, layer=LAYER,
                       transform=TRANSFORM, class_names=names, model_name="cnn", gallery=2, progress=False)
    np.save(run / "confusion.npy", np.eye(10, dtype=np.int64) * 5 + 1)
    page = write_report(run)
    assert page.exists() and "\\foo1" in page.read_text()

    meta = json.loads((run / "meta.json").read_text())
    meta["class_names"] = 5
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match=r"meta.json: class_names is 5, not a list of class names"):
        read_run(run)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "class_names" in one_line(result.output)


def test_train_out_an_existing_file_is_one_line(tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("not a folder")
    result = CliRunner().invoke(app, ["train", "--arch", "vgg", "--epochs", "1", "--train-limit", "10",
                                      "--out", str(target)])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert str(target) in line and "folder" in line
    assert target.read_text() == "not a folder"


# ---------------------------------------------------------------- 15: messages that name the cause


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes in a name")
def test_a_non_utf8_file_name_is_named_and_skipped(tmp_path):
    folder = os.fsencode(tmp_path)
    for name in (b"a.png", b"b\xff.png", b"c.png"):
        Image.new("RGB", (8, 8), (90, 20, 30)).save(os.path.join(folder, name), format="PNG")
    with pytest.warns(UserWarning, match=r"b\\xff\.png .*not valid UTF-8.*rename it"):
        dataset = ImageFiles(tmp_path)
    assert [dataset.image_id(i) for i in range(len(dataset))] == ["a.png", "c.png"]
    assert json.dumps(dataset.identity())  # the rest of the run can store ids and identity
    assert dataset[1][2] == "c.png"
    for name in (b"cats", b"d\xffogs"):  # a class folder so named: its files skipped, its name printable
        os.makedirs(os.path.join(folder, b"classes", name))
        Image.new("RGB", (8, 8)).save(os.path.join(folder, b"classes", name, b"x.png"), format="PNG")
    with pytest.warns(UserWarning, match=r"d\\xffogs/x\.png"):
        classes = ImageFolderDataset(tmp_path / "classes")
    assert classes.class_names == ["cats", "d\\xffogs"] and len(classes) == 1
    assert all(name.encode("utf-8") for name in classes.class_names)


def test_layer_run_twice_message_says_the_cause():
    from case_saliency.methods import get_method

    shared = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), shared, nn.Conv2d(4, 4, 3), shared,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = get_method("gradcam", model, target_layer="1")
    with pytest.raises(RuntimeError) as error:
        method.explain(torch.rand(1, 3, 16, 16))
    message = str(error.value)
    assert "uses this module twice" in message  # the one cause there was
    assert "another thread" in message and "its own copy of the model" in message  # the other, with its fix


def test_a_bad_option_value_names_the_spec_and_the_option():
    import torchvision

    from case_saliency.methods.spec import build_method, parse_method_spec

    with pytest.raises(ValueError, match=r"method spec 'finercam\(gamma=abc\)': option gamma takes a number"):
        parse_method_spec("finercam(gamma=abc)")
    with pytest.raises(ValueError, match=r"'case\(gamma=x\)'|option gamma"):
        parse_method_spec("case:finercam(gamma=x)")
    with pytest.raises(ValueError, match="option gamma takes a number"):
        build_method("finercam(gamma=abc)", torchvision.models.resnet18(num_classes=4), target_layer="layer4")
    assert parse_method_spec("finercam(gamma=0.5)").options == {"gamma": 0.5}
    assert parse_method_spec("finercam(gamma=2)").options == {"gamma": 2}


def test_fidelity_steps_beyond_the_pixels_are_refused(tmp_path, fashion):
    from case_saliency.metrics.fidelity import check_steps, deletion_insertion
    from case_saliency.runs import run_fidelity

    with pytest.raises(ValueError, match=r"steps=100000 is more than the 784 pixels of a 28x28 image"):
        check_steps(100000, (28, 28))
    check_steps(784, (28, 28))
    check_steps(0, (28, 28))  # no curves
    model = small_cnn()
    images = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="at most 784"):
        deletion_insertion(model, images, torch.rand(2, 28, 28), torch.zeros(2), steps=100000)
    with pytest.raises(ValueError, match="784 pixels"):
        run_fidelity(model, fashion, tmp_path / "fid", methods=["gradcam"], n=2, steps=100000, layer=LAYER,
                     transform=TRANSFORM, class_names=list(CLASS_NAMES), model_name="cnn", progress=False)
    assert not (tmp_path / "fid" / "results.csv").exists()


def test_a_dangling_symlink_as_out_is_named_and_nothing_is_promised(tmp_path, fashion):
    from case_saliency.runs import run_diagnose

    link = tmp_path / "runs-link"
    link.symlink_to(tmp_path / "gone" / "run")
    with pytest.raises(RunDirError, match=r"symbolic link to .*gone/run, which does not exist; create that folder"):
        run_diagnose(small_cnn(), fashion, link, methods=["gradcam"], n=2, layer=LAYER, transform=TRANSFORM,
                     class_names=list(CLASS_NAMES), model_name="cnn", progress=False)
    assert link.is_symlink() and not (tmp_path / "gone").exists()  # left as it was
    result = CliRunner().invoke(app, ["diagnose", "--model", "efficientnet_lite0", "--data", "samples:skimage/chelsea",
                                      "--methods", "gradcam", "--out", str(link), "--quiet"])
    line = one_line(result.output)
    assert result.exit_code == 2 and "symbolic link" in line and "rerun to resume" not in line, result.output


def test_a_meta_sample_that_is_not_a_list_is_named(tmp_path, fashion):
    from case_saliency.runs import run_diagnose

    def run():
        return run_diagnose(small_cnn(), fashion, tmp_path / "run", methods=["gradcam"], n=2, layer=LAYER,
                            transform=TRANSFORM, class_names=list(CLASS_NAMES), model_name="cnn", progress=False)

    meta_file = run() / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["sample"] = "0,1"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match=r'meta.json: sample is "0,1", not a list of dataset indices') as error:
        run()
    assert "invalid literal" not in str(error.value)


def test_out_inside_the_data_folder_is_warned_about(tmp_path):
    from case_saliency.data import out_inside_data

    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "a.png")
    dataset = ImageFiles(tmp_path / "data")
    message = out_inside_data(tmp_path / "data" / "runs" / "x", dataset)
    assert message is not None and "inside the data folder" in message and str(tmp_path / "data") in message
    assert out_inside_data(tmp_path / "runs" / "x", dataset) is None
    assert out_inside_data(tmp_path / "data" / "x", open_dataset("samples")) is None  # not read from a folder


# ---------------------------------------------------------------- found by the property tests


def test_authors_ties_with_a_one_pixel_top_set():
    """ties="authors" crashed (a negative-stride array handed to torch) whenever the top set is one pixel:
    k = 0.1% of a 28x28 map, the paper's policy on Fashion-MNIST at a small k."""
    from case_saliency.metrics import topk_agreement

    a = torch.arange(784.0).view(28, 28)
    b = torch.arange(784.0).flip(0).view(28, 28)
    assert float(topk_agreement(a, a, 0.1, ties="authors")) == 100.0
    assert float(topk_agreement(a, b, 0.1, ties="authors")) == 0.0
    batch = torch.stack([a, b])
    assert topk_agreement(batch, batch, 0.1, ties="authors").tolist() == [100.0, 100.0]
