"""Confusions end to end: named pairs from a matrix, `confusion` printing names, `diagnose --pairs`
sampling the images whose top-1/top-2 are a pair, `explain --confused`, and `--n 0` meaning all."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.runs.settings import sample_warning
from case_saliency.workflows.confusion import PairSubset, confused_pairs, pair_filter, parse_pair, select_pairs

NAMES = ["cat", "dog", "fox"]
MATRIX = np.array([[8, 2, 0], [5, 5, 0], [1, 0, 9]])


def test_confused_pairs_are_named_and_ranked_by_rate():
    pairs = confused_pairs(MATRIX, NAMES, top=10)
    assert [(p.true_name, p.predicted_name, round(p.rate, 2), p.count) for p in pairs] == [
        ("dog", "cat", 0.5, 5), ("cat", "dog", 0.2, 2), ("fox", "cat", 0.1, 1)]
    assert str(pairs[0]) == "dog -> cat: 50.0% (5)"
    assert len(confused_pairs(MATRIX, NAMES, top=1)) == 1 and confused_pairs(MATRIX)[0].true_name == "class 1"
    with pytest.raises(ValueError, match="2 class names for a 3-class matrix"):
        confused_pairs(MATRIX, NAMES[:2])


def test_pairs_parse_by_name_and_filter_either_order():
    assert parse_pair("Dog:cat", NAMES) == (1, 0)
    with pytest.raises(ValueError, match="A:B"):
        parse_pair("dog", NAMES)
    keep = pair_filter([(0, 1)])
    assert keep(np.array([[1, 0], [0, 1], [0, 2]])).tolist() == [True, True, False]


class Rigged(torch.nn.Module):
    """Logits set by the image's mean brightness: dark -> cat then dog; bright -> fox then cat."""

    def forward(self, x):
        bright = (x.mean(dim=(1, 2, 3)) > 0).float()[:, None]
        return bright * torch.tensor([[2.0, 0.0, 3.0]]) + (1 - bright) * torch.tensor([[3.0, 2.0, 0.0]])


def test_pair_selection_keeps_the_images_whose_top2_is_the_pair(tmp_path):
    from case_saliency.data import open_dataset
    from case_saliency.models import LoadedModel
    from case_saliency.models.preprocess import Preprocess

    for label, value in (("cat", 10), ("cat", 240), ("dog", 20), ("fox", 250)):
        folder = tmp_path / label
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(folder / f"{value}.png")
    dataset = open_dataset(f"imagefolder:{tmp_path}")
    loaded = LoadedModel.wrap(Rigged(), transform=Preprocess(8, 8, (0.5,) * 3, (0.5,) * 3), class_names=NAMES)
    subset = select_pairs(loaded, dataset, ["Dog:Cat"], progress=False)
    assert isinstance(subset, PairSubset) and sorted(subset[i][2] for i in range(len(subset))) == [
        "cat/10.png", "dog/20.png"]
    assert subset.identity()["pairs"] == ["dog:cat"] and subset.identity()["count"] == 2
    with pytest.raises(ValueError, match="none of the 4 images"):
        select_pairs(loaded, dataset, ["dog:fox"], progress=False)


def test_a_sample_of_all_images_is_never_short():
    assert sample_warning({"short": True, "requested": 0, "size": 217}) is None
    assert "not the 300 asked for" in sample_warning({"short": True, "requested": 300, "size": 217,
                                                       "dataset_size": 217})


def test_explain_confused_picks_the_images_of_the_most_confused_pairs(tmp_path):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.png")
    # a matrix for Lite0 whose most confused pair is Egyptian cat / tiger cat (chelsea's top two)
    matrix = np.eye(1000, dtype=np.int64) * 10
    matrix[285, 282] = 9
    path = tmp_path / "confusion.json"
    path.write_text(json.dumps({"matrix": matrix.tolist()}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", str(photos), "--model", "efficientnet_lite0", "--confused", str(path),
                                      "--out", str(out), "--methods", "gradcam"])
    assert result.exit_code == 0, result.output
    assert "chelsea.png: Egyptian cat" in result.output and "coffee" not in result.output
    assert (out / "chelsea.explain.png").is_file()


SMALL = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3))
'''


def test_diagnose_pairs_runs_on_the_pair_images_only_and_n0_is_all(tmp_path):
    from case_saliency.models import load_model
    from case_saliency.runs import RunDir

    source = tmp_path / "small.py"
    source.write_text(SMALL)
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(12):
        folder = data / NAMES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (data / "classes.txt").write_text("\n".join(NAMES) + "\n")
    loaded = load_model(f"{source}:build", class_names=NAMES)
    from case_saliency.data import open_dataset

    dataset = open_dataset(f"imagefolder:{data}")
    tops = [tuple(loaded.model(loaded.preprocess([dataset[i][0]])).topk(2).indices[0].tolist())
            for i in range(len(dataset))]
    a, b = tops[0]
    expected = sum(1 for pair in tops if set(pair) == {a, b})
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["diagnose", "--model", f"{source}:build", "--data", f"imagefolder:{data}",
                                      "--class-names", str(data / "classes.txt"), "--pairs", f"{NAMES[a]}:{NAMES[b]}",
                                      "--n", "0", "--all", "--methods", "gradcam", "--out", str(out), "--quiet",
                                      "--workers", "0", "--gallery", "0"])
    assert result.exit_code == 0, result.output
    assert f"{expected} of the 12 images" in result.output and "asked for" not in result.output
    rows = RunDir.read(out).typed_rows()
    assert len(rows) == expected and all({row["class1"], row["class2"]} == {a, b} for row in rows)
    # explain --confused RUN: the run's closest top-1/top-2 images, read back from its dataset
    explained = CliRunner().invoke(app, ["explain", "--confused", str(out), "--n", "2", "--model", f"{source}:build",
                                         "--class-names", str(data / "classes.txt"), "--methods", "gradcam",
                                         "--out", str(tmp_path / "explained")])
    assert explained.exit_code == 0, explained.output
    closest = sorted(rows, key=lambda row: row["prob1"] - row["prob2"])[:2]
    for row in closest:
        assert f"{row['image_id']}: {NAMES[row['class1']]} (" in explained.output
    assert len(list((tmp_path / "explained").glob("*.explain.png"))) == min(2, expected)
