"""Our numbers against Quantus 0.6.0 (an independent implementation) on the same maps and model:
its ``Focus`` against our grid pointing game, its ``MPRT`` against our cascading randomisation's
Spearman similarities, and its ``RandomLogit`` (with Spearman) against our similarity of a
class's map to a random other class's. Tolerances are stated per test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

quantus = pytest.importorskip("quantus")

from case_saliency import get_method  # noqa: E402
from case_saliency.metrics import spearman  # noqa: E402
from case_saliency.metrics.planted import grid_pointing  # noqa: E402
from case_saliency.workflows.sanity import cascading_randomisation, randomisable_layers, sanity_rows  # noqa: E402
from needs import needs_fashion_mnist  # noqa: E402
from runs_support import LAYER, TRANSFORM  # noqa: E402

# An independent reference (Quantus' metrics on a trained model): in the full suite.
pytestmark = [needs_fashion_mnist, pytest.mark.slow]


@pytest.fixture(scope="module")
def batch(fashion):
    images = torch.stack([TRANSFORM(fashion[i][0]) for i in range(6)])
    labels = torch.tensor([fashion[i][1] for i in range(6)])
    return images, labels


def _explainer(layer: str):
    """Quantus' explain_func: our Grad-CAM maps (B, 1, H, W) as NumPy, for the model it is given."""
    def explain(model, inputs, targets, **kwargs):
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(targets)).long()
        maps = get_method("gradcam", model, target_layer=layer).explain(x, y, relu=True, normalize=False).maps
        return maps.detach().numpy()[:, None]
    return explain


def test_focus_equals_our_grid_pointing(cnn, batch):
    images, _ = batch
    mosaics = torch.stack([torch.cat([torch.cat([images[0], images[1]], -1), torch.cat([images[2], images[3]], -1)],
                                     -2), torch.cat([torch.cat([images[4], images[5]], -1),
                                                     torch.cat([images[0], images[2]], -1)], -2)])  # (2, 1, 56, 56)
    quadrant = torch.tensor([1, 2])
    with torch.no_grad():
        target = cnn(mosaics).argmax(1)
    maps = get_method("gradcam", cnn, target_layer=LAYER).explain(mosaics, target, relu=True).maps  # (2, 56, 56)
    ours = grid_pointing(maps, quadrant).numpy()
    indicator = [tuple(int(q == int(i)) for q in range(4)) for i in quadrant]
    theirs = quantus.Focus(disable_warnings=True)(model=cnn, x_batch=mosaics.numpy(), y_batch=target.numpy(),
                                                  a_batch=maps.detach().numpy()[:, None], custom_batch=indicator,
                                                  device="cpu")
    # Quantus adds 1e-9 to the denominator: equal to 1e-6
    np.testing.assert_allclose(ours, np.asarray(theirs, dtype=np.float64), rtol=1e-6, atol=1e-7)


def test_mprt_equals_our_cascading_randomisation(cnn, batch):
    images, _ = batch
    images = images[:4]
    before = {key: value.clone() for key, value in cnn.state_dict().items()}
    state = torch.random.get_rng_state()
    rows = sanity_rows(cnn, ["gradcam"], images, [str(i) for i in range(4)], layer=LAYER, seed=42)
    assert all(torch.equal(before[key], value) for key, value in cnn.state_dict().items())  # the caller's model
    assert torch.equal(torch.random.get_rng_state(), state)  # and the global RNG are untouched
    with torch.no_grad():
        top1 = cnn(images).argmax(1)
    maps = get_method("gradcam", cnn, target_layer=LAYER).explain(images, top1, relu=True).maps
    metric = quantus.MPRT(seed=42, layer_order="top_down", abs=False, normalise=False, disable_warnings=True)
    theirs = metric(model=cnn, x_batch=images.numpy(), y_batch=top1.numpy(), a_batch=maps.detach().numpy()[:, None],
                    explain_func=_explainer(LAYER), device="cpu")
    layers = randomisable_layers(cnn)
    assert [name for name in theirs if name != "original"] == layers  # the same layers in the same order
    for step, name in enumerate(layers, start=1):
        ours = [r["spearman"] for r in rows if r["step"] == step]
        # Within 1e-4: float32 rounding of the maps computed in two calls reorders a few near-tied pixels.
        np.testing.assert_allclose(ours, theirs[name], atol=1e-4, err_msg=name)
    assert all(torch.equal(before[key], value) for key, value in cnn.state_dict().items())


def test_random_logit_equals_our_random_class_similarity(cnn, batch):
    images, labels = batch
    seed, num_classes = 42, 10
    theirs = quantus.RandomLogit(num_classes=num_classes, seed=seed, similarity_func=quantus.correlation_spearman,
                                 abs=False, normalise=False, disable_warnings=True)
    method = get_method("gradcam", cnn, target_layer=LAYER)
    maps = method.explain(images, labels, relu=True).maps
    scores = theirs(model=cnn, x_batch=images.numpy(), y_batch=labels.numpy(), a_batch=maps.detach().numpy()[:, None],
                    explain_func=_explainer(LAYER), device="cpu")
    # The off-class each image gets, drawn as Quantus draws it (a uniform class other than the label).
    np.random.seed(seed)
    offsets = np.random.randint(0, num_classes - 1, len(labels))
    off = torch.tensor([[c for c in range(num_classes) if c != int(y)][o]
                        for y, o in zip(labels, offsets, strict=True)])
    ours = spearman(maps, method.explain(images, off, relu=True).maps).numpy()
    np.testing.assert_allclose(ours, np.asarray(scores, dtype=np.float64), atol=1e-5)


def test_cascade_resets_one_more_layer_each_step(cnn):
    layers = randomisable_layers(cnn)
    assert layers[0] == "fc" and layers[-1] == "features.0"  # top (logits end) down
    original = dict(cnn.named_parameters())
    seen = []
    for name, randomised in cascading_randomisation(cnn, seed=0):
        seen.append(name)
        params = dict(randomised.named_parameters())
        changed = {key.rsplit(".", 1)[0] for key in params if not torch.equal(params[key], original[key])}
        assert changed == set(seen)
    assert seen == layers
