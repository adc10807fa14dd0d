"""Sanity checks (Adebayo et al., 2018): cascading randomisation on a copy, a model trained on
shuffled labels (`train --shuffle-labels`), the per-step similarities and the class-sensitivity
verdict of the randomised model; the `sanity` command."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from case_saliency.cli import app
from case_saliency.metrics.sanity import map_similarity
from case_saliency.workflows.sanity import evenly_spaced, sanity_rows, summarise
from needs import needs_fashion_mnist
from runs_support import LAYER, TRANSFORM


def test_map_similarity_of_identical_and_unrelated_maps():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 16, 16, generator=generator)
    same = map_similarity(maps, maps * 2.0, k=10)
    assert torch.allclose(same["spearman"], torch.ones(3)) and torch.allclose(same["topk"], torch.full((3,), 100.0))
    assert torch.allclose(same["ssim"], torch.ones(3), atol=1e-5)  # each map min-max scaled first
    flipped = map_similarity(maps, -maps + 1, k=10)
    assert torch.allclose(flipped["spearman"], -torch.ones(3)) and (flipped["topk"] == 0).all()
    assert torch.isnan(map_similarity(maps[:, :5, :5], maps[:, :5, :5])["ssim"]).all()  # below the SSIM window


def test_evenly_spaced_steps_keep_the_fully_randomised_model():
    assert evenly_spaced(10, None) == list(range(10)) and evenly_spaced(10, 1) == [9]
    assert evenly_spaced(10, 3) == [0, 4, 9]
    assert evenly_spaced(3, 12) == [0, 1, 2]


@needs_fashion_mnist
def test_sanity_rows_and_verdicts(cnn, fashion):
    images = torch.stack([TRANSFORM(fashion[i][0]) for i in range(12)])
    ids = [f"test:{i}" for i in range(12)]
    rows = sanity_rows(cnn, ["gradcam", "case"], images, ids, layer=LAYER, seed=0, max_steps=2)
    steps = sorted({r["step"] for r in rows})
    assert steps == [0, 1, 4]  # SmallCNN's 4 layers (fc, features.6, .3, .0): the first and the last step
    original = [r for r in rows if r["step"] == 0]
    assert all(r["spearman"] == pytest.approx(1.0) and r["topk"] == 100.0 for r in original)
    last = max(steps)
    randomised = [r["spearman"] for r in rows if r["step"] == last and r["method"] == "gradcam"]
    # Grad-CAM depends on the weights: a random model's maps are others (NaN: a constant map)
    assert np.nanmedian(randomised) < 0.5
    summary = summarise(rows)
    assert {(s["method"], s["step"]) for s in summary} == {(m, s) for m in ("gradcam", "case") for s in steps}
    for entry in summary:
        chosen = [r["agreement"] for r in rows if r["method"] == entry["method"] and r["step"] == entry["step"]]
        assert entry["mean_agreement"] == pytest.approx(float(np.nanmean(chosen)))
        assert entry["passes"] == (entry["p_below"] < 0.05)


@needs_fashion_mnist
def test_train_shuffle_labels_holdout_and_the_sanity_command(tmp_path, caplog):
    runner = CliRunner()
    common = ["train", "--arch", "resnet", "--epochs", "1", "--train-limit", "256", "--test-limit", "200",
              "--no-confusion", "--out", str(tmp_path), "--threads", "1"]
    plain = runner.invoke(app, [*common, "--holdout", "100"])
    shuffled = runner.invoke(app, [*common, "--shuffle-labels"])
    assert plain.exit_code == 0 and shuffled.exit_code == 0, shuffled.output
    meta = json.loads((tmp_path / "fashion-resnet-seed0-shuffled.json").read_text())
    assert meta["shuffled_labels"] is True
    plain_meta = json.loads((tmp_path / "fashion-resnet-seed0.json").read_text())
    assert plain_meta["shuffled_labels"] is False and plain_meta["holdout"] == 100
    # The held-out training images' confusion matrix: a contrast from data a test-split diagnostic does not sample.
    from case_saliency.data import open_dataset
    from case_saliency.models import load_model
    from case_saliency.workflows.confusion import matrix_neighbours

    held = tmp_path / plain_meta["confusion_heldout"]
    record = json.loads(held.read_text())
    assert record["split"] == "fashion-mnist:train-heldout" and np.sum(record["matrix"]) == 100
    assert record["data"]["held_out"] == 100 and "not trained on" in record["data"]["part"]
    loaded = load_model(str(tmp_path / "fashion-resnet-seed0.pt"))
    with caplog.at_level(logging.WARNING, logger="case_saliency"):
        matrix_neighbours(held, loaded, open_dataset("fashion-mnist:test").identity())
    assert "the split this run samples" not in caplog.text
    out = tmp_path / "sanity"
    result = runner.invoke(app, ["sanity", "--model", str(tmp_path / "fashion-resnet-seed0.pt"), "--n", "4",
                                 "--methods", "gradcam", "--max-steps", "2", "--out", str(out),
                                 "--shuffled", str(tmp_path / "fashion-resnet-seed0-shuffled.pt")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert [s["layer"] for s in summary][0] == "original" and summary[-1]["layer"] == "shuffled-labels"
    assert "shuffled-labels" in result.output and "passes" in result.output
    bad = runner.invoke(app, ["sanity", "--model", str(tmp_path / "fashion-resnet-seed0.pt"), "--methods", "nope",
                              "--out", str(out)])
    assert bad.exit_code == 2 and "unknown method" in bad.output
