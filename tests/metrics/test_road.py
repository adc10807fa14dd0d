"""ROAD (Rong, Leemann et al., ICML 2022) against Quantus 0.6.0's ``ROAD`` and its ``noisy_linear_imputation``
on the same images, maps and model, and against the imputation's definition itself.

Tolerances: the imputation to 1e-6 (ours solves in float64 and stores float32 images; Quantus keeps the
images' float32); ROAD's accuracies exactly, with the noise off in both (Quantus draws its noise from NumPy's
global generator, ours from a torch generator: the draws cannot be equal) and maps without ties (Quantus orders
pixels with NumPy's unstable argsort, ours by position among ties). Quantus' ROAD flattens the map broadcast to
the image's channels but imputes by pixel index, so it only runs on one-channel images: the check uses
Fashion-MNIST; Quantus has no LeRF, so LeRF is checked as Quantus' MoRF of the reversed maps (max + 1 - map)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from case_saliency import get_method
from case_saliency.metrics import noisy_linear_imputation, road
from case_saliency.metrics.fidelity import IMPUTATION_NEIGHBOURS

quantus = pytest.importorskip("quantus")

from needs import needs_fashion_mnist  # noqa: E402
from runs_support import LAYER, TRANSFORM  # noqa: E402


def _removed(b: int, h: int, w: int, share: float, seed: int) -> torch.Tensor:
    return torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed)) < share


@pytest.mark.parametrize("channels", [1, 3])
def test_imputation_equals_quantus_without_noise(channels):
    from quantus.functions.perturb_func import noisy_linear_imputation as theirs

    images = torch.rand(2, channels, 12, 9, generator=torch.Generator().manual_seed(0))
    removed = _removed(2, 12, 9, 0.4, 1)
    ours = noisy_linear_imputation(images, removed, noise=0.0)
    for i in range(2):
        indices = np.flatnonzero(removed[i].numpy().reshape(-1))
        expected = theirs(images[i].numpy(), indices, noise=0.0)
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(ours[~removed[:, None].expand_as(images)], images[~removed[:, None].expand_as(images)])


def test_each_imputed_pixel_is_the_weighted_mean_of_its_neighbours():
    images = torch.rand(1, 2, 10, 10, generator=torch.Generator().manual_seed(3)).double()
    removed = _removed(1, 10, 10, 0.6, 4)
    out = noisy_linear_imputation(images, removed, noise=0.0)[0]
    for y, x in removed[0].nonzero().tolist():
        around = [(y + dy, x + dx, wt) for dy, dx, wt in IMPUTATION_NEIGHBOURS if 0 <= y + dy < 10 and 0 <= x + dx < 10]
        mean = sum(wt * out[:, a, b] for a, b, wt in around) / sum(wt for _, _, wt in around)
        assert torch.allclose(out[:, y, x], mean, atol=1e-9)


def test_imputation_noise_has_the_asked_sd_and_is_seeded():
    images = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(5))
    removed = _removed(1, 40, 40, 0.5, 6)
    plain = noisy_linear_imputation(images, removed, noise=0.0)
    noisy = noisy_linear_imputation(images, removed, noise=0.2, generator=torch.Generator().manual_seed(7))
    again = noisy_linear_imputation(images, removed, noise=0.2, generator=torch.Generator().manual_seed(7))
    difference = (noisy - plain)[removed[:, None]]
    assert torch.equal(noisy, again) and difference.std().item() == pytest.approx(0.2, rel=0.1)
    with pytest.raises(ValueError, match="all 1600 pixels removed"):
        noisy_linear_imputation(images, torch.ones(1, 40, 40, dtype=torch.bool), noise=0.0)


@needs_fashion_mnist
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_equals_quantus_road(cnn, fashion, order):
    images = torch.stack([TRANSFORM(fashion[i][0]) for i in range(12)])  # (12, 1, 28, 28)
    with torch.no_grad():
        target = cnn(images).argmax(1)
    maps = get_method("gradcam", cnn, target_layer=LAYER).explain(images, target, relu=True).maps
    # A jitter far below the maps' steps breaks their ties, so both orders are the maps' own.
    maps = maps + 1e-6 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(0))
    percentages = [1, 5, 10, 20, 40, 60, 80, 95]
    ours = road(cnn, images, maps, target, percentages, order, noise=0.0)
    quantus_maps = maps if order == "morf" else maps.max() + 1 - maps  # reversed order, positive (Quantus asks)
    theirs = quantus.ROAD(percentages=percentages, noise=0.0, normalise=False, disable_warnings=True)(
        model=cnn, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=quantus_maps.numpy()[:, None],
        device="cpu")
    assert ours.accuracy.tolist() == pytest.approx([theirs[p] for p in percentages], abs=1e-12)
    assert ours.correct.shape == (12, 8) and ours.probability.shape == (12, 8)
    # The accuracy falls as the most relevant pixels go and stays high as the least relevant do.
    if order == "morf":
        assert ours.accuracy[-1] < ours.accuracy[0]
