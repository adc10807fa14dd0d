"""The planted ground truth: a tiny Fashion-MNIST model trained in the suite with an 11th class,
"garment with a patch"; the patch class's Grad-CAM map lands on the patch; the scores against
hand computations (and Quantus' ``Focus`` in tests/test_quantus_checks.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats as sps

from case_saliency.metrics.planted import (bootstrap_mean, grid_pointing, mass_share, planted_evidence,
                                           quadrant_masks)
from needs import needs_fashion_mnist


def test_mass_share_and_planted_evidence_by_hand():
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3], maps[0, 1, 1] = 3.0, 1.0, -5.0  # the negative value is ignored
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[:, :2, :2] = True
    shares = mass_share(maps, region)
    assert shares[0].item() == pytest.approx(0.75) and torch.isnan(shares[1])  # map 1: no positive mass
    garment = torch.ones(2, 4, 4, dtype=torch.bool)
    same = planted_evidence(maps, maps, region, garment)
    assert same.contrast[0].item() == pytest.approx(0.0)  # the same map for both classes: no contrast
    assert same.garment_share[0].item() == pytest.approx(0.25)  # garment outside the patch
    other = torch.zeros(2, 4, 4)
    other[:, 3, 3] = 1.0
    apart = planted_evidence(maps, other, region, garment)
    assert apart.contrast[0].item() == pytest.approx(0.75) and apart.garment_share[0].item() == pytest.approx(1.0)


def test_grid_pointing_quadrants():
    masks = quadrant_masks(4, 6, torch.tensor([0, 1, 2, 3]))
    assert masks[0, :2, :3].all() and masks[0].sum() == 6 and masks[3, 2:, 3:].all()
    assert (masks.sum(0) == 1).all()  # the four quadrants tile the grid
    uniform = torch.ones(4, 4, 6)
    assert torch.allclose(grid_pointing(uniform, torch.arange(4)), torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="0..3"):
        quadrant_masks(4, 4, torch.tensor([4]))


def test_bootstrap_mean_matches_scipy_percentile_interval():
    values = torch.tensor(np.random.default_rng(0).gamma(2.0, 1.0, size=80))
    mean, low, high = bootstrap_mean(values, resamples=4000, seed=1)
    reference = sps.bootstrap((values.numpy(),), np.mean, n_resamples=4000, method="percentile",
                              confidence_level=0.95, random_state=np.random.default_rng(1)).confidence_interval
    assert mean == pytest.approx(float(values.mean()))
    width = reference.high - reference.low
    assert abs(low - reference.low) < 0.1 * width and abs(high - reference.high) < 0.1 * width  # Monte Carlo error
    assert bootstrap_mean(values, resamples=4000, seed=1) == (mean, low, high)  # seeded
    assert all(np.isnan(bootstrap_mean(torch.tensor([float("nan")]))))


@pytest.mark.slow
@needs_fashion_mnist
def test_tiny_planted_model_trains_resumes_and_its_patch_map_lands_on_the_patch(tmp_path):
    from case_saliency import get_method
    from case_saliency.models import load_model
    from case_saliency.data.fashion_mnist import FashionMNIST
    from case_saliency.workflows.planted import (LAYER, PATCH_CLASS, PlantedSettings, load_planted, planted_rows,
                                                 train_planted)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        short = PlantedSettings(seed=0, steps=20, batch_size=32, train_limit=3000)
        stopped = tmp_path / "stopped"

        def stop_at_15(step: int, loss: float) -> None:
            if step == 15:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train_planted(stopped, short, save_every=10, progress=stop_at_15)
        assert (stopped / "planted-seed0.state.pt").exists() and not (stopped / "planted-seed0.pt").exists()
        resumed = train_planted(stopped, short, save_every=10)  # continues from step 10
        whole = train_planted(tmp_path / "whole", short, save_every=1000)
        a, b = load_planted(resumed).state_dict(), load_planted(whole).state_dict()
        assert all(torch.equal(a[key], b[key]) for key in a)  # a resumed training equals an uninterrupted one
        assert train_planted(stopped, short) == resumed  # a finished checkpoint is reused
        with pytest.raises(ValueError, match="trained with"):
            train_planted(stopped, PlantedSettings(seed=0, steps=10))
        # 80 steps of 32 images: the patch is learned (seeds 0 and 1: every patched garment its class)
        resumed = train_planted(tmp_path / "learned", PlantedSettings(seed=0, steps=80, batch_size=32,
                                                                      train_limit=3000))
        loaded = load_model(str(resumed))  # a checkpoint every command reads
        assert loaded.class_names[PATCH_CLASS] == "garment with a patch" and len(loaded.class_names) == 11

        model = load_planted(resumed)
        images, labels = FashionMNIST("test").tensors()
        index = torch.arange(40)
        methods = {"gradcam": get_method("gradcam", model, target_layer=LAYER)}
        rows = planted_rows(model, methods, images[index], labels[index], [f"test:{i}" for i in range(40)],
                            torch.Generator().manual_seed(3))
    finally:
        torch.set_num_threads(threads)
    assert len(rows) == 40
    top1 = np.array([r["top1"] for r in rows])
    assert (top1 == PATCH_CLASS).mean() > 0.8  # the patch is learned: patched garments are the patch class
    share = np.array([r["patch_share"] for r in rows])
    area = 64 / 784
    # Grad-CAM's patch-class map lands on the patch: several times the patch's share of the image
    assert np.nanmedian(share) > 3 * area, share
    assert np.nanmean(np.array([r["contrast"] for r in rows])) > 2 * area
    assert json.dumps(rows[0])  # plain values, ready for a CSV or a run's rows
