"""Models as users have them: a forward returning a tuple, a mapping, an object with ``.logits``
(Hugging Face), or what ``output=`` picks, through every method, ``explain_many`` and the loader."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from case_saliency import CASE, GradCAM, explain_many, get_method, method_names
from case_saliency.core.contrast import ClassifierNeighbours
from case_saliency.core.outputs import LogitsModel, logits_from, logits_model
from case_saliency.models import LoadedModel


class Net(nn.Module):
    """A small CNN whose forward wraps its logits as ``kind`` says."""

    def __init__(self, kind: str = "tensor"):
        super().__init__()
        torch.manual_seed(0)
        self.kind = kind
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        logits = self.head(self.pool(self.features(x)).flatten(1))
        return {"tensor": lambda: logits, "tuple": lambda: (logits, x.mean()), "list": lambda: [logits],
                "dict": lambda: {"aux": x.mean(), "logits": logits}, "first": lambda: {"scores": logits},
                "namespace": lambda: SimpleNamespace(logits=logits, hidden=None),
                "odd": lambda: {"out": [0, logits]}}[self.kind]()


IMAGES = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["tuple", "list", "dict", "first", "namespace"])
def test_every_method_reads_the_logits_of_any_output_form(kind):
    plain, wrapped = Net("tensor"), Net(kind)
    wrapped.load_state_dict(plain.state_dict())
    for name in method_names():
        options = {"target_layer": "features.2"} if name != "random" else {}
        if name in ("integrated_gradients", "smoothgrad"):
            options.update(n_steps=4) if name == "integrated_gradients" else options.update(samples=2)
        expected = get_method(name, plain, **options).explain(IMAGES, "topk:2")
        got = get_method(name, wrapped, **options).explain(IMAGES, "topk:2")
        assert torch.equal(got.targets, expected.targets), name
        assert torch.allclose(got.maps, expected.maps, atol=1e-5), name


def test_explain_many_shares_one_pass_for_a_wrapped_model_and_keeps_layer_names():
    model = Net("namespace")
    methods = {"gradcam": GradCAM(model), "case": CASE(model)}
    assert methods["gradcam"].model is methods["case"].model  # one wrapper: one shared capture
    assert methods["gradcam"].layer_name == methods["case"].layer_name == "features"  # (a probe pass each)
    calls = []
    handle = model.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    try:
        results = explain_many(methods, IMAGES, "topk:2")
    finally:
        handle.remove()
    assert len(calls) == 1
    assert results["case"].layer == "features"  # the default layer, named as on the network
    # the classifier-neighbour contrast finds the head through the wrapper
    neighbours = ClassifierNeighbours(methods["case"].model, k=1)
    assert neighbours.layer == "head"
    assert torch.equal(neighbours.neighbours, ClassifierNeighbours(model.head, k=1).neighbours)


def test_output_callable_picks_the_logits_and_errors_say_what_to_do():
    model = Net("odd")
    with pytest.raises(TypeError, match="output=lambda"):
        GradCAM(model, target_layer="features.2")(IMAGES)
    maps = GradCAM(model, target_layer="features.2", output=lambda out: out["out"][1]).explain(IMAGES)
    reference = Net("tensor")
    assert torch.allclose(maps.maps, GradCAM(reference, target_layer="features.2").explain(IMAGES).maps, atol=1e-6)
    loaded = LoadedModel.wrap(model, transform=lambda image: torch.zeros(3, 16, 16), output=lambda out: out["out"][1])
    assert isinstance(loaded.model(IMAGES), torch.Tensor)
    assert CASE(loaded, target_layer="features.2").explain(IMAGES).maps.shape == (2, 16, 16)


def test_wrapper_keeps_the_network_tree_flags_and_state():
    model = Net("dict").train()
    wrapper = logits_model(model)
    assert isinstance(wrapper, LogitsModel) and logits_model(model) is wrapper
    assert [n for n, _ in wrapper.named_modules()] == [n for n, _ in model.named_modules()]
    assert wrapper.state_dict().keys() == model.state_dict().keys()
    wrapper.eval()
    assert not model.training and not model.features[0].training
    wrapper.training = True
    assert model.training
    model.train()
    GradCAM(model, target_layer="features.2")(IMAGES)
    assert all(module.training for module in model.modules())  # left as found
    assert logits_from(torch.ones(1, 2)).shape == (1, 2)
    assert logits_model(nn.Linear(2, 2)) is not None


@pytest.fixture(scope="module")
def hf_vit():
    transformers = pytest.importorskip("transformers", reason="needs the [hf] extra: pip install 'case-saliency[hf]'")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=5,
                                    id2label={0: "cat", 1: "dog", 2: "car", 3: "tree", 4: "boat"},
                                    label2id={"cat": 0, "dog": 1, "car": 2, "tree": 3, "boat": 4})
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config).eval()


def test_transformers_vit_with_random_weights_through_the_methods(hf_vit):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    case = CASE(hf_vit)
    result = case.explain(images, "topk:2")
    assert result.layer == "vit.layers.1.layernorm_before" or result.layer.endswith("layer.1.layernorm_before")
    assert result.maps.shape == (2, 2, 32, 32) and not result.degenerate.all()
    expected = hf_vit(images).logits.topk(2, dim=1).indices
    assert torch.equal(result.targets, expected)
    for name in ("gradcam", "scorecam", "saliency", "eigencam", "finercam"):
        assert get_method(name, hf_vit).explain(images).maps.shape == (2, 32, 32), name
    loaded = LoadedModel.wrap(hf_vit, transform=lambda image: torch.zeros(3, 32, 32))
    assert loaded.class_names == ["cat", "dog", "car", "tree", "boat"]


def test_a_run_accepts_a_model_returning_an_output_object(tmp_path):
    import numpy as np
    from PIL import Image

    from case_saliency.data import open_dataset
    from case_saliency.models.preprocess import Preprocess
    from case_saliency.runs import run_diagnose
    from case_saliency.runs import RunDir

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    run = run_diagnose(Net("namespace"), open_dataset(f"folder:{tmp_path}"), tmp_path / "run",
                       methods=["gradcam", "case"],
                       n=3, transform=Preprocess(16, 16, (0.5,) * 3, (0.5,) * 3), class_names=list("abcde"),
                       progress=False, gallery=0, workers=0, batch_size=3)
    rows = RunDir.read(run).typed_rows()
    assert len(rows) == 6 and not any(row["error"] for row in rows)
