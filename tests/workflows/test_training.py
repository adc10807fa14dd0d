"""Training the Fashion-MNIST families (short runs on seeded subsets), checkpoints loaded back
safely, and confusion matrices that refuse another model or other data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.workflows.confusion import (StaleConfusionMatrix, compute_confusion, confusion_neighbours,
                                               default_path, load_confusion, matrix_neighbours, save_confusion)
from case_saliency.core.contrast import ConfusionNeighbours
from case_saliency.data import open_dataset
from needs import needs_fashion_mnist
from case_saliency.models import load_model
from case_saliency.models.fashion import FAMILIES, build
from case_saliency.workflows.training import evaluate, train_fashion

pytestmark = needs_fashion_mnist


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ResNet-like model trained for one epoch on 3,000 images (seconds), seed 0."""
    out = tmp_path_factory.mktemp("train")
    state_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is as fast, and immune to a busy machine
    try:
        result = train_fashion("resnet", seed=0, epochs=1, out_dir=out, train_limit=3000, test_limit=1000,
                               progress=False)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.get_rng_state(), state_before)  # the global RNG is left alone
    return result


def test_short_training_learns(trained):
    meta = trained.metadata
    assert meta["test_accuracy"] > 60.0  # chance is 10%
    assert meta["architecture"] == "resnet" and meta["seed"] == 0 and meta["train_data"]["used"] == 3000
    on_disk = json.loads(trained.metadata_path.read_text())
    assert on_disk["test_accuracy"] == meta["test_accuracy"] and len(on_disk["data_hash"]) == 64
    assert on_disk["checkpoint_sha256"] and on_disk["target_layer"] == "layer3"


def test_checkpoint_loads_safely_and_reproduces_its_accuracy(trained):
    raw = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)  # plain values only
    assert raw["meta"]["architecture"] == "resnet"
    loaded = load_model(str(trained.checkpoint))
    assert loaded.class_names[0] == "T-shirt/top" and loaded.input_size == 28 and loaded.target_layer == "layer3"
    test = open_dataset("fashion-mnist:test")
    images, labels = test.tensors()
    generator = torch.Generator().manual_seed(0)
    torch.randperm(60000, generator=generator)  # the training subset draw, then the test subset's
    keep = torch.randperm(10000, generator=generator)[:1000]
    accuracy, _ = evaluate(loaded.model, images[keep], labels[keep])
    assert accuracy == pytest.approx(trained.metadata["test_accuracy"])
    # The PIL path (transform) gives the same inputs as the tensor path used in training.
    image, _, _ = test[int(keep[0])]
    direct = (images[keep[0]] - 0.2860) / 0.3530
    assert torch.allclose(loaded.transform(image), direct, atol=1e-6)


@pytest.mark.parametrize("architecture", sorted(FAMILIES))
def test_families_are_seeded_and_have_spatial_target_layers(architecture):
    first, second = build_seeded(architecture, 3), build_seeded(architecture, 3)
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    other = build_seeded(architecture, 4)
    pairs = zip(first.state_dict().values(), other.state_dict().values(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)
    loaded_layer = FAMILIES[architecture][1]
    outputs = {}
    module = dict(first.named_modules())[loaded_layer]
    module.register_forward_hook(lambda m, i, o: outputs.setdefault("a", o))
    logits = first(torch.zeros(2, 1, 28, 28))
    assert logits.shape == (2, 10) and outputs["a"].shape[-2:] == (7, 7)


def build_seeded(architecture, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(architecture)


def test_confusion_matrix_stored_and_refused_when_stale(trained, tmp_path, caplog):
    loaded = load_model(str(trained.checkpoint))
    test = open_dataset("fashion-mnist:test")
    matrix = compute_confusion(loaded, test, batch_size=250, limit=500, progress=False)
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    labels = test.labels[:500]
    assert matrix.sum(1).tolist() == np.bincount(labels, minlength=10).tolist()  # rows are true classes
    path = default_path(loaded, test.name)
    assert path.parent == trained.checkpoint.parent and path.name.startswith("fashion-resnet-seed0.confusion-")
    save_confusion(path, matrix, loaded.identity, test.identity(), loaded.class_names)
    strategy = confusion_neighbours(path, loaded, k=2, data_identity=test.identity())
    reference = ConfusionNeighbours(matrix, k=2)
    assert torch.equal(strategy.neighbours, reference.neighbours)
    assert torch.equal(matrix_neighbours(path, loaded, k=2).neighbours, reference.neighbours)
    assert json.loads(path.read_text())["split"] == "fashion-mnist:test"  # the split it was computed on
    with caplog.at_level(logging.WARNING, logger="case_saliency"):
        matrix_neighbours(path, loaded, test.identity())  # a diagnostic sampling the matrix's own split: warned
    assert "the split this run samples" in caplog.text
    other_model = dict(loaded.identity, weights_sha256="0" * 64, name="other")
    with pytest.raises(StaleConfusionMatrix, match="computed for model 'fashion-resnet-seed0'"):
        load_confusion(path, other_model)
    with pytest.raises(StaleConfusionMatrix, match="not on 'fashion-mnist:train'"):
        load_confusion(path, loaded.identity, open_dataset("fashion-mnist:train").identity())
    with pytest.raises(ValueError, match="no labels"):
        compute_confusion(loaded, open_dataset("samples"), progress=False)


@pytest.mark.slow
def test_cli_train_and_confusion(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "--arch", "alexnet", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "choose one of" in bad.output
    threads = torch.get_num_threads()
    done = runner.invoke(app, ["train", "--arch", "vgg", "--epochs", "1", "--train-limit", "500", "--test-limit", "200",
                               "--out", str(tmp_path), "--seed", "2", "--threads", "1"])
    torch.set_num_threads(threads)
    assert done.exit_code == 0, done.output
    checkpoint = tmp_path / "fashion-vgg-seed2.pt"
    assert checkpoint.exists() and (tmp_path / "fashion-vgg-seed2.json").exists()
    result = runner.invoke(app, ["confusion", "--model", str(checkpoint), "--limit", "300"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and (tmp_path / "fashion-vgg-seed2.confusion-fashion-mnist_test.json").exists()
    missing = runner.invoke(app, ["confusion", "--model", str(tmp_path / "nope.pt")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# EfficientNet-Lite0 fine-tuned from its offline ImageNet weights: the paper's seed-ablation setting
# (a pretrained network fine-tuned on a small label set), here at 64 px on 600 images for speed.
LITE_TRAIN, LITE_TEST, LITE_SIZE = 600, 300, 64


@pytest.fixture(scope="module")
def lite_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lite")
    state_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_fashion("efficientnet_lite0", pretrained=True, seed=1, epochs=2, out_dir=out,
                               train_limit=LITE_TRAIN, test_limit=LITE_TEST, input_size=LITE_SIZE, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.get_rng_state(), state_before)
    return result


@pytest.mark.slow
def test_lite0_fine_tune_learns_and_keeps_its_frozen_imagenet_stages(lite_trained):
    from case_saliency.models.efficientnet_lite import efficientnet_lite

    meta = lite_trained.metadata
    assert meta["test_accuracy"] > 50.0, meta["history"]  # chance is 10%
    assert meta["architecture"] == "efficientnet_lite0" and meta["pretrained"] is True
    assert meta["input_size"] == LITE_SIZE and meta["in_channels"] == 3 and meta["target_layer"] == "bn2"
    assert meta["frozen_stages"] == 5 and meta["train_data"]["used"] == LITE_TRAIN
    assert "ImageNet" in meta["init"] and len(meta["history"]) == 2
    assert 0 < meta["trainable_parameters"] < meta["num_parameters"]
    raw = torch.load(lite_trained.checkpoint, map_location="cpu", weights_only=True)
    imagenet = efficientnet_lite(0).state_dict()
    state = raw["state_dict"]
    # Frozen: the stem and stages 0-4 are the ImageNet weights, BatchNorm statistics included.
    for key in ("conv_stem.weight", "bn1.running_mean", "blocks.4.2.conv_pwl.weight", "blocks.4.2.bn3.running_var"):
        assert torch.equal(state[key], imagenet[key]), key
    # Fine-tuned: the later stages and the head moved; the classifier is new (10 classes).
    for key in ("blocks.5.0.conv_pw.weight", "conv_head.weight", "bn2.running_mean"):
        assert not torch.equal(state[key], imagenet[key]), key
    assert state["classifier.weight"].shape == (10, 1280)


@pytest.mark.slow
def test_lite0_checkpoint_loads_safely_reproduces_accuracy_and_confusion(lite_trained):
    loaded = load_model(str(lite_trained.checkpoint))
    assert loaded.input_size == LITE_SIZE and loaded.target_layer == "bn2" and loaded.class_names[6] == "Shirt"
    test = open_dataset("fashion-mnist:test")
    generator = torch.Generator().manual_seed(1)
    torch.randperm(60000, generator=generator)  # the training subset draw, then the test subset's
    keep = torch.randperm(10000, generator=generator)[:LITE_TEST].tolist()
    images = loaded.preprocess([test[i][0] for i in keep])  # the PIL path users take
    assert images.shape == (LITE_TEST, 3, LITE_SIZE, LITE_SIZE)
    with torch.no_grad():
        predictions = torch.cat([loaded.model(images[i:i + 100]).argmax(1) for i in range(0, LITE_TEST, 100)])
    labels = torch.as_tensor(test.labels[keep])
    accuracy = float((predictions == labels).double().mean() * 100)
    assert accuracy == pytest.approx(lite_trained.metadata["test_accuracy"], abs=100.0 / LITE_TEST)
    # The matrix stored by training is that evaluation's, and passes the identity check for this model.
    path = lite_trained.confusion_path
    assert path == default_path(loaded, test.name)
    record = load_confusion(path, loaded.identity)
    expected = np.zeros((10, 10))
    np.add.at(expected, (labels.numpy(), predictions.numpy()), 1)
    assert record["matrix"].sum() == LITE_TEST and np.abs(record["matrix"] - expected).sum() <= 2
    assert matrix_neighbours(path, loaded, k=3).neighbours.shape == (10, 3)
    # `case-saliency confusion` works on the fine-tuned checkpoint too (its own PIL pass).
    result = CliRunner().invoke(app, ["confusion", "--model", str(lite_trained.checkpoint), "--limit", "100",
                                      "--out", str(path.with_name("cli-confusion.json"))])
    assert result.exit_code == 0, result.output
    stored = json.loads(path.with_name("cli-confusion.json").read_text())
    assert np.asarray(stored["matrix"]).sum() == 100 and stored["model"]["weights_sha256"] == \
        loaded.identity["weights_sha256"]


def test_cli_train_refuses_pretrained_without_weights(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--arch", "vgg", "--pretrained", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "only efficientnet_lite0" in result.output
    result = runner.invoke(app, ["train", "--arch", "resnet", "--size", "64", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--size" in result.output
    with pytest.raises(ValueError, match="has no pretrained weights"):
        train_fashion("densenet", pretrained=True, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written
