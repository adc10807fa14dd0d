"""A drop-in for pytorch-grad-cam users: the same constructors, calls and results.

Code written for pytorch-grad-cam::

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = GradCAM(model=model, target_layers=[model.layer4])
    maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])   # NumPy (B, H, W), each in [0, 1]

runs unchanged with ``from case_saliency.compat import GradCAM, ClassifierOutputTarget`` and returns the
same numbers (pytorch-grad-cam's own ``ClassifierOutputTarget`` objects are accepted too, without
importing it). Each map is finished as pytorch-grad-cam finishes it: ReLU, min-max scaled at the
layer's resolution, resized bilinearly to the input, averaged over the target layers, scaled again.
``CASE`` is the one class pytorch-grad-cam does not have; it takes the same constructor plus ``contrast``.

Not supported: ``aug_smooth`` and ``eigen_smooth`` (a clear error), and target objects other than
``ClassifierOutputTarget`` (and, for FinerCAM, ``FinerWeightedTarget``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .core.contrast import ContrastStrategy, TopLogits
from .methods import get_method

__all__ = ["ClassifierOutputTarget", "GradCAM", "GradCAMPlusPlus", "HiResCAM", "XGradCAM", "LayerCAM", "ScoreCAM",
           "AblationCAM", "EigenCAM", "FinerCAM", "CASE"]


class ClassifierOutputTarget:
    """The logit of one class, as pytorch-grad-cam's target of the same name."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output: Tensor) -> Tensor:
        return model_output[self.category] if model_output.ndim == 1 else model_output[:, self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


def _category(target: Any) -> int:
    """The class index of a ``ClassifierOutputTarget`` (ours or pytorch-grad-cam's)."""
    if type(target).__name__ == "ClassifierOutputTarget" and hasattr(target, "category"):
        return int(target.category)
    raise TypeError(f"targets must be ClassifierOutputTarget objects (one per image) or None for the top class, got "
                    f"{type(target).__name__}; other pytorch-grad-cam targets are not supported here")


def _classes(targets: Sequence[Any] | None, batch: int) -> Tensor | str:
    if targets is None:
        return "top1"
    targets = list(targets)
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch} images; give one per image")
    return torch.tensor([_category(t) for t in targets], dtype=torch.long)


def scale_cam_image(cam: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """pytorch-grad-cam's ``scale_cam_image`` on (B, h, w) tensors: per map, subtract the minimum,
    divide by 1e-7 + the maximum, then resize bilinearly to ``size`` (H, W)."""
    flat = cam.flatten(1)
    cam = cam - flat.min(dim=1).values[:, None, None]
    cam = cam / (1e-7 + cam.flatten(1).max(dim=1).values[:, None, None])
    if size is not None and tuple(cam.shape[-2:]) != tuple(size):
        cam = torch.nn.functional.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return cam


def _finish(per_layer: list[Tensor], size: tuple[int, int]) -> np.ndarray:
    """Raw (B, h, w) maps of each layer -> pytorch-grad-cam's result (B, H, W) float32 in [0, 1]."""
    scaled = [scale_cam_image(raw.float().clamp_min(0), size) for raw in per_layer]
    mean = torch.stack(scaled, dim=1).clamp_min(0).mean(dim=1)
    return scale_cam_image(mean).detach().cpu().numpy().astype(np.float32)


class _CompatCAM:
    """pytorch-grad-cam's ``BaseCAM`` interface over a case-saliency method (``method``: its name)."""

    method: ClassVar[str]
    takes_reshape: ClassVar[bool] = True

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module | str],
                 reshape_transform: Callable[[Tensor], Tensor] | None = None, **options: Any):
        if isinstance(target_layers, (nn.Module, str)):
            target_layers = [target_layers]
        if not target_layers:
            raise ValueError("target_layers is empty; pass a list of layers, e.g. target_layers=[model.layer4]")
        self.model = model
        self.target_layers = list(target_layers)
        self.reshape_transform = reshape_transform
        if reshape_transform is not None:
            if not self.takes_reshape:
                raise ValueError(f"{type(self).__name__} does not take a reshape_transform here")
            options["reshape"] = reshape_transform
        self.methods: list[Any] = [get_method(self.method, model, target_layer=layer, **options)
                                   for layer in self.target_layers]

    def raw_maps(self, method: Any, input_tensor: Tensor, classes: Tensor | str) -> Tensor:
        """One layer's signed maps (B, h, w) at the layer's resolution."""
        return method.explain(input_tensor, classes, relu=False, upsample=False).maps

    def __call__(self, input_tensor: Tensor, targets: Sequence[Any] | None = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> np.ndarray:
        """Maps (B, H, W) as NumPy float32, each min-max scaled to [0, 1], for ``input_tensor`` (B, C, H, W)
        and ``targets`` (one ``ClassifierOutputTarget`` per image; None: each image's top class)."""
        if aug_smooth or eigen_smooth:
            raise NotImplementedError("aug_smooth and eigen_smooth are not supported by case_saliency.compat")
        classes = _classes(targets, int(input_tensor.shape[0]))
        size = (int(input_tensor.shape[-2]), int(input_tensor.shape[-1]))
        if hasattr(self, "batch_size"):  # pytorch-grad-cam users set it after construction
            for method in self.methods:
                method.batch_size = int(self.batch_size)
        return _finish([self.raw_maps(method, input_tensor, classes) for method in self.methods], size)

    forward = __call__

    def __enter__(self) -> _CompatCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        return None  # no hooks stay registered between calls


class GradCAM(_CompatCAM):
    method = "gradcam"


class GradCAMPlusPlus(_CompatCAM):
    method = "gradcam++"


class HiResCAM(_CompatCAM):
    method = "hirescam"


class XGradCAM(_CompatCAM):
    method = "xgradcam"


class LayerCAM(_CompatCAM):
    method = "layercam"


class EigenCAM(_CompatCAM):
    method = "eigencam"


class ScoreCAM(_CompatCAM):
    """``batch_size``: masked images per forward pass (pytorch-grad-cam's attribute of the same name)."""

    method = "scorecam"

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module | str],
                 reshape_transform: Callable[[Tensor], Tensor] | None = None, batch_size: int = 16):
        super().__init__(model, target_layers, reshape_transform, batch_size=batch_size)
        self.batch_size = batch_size


class AblationCAM(_CompatCAM):
    """``batch_size``: ablated copies per forward pass. pytorch-grad-cam's ``ablation_layer`` and
    ``ratio_channels_to_ablate`` < 1 are not supported (every channel is ablated)."""

    method = "ablationcam"
    takes_reshape = False

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module | str],
                 reshape_transform: Callable[[Tensor], Tensor] | None = None, ablation_layer: Any = None,
                 batch_size: int = 32, ratio_channels_to_ablate: float = 1.0):
        if ratio_channels_to_ablate != 1.0:
            raise NotImplementedError("ratio_channels_to_ablate < 1 is not supported: every channel is ablated")
        super().__init__(model, target_layers, reshape_transform, batch_size=batch_size)
        self.batch_size = batch_size


class CASE(_CompatCAM):
    """CASE with pytorch-grad-cam's interface: the target's Grad-CAM weights less their projection on
    the mean weights of the ``contrast`` classes (default: the next logit, ``TopLogits(k=1)``)."""

    method = "case"

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module | str],
                 reshape_transform: Callable[[Tensor], Tensor] | None = None,
                 contrast: ContrastStrategy | None = None):
        super().__init__(model, target_layers, reshape_transform, contrast=contrast or TopLogits(k=1))


def _finer_objective(logits: Tensor, main: Tensor, comparison: Tensor, alpha: float) -> Tensor:
    """pytorch-grad-cam's ``FinerWeightedTarget`` summed over the batch: the softmax-weighted mean
    over the comparison classes of ``y_main - alpha * y_j``. logits (B, K); main (B,); comparison (B, k)."""
    prob = torch.softmax(logits, dim=-1)
    weights = prob.gather(1, comparison)
    main_logit = logits.gather(1, main[:, None])
    numerator = (weights * (main_logit - alpha * logits.gather(1, comparison))).sum(1)
    return (numerator / (weights.sum(1) + 1e-9)).sum()


class FinerCAM:
    """Finer-CAM with pytorch-grad-cam's interface and numbers: Grad-CAM of pytorch-grad-cam's
    ``FinerWeightedTarget`` (the target logit minus ``alpha`` times the comparison logits, weighted by
    their softmax probabilities). ``comparison_categories`` are ranks among the classes sorted by how
    close their logit is to the target's (default 1, 2, 3: the three nearest)."""

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module | str],
                 reshape_transform: Callable[[Tensor], Tensor] | None = None, base_method: Any = GradCAM):
        if base_method is not GradCAM and getattr(base_method, "__name__", "") != "GradCAM":
            raise NotImplementedError("FinerCAM here is built on GradCAM only")
        self.base_cam = GradCAM(model, target_layers, reshape_transform)

    def __call__(self, input_tensor: Tensor, targets: Sequence[Any] | None = None, eigen_smooth: bool = False,
                 alpha: float = 1, comparison_categories: Sequence[int] | None = None,
                 target_idx: int | None = None) -> np.ndarray:
        if eigen_smooth:
            raise NotImplementedError("eigen_smooth is not supported by case_saliency.compat")
        size = (int(input_tensor.shape[-2]), int(input_tensor.shape[-1]))
        per_layer = []
        for method in self.base_cam.methods:
            engine = method.engine
            cap = engine(input_tensor, lambda logits: self._classes(logits, targets, alpha, comparison_categories,
                                                                    target_idx))
            chosen, gradients = cap.classes, cap.gradients  # chosen (B, 1 + k): the main class, then the comparison
            assert chosen is not None and gradients is not None  # classes were asked for
            logits = cap.logits.detach().clone().requires_grad_(True)
            objective = _finer_objective(logits, chosen[:, 0], chosen[:, 1:], float(alpha)) if chosen.shape[1] > 1 \
                else logits.gather(1, chosen).sum()
            (slope,) = torch.autograd.grad(objective, logits)  # d objective / d logits, (B, K)
            # The objective depends on the other logits only through the softmax's normaliser, which
            # cancels up to its 1e-9 term: its gradient is a combination of the chosen classes' gradients.
            coefficients = slope.gather(1, chosen)  # (B, 1 + k)
            combined = (coefficients[:, :, None, None, None] * gradients).sum(1, keepdim=True)
            per_layer.append(method.cam(cap.activations, combined, None)[:, 0])
        return _finish(per_layer, size)

    forward = __call__

    @staticmethod
    def _classes(logits: Tensor, targets: Sequence[Any] | None, alpha: float,
                 comparison_categories: Sequence[int] | None, target_idx: int | None) -> Tensor:
        batch, num_classes = logits.shape
        if targets is not None:
            targets = list(targets)
            if len(targets) != batch:
                raise ValueError(f"got {len(targets)} targets for a batch of {batch} images; give one per image")
            if all(hasattr(t, "main_category") and hasattr(t, "comparison_categories") for t in targets):
                if any(float(t.alpha) != float(alpha) for t in targets if hasattr(t, "alpha")):
                    raise ValueError("FinerWeightedTarget objects with another alpha: pass alpha= to the call")
                return torch.tensor([[int(t.main_category), *map(int, t.comparison_categories)] for t in targets],
                                    device=logits.device)
            return torch.tensor([[_category(t)] for t in targets], device=logits.device)
        if comparison_categories is None:
            ranks = [r for r in (1, 2, 3) if r < num_classes]
        else:
            ranks = [int(r) for r in comparison_categories if int(r) < num_classes]
        main = logits.max(dim=-1).values if target_idx is None else logits[:, target_idx]
        order = (logits - main[:, None]).abs().argsort(dim=-1, stable=True)
        return order[:, [0, *ranks]]

    def __enter__(self) -> FinerCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
