"""`train --holdout` for every architecture: EfficientNet-Lite too holds images out of its training subset
and stores the confusion matrix of the saved checkpoint on them, on its own preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from case_saliency.cli import app
from needs import needs_fashion_mnist

pytestmark = needs_fashion_mnist


def test_lite_holdout_stores_the_checkpoints_confusion_on_the_held_out_images(tmp_path):
    from case_saliency.data.fashion_mnist import FashionMNIST
    from case_saliency.models import load_model
    from case_saliency.workflows.confusion import load_confusion
    from case_saliency.workflows.training import upsampled

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["train", "--arch", "efficientnet_lite0", "--pretrained", "--epochs", "1",
                                          "--train-limit", "90", "--test-limit", "30", "--size", "32",
                                          "--holdout", "30", "--no-confusion", "--seed", "3", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "confusion on the 30 held-out training images" in result.output
    meta = json.loads((tmp_path / "fashion-efficientnet_lite0-seed3.json").read_text())
    assert meta["holdout"] == 30 and meta["train_data"]["used"] == 60
    path = tmp_path / meta["confusion_heldout"]
    loaded = load_model(str(tmp_path / "fashion-efficientnet_lite0-seed3.pt"))
    record = load_confusion(path, loaded.identity)
    matrix = record["matrix"]
    assert int(matrix.sum()) == 30 and record["data"]["held_out"] == 30 and record["split"].endswith("-heldout")
    # The matrix is the checkpoint's predictions on the 30 images of the training split it did not train on:
    # recompute them from the same seeded draws (the training subset, then the held-out order).
    train = FashionMNIST("train")
    images, labels = train.tensors()
    generator = torch.Generator().manual_seed(3)
    subset = torch.randperm(len(labels), generator=generator)[:90]
    torch.randperm(10000, generator=generator)  # the test subset's draw (of the 10,000-image split)
    images, labels = images[subset], labels[subset]
    held = torch.randperm(90, generator=generator)[:30]
    with torch.no_grad():
        predicted = torch.cat([loaded.model(x) for x in upsampled(images[held], loaded.transform)]).argmax(1)
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (labels[held].numpy(), predicted.numpy()), 1)
    assert np.array_equal(matrix, expected)


def test_holdout_larger_than_the_training_subset_is_refused(tmp_path):
    from case_saliency.workflows.training import train_fashion

    with pytest.raises(ValueError, match="holdout=100: give 0 < N < 50 training images"):
        train_fashion("efficientnet_lite0", pretrained=True, train_limit=50, holdout=100, out_dir=tmp_path,
                      input_size=32, epochs=1, progress=False)
