"""explain_many: one capture per layer and batch for every gradient CAM that can share it; the maps
equal the per-method maps."""

from __future__ import annotations

import pytest
import torch

from case_saliency import CASE, TopLogits, get_method
from case_saliency.methods import explain_many

GRADIENT_CAMS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "finercam", "case")


def count_forwards(model, run):
    calls = []
    handle = model.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape[0]))
    try:
        result = run()
    finally:
        handle.remove()
    return result, calls


def assert_same(shared, alone, name):
    assert torch.equal(shared.targets, alone.targets), name
    if alone.contrast is None:
        assert shared.contrast is None, name
    else:
        assert torch.equal(shared.contrast, alone.contrast), name
    scale = max(alone.maps.abs().max().item(), 1e-12)
    assert (shared.maps - alone.maps).abs().max().item() <= 1e-5 * scale, name
    assert torch.equal(shared.degenerate, alone.degenerate), name


def test_seven_gradient_cams_share_one_pass_and_equal_their_own_maps(lite0, photos):
    methods = {name: get_method(name, lite0, target_layer="bn2") for name in GRADIENT_CAMS}
    methods["case:gradcam++"] = get_method("case:gradcam++", lite0, target_layer="bn2", contrast=TopLogits(k=2))
    methods["eigencam"] = get_method("eigencam", lite0, target_layer="bn2")  # no gradients: its own pass
    shared, calls = count_forwards(lite0, lambda: explain_many(methods, photos, "topk:2", normalize=True))
    assert len(calls) == 2  # one capture for the eight gradient methods, one pass for EigenCAM
    assert list(shared) == list(methods)
    for name, method in methods.items():
        assert_same(shared[name], method.explain(photos, "topk:2", normalize=True), name)


def test_methods_at_other_layers_or_models_get_their_own_pass(resnet18, random_images):
    # 32x32: Score-CAM runs 512 masked forwards (twice); at 224x224 they cost a minute on 2 cores
    images = torch.nn.functional.interpolate(random_images[:1], size=(32, 32), mode="bilinear")
    methods = [CASE(resnet18, target_layer="layer4"), get_method("gradcam", resnet18, target_layer="layer4"),
               get_method("gradcam", resnet18, target_layer="layer3"), get_method("scorecam", resnet18,
                                                                                 target_layer="layer4")]
    shared, calls = count_forwards(resnet18, lambda: explain_many(methods, images, [3], relu=False, upsample=False))
    # layer4 (CASE + Grad-CAM), layer3, then Score-CAM's own forward and its masked passes
    assert calls[:2] == [1, 1] and len(calls) > 3
    for result, method in zip(shared, methods, strict=True):
        assert_same(result, method.explain(images, [3], relu=False, upsample=False), method.name)


class _Photos:
    """Seeded random 28x28 grayscale images as a dataset: ``ds[i] -> (PIL, label, id)``."""

    name = "random-gray"
    class_names = None

    def __init__(self, count: int):
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        self.images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], -1, f"gray:{index}"

    def identity(self) -> dict:
        return {"name": self.name, "count": len(self)}


def test_a_diagnose_run_gives_the_gradient_cams_one_capture_per_batch(tmp_path):
    from runs_support import LAYER, TRANSFORM, SmallCNN

    from case_saliency.runs import run_diagnose
    from case_saliency.runs import RunDir

    torch.manual_seed(0)
    model = SmallCNN().eval()
    photos = _Photos(6)
    common = dict(n=6, layer=LAYER, transform=TRANSFORM, batch_size=3, gallery=0, progress=False)
    _, calls = count_forwards(model, lambda: run_diagnose(model, photos, tmp_path / "seven", methods=GRADIENT_CAMS,
                                                          **common))
    # per batch of 3: one forward, the shared capture's, which also gives the top-2 classes (the sample of
    # unlabelled images is drawn without a forward)
    assert calls == [3, 3]
    seven = RunDir.read(tmp_path / "seven").rows
    for name in GRADIENT_CAMS:  # each method's rows equal those of a run of that method alone
        run_diagnose(model, photos, tmp_path / name, methods=[name], **common)
        alone = RunDir.read(tmp_path / name).rows
        ours = [row for row in seven if row["method"] == name]
        keys = ("image_id", "agreement", "contrast1", "contrast2")
        assert [[row[k] for k in keys] for row in ours] == [[row[k] for k in keys] for row in alone], name
        # Finer-CAM's weighted-logit gradients share a larger vmapped backward: sums equal to rounding, and
        # a rank correlation of maps moves a little with ulp-level changes of near-tied pixels
        for key in ("spearman", "ssim"):
            assert [float(row[key]) for row in ours] == pytest.approx([float(row[key]) for row in alone],
                                                                      abs=1e-4), (name, key)
        assert not any(row["error"] for row in ours), name
