"""A drop-in for pytorch-grad-cam users: the same classes, constructors, calls, attributes and results.

Code written for pytorch-grad-cam::

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = GradCAM(model=model, target_layers=[model.layer4])
    maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])   # NumPy (B, H, W), each in [0, 1]

runs unchanged with ``from case_saliency.compat import GradCAM, ClassifierOutputTarget``. The classes
follow pytorch-grad-cam's ``BaseCAM`` step by step (``forward`` -> ``compute_cam_per_layer`` ->
``get_cam_image`` -> ``get_cam_weights``; ``aggregate_multi_layers``; ``aug_smooth`` and
``eigen_smooth``), so a subclass that overrides any of these steps gets its override called. What
differs is underneath: activations and gradients come from this library's engine (one forward, one
backward stopped at the layer, no parameter gradients), and they are the layer's output as it
produced it, before any later in-place operation overwrote it (pytorch-grad-cam's hook keeps the
tensor that a following in-place ReLU writes into, e.g. DenseNet's ``norm5``: there the maps differ).

Targets: pytorch-grad-cam's target objects (its own or the copies here) and any callable
``model_output (K,) -> scalar``, evaluated per image; ``ClassifierOutputTarget`` takes a fast
path (class indices). ``CASE`` is the one class pytorch-grad-cam does not have. Refused, with a
message: ``FullGrad`` and ``ShapleyCAM`` (input or second-order gradients), models whose output is
not (B, K) logits (detection, segmentation), custom ablation layers, and ScoreCAM/AblationCAM on
3-D inputs (as in pytorch-grad-cam). See the README's "Coming from pytorch-grad-cam".
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .core.capture import ActivationCapture, Capture, model_device
from .core.contrast import ContrastStrategy, TopLogits
from .core.layers import resolve_layer
from .methods import get_method
from .methods.base import CAMMethod, ClassRequest

__all__ = ["BaseCAM", "GradCAM", "GradCAMPlusPlus", "HiResCAM", "XGradCAM", "LayerCAM", "GradCAMElementWise",
           "ScoreCAM", "AblationCAM", "EigenCAM", "EigenGradCAM", "KPCA_CAM", "SegEigenCAM", "RandomCAM",
           "FinerCAM", "RefineCAM", "CASE", "FullGrad", "ShapleyCAM", "ActivationsAndGradients", "AblationLayer",
           "ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget", "ClassifierOutputReST",
           "BinaryClassifierOutputTarget", "SoftmaxOutputTarget", "RawScoresOutputTarget", "FinerWeightedTarget",
           "get_2d_projection", "get_2d_projection_kernel", "get_2d_projection_with_sign_correction",
           "scale_cam_image", "preprocess_image"]


# --- Targets: pytorch-grad-cam's, with the same numbers -------------------------------------------------

class ClassifierOutputTarget:
    """The logit of one class."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output: Tensor) -> Tensor:
        return model_output[self.category] if model_output.ndim == 1 else model_output[:, self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


class ClassifierOutputSoftmaxTarget:
    """The softmax probability of one class."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output: Tensor) -> Tensor:
        prob = torch.softmax(model_output, dim=-1)
        return prob[self.category] if model_output.ndim == 1 else prob[:, self.category]


class ClassifierOutputReST:
    """The logit minus the cross-entropy of one class (ReST, arXiv 2501.06261)."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output: Tensor) -> Tensor:
        if model_output.ndim == 1:
            target = torch.tensor([self.category], device=model_output.device)
            row = model_output.unsqueeze(0)
            return row[0][self.category] - torch.nn.functional.cross_entropy(row, target)
        target = torch.tensor([self.category] * model_output.shape[0], device=model_output.device)
        ce = torch.nn.functional.cross_entropy(model_output, target, reduction="none")
        return model_output[:, self.category] - ce


class BinaryClassifierOutputTarget:
    """A one-output classifier: the output for category 1, minus it for category 0."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output: Tensor) -> Tensor:
        return model_output * (1 if self.category == 1 else -1)


class SoftmaxOutputTarget:
    """All softmax probabilities (for the metrics; a CAM needs one number per image)."""

    def __call__(self, model_output: Tensor) -> Tensor:
        return torch.softmax(model_output, dim=-1)


class RawScoresOutputTarget:
    """The raw outputs (for one-output models, and methods that ignore the target such as EigenCAM)."""

    def __call__(self, model_output: Tensor) -> Tensor:
        return model_output


class FinerWeightedTarget:
    """Finer-CAM's target: sum_j p_j (y_main - alpha * y_j) / (sum_j p_j + 1e-9), p = softmax(y)."""

    def __init__(self, main_category: int, comparison_categories: Sequence[int], alpha: float):
        self.main_category = main_category
        self.comparison_categories = comparison_categories
        self.alpha = alpha

    def __call__(self, model_output: Tensor) -> Tensor:
        def select(idx: int) -> Tensor:
            return model_output[idx] if model_output.ndim == 1 else model_output[..., idx]

        main = select(self.main_category)
        prob = torch.softmax(model_output, dim=-1)
        weights = [prob[idx] if model_output.ndim == 1 else prob[..., idx] for idx in self.comparison_categories]
        numerator = sum(w * (main - self.alpha * select(idx)) for w, idx in zip(weights, self.comparison_categories,
                                                                                  strict=True))
        return numerator / (sum(weights) + 1e-9)  # type: ignore[return-value, operator]


Target = Callable[[Tensor], Any]
ReshapeTransform = Callable[[Tensor], Tensor] | None


def _category(target: Any) -> int | None:
    """The class index of a ``ClassifierOutputTarget`` (ours or pytorch-grad-cam's), else None."""
    if type(target).__name__ == "ClassifierOutputTarget" and hasattr(target, "category"):
        return int(target.category)
    return None


def _check_targets(targets: Sequence[Any] | None, batch: int) -> list[Target] | None:
    if targets is None:
        return None
    targets = list(targets)
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch} images; give one per image")
    for target in targets:
        if not callable(target):
            raise TypeError(f"targets must be target objects such as ClassifierOutputTarget(class index), or "
                            f"callables model_output -> scalar, one per image; got {type(target).__name__} "
                            f"{target!r} (wrap a class index as ClassifierOutputTarget({target!r}))")
    return targets


def _classifier_classes(targets: Sequence[Any] | None) -> Tensor | None:
    """(B, 1) class indices when every target is a ``ClassifierOutputTarget`` (the fast path), else None."""
    if targets is None:
        return None
    found = [_category(t) for t in targets]
    if any(c is None for c in found):
        return None
    return torch.tensor(found, dtype=torch.long)[:, None]


def _scalar(value: Any, target: Any) -> Tensor:
    value = torch.as_tensor(value)
    if value.numel() != 1:
        raise TypeError(f"target {target!r} returned {value.numel()} values for one image; a target must return "
                        "one number per image (pytorch-grad-cam's backward refuses more too)")
    return value.reshape(())


def _logit_weights(targets: Sequence[Target], logits: Tensor) -> Tensor:
    """d target_b(logits[b]) / d logits[b] for every image: (B, 1, K). A target is a function of the
    model output, so its gradient at the layer is this vector times the logits' Jacobian (one backward)."""
    y = logits.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        total = torch.stack([_scalar(target(y[b]), target) for b, target in enumerate(targets)]).sum()
        if not total.requires_grad:  # the targets do not depend on the output
            return torch.zeros_like(y)[:, None]
        (grad,) = torch.autograd.grad(total, y, allow_unused=True)
    return (torch.zeros_like(y) if grad is None else grad)[:, None]


def _target_scores(targets: Sequence[Target]) -> Callable[[Tensor, Tensor], Tensor]:
    """The score of perturbed passes for arbitrary targets: (logits (n, K), image index (n,)) -> (n, 1)."""
    def score(logits: Tensor, image_index: Tensor) -> Tensor:
        values = [float(_scalar(targets[int(i)](row), targets[int(i)])) for row, i in zip(logits, image_index,
                                                                                           strict=True)]
        return torch.tensor(values, dtype=logits.dtype, device=logits.device)[:, None]

    return score


# --- pytorch-grad-cam's NumPy helpers ---------------------------------------------------------------

def get_2d_projection(activation_batch: np.ndarray) -> np.ndarray:
    """(B, C, *spatial) -> (B, *spatial) float32: each image's centred activations projected on their
    first right singular vector (pytorch-grad-cam's function, same NumPy SVD and so the same sign)."""
    activation_batch = activation_batch.copy()
    activation_batch[np.isnan(activation_batch)] = 0
    projections = []
    for activations in activation_batch:
        flat = activations.reshape(activations.shape[0], -1).transpose()
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=True)
        projections.append((flat @ vt[0, :]).reshape(activations.shape[1:]))
    return np.asarray(projections, dtype=np.float32)


def get_2d_projection_with_sign_correction(activation_batch: np.ndarray) -> np.ndarray:
    """``get_2d_projection`` with Seg-Eigen-CAM's sign: flipped when |min| > |max|."""
    projections = get_2d_projection(activation_batch)
    for projection in projections:
        if abs(projection.min()) > abs(projection.max()):
            projection *= -1
    return projections


def get_2d_projection_kernel(activation_batch: np.ndarray, kernel: str = "sigmoid",
                             gamma: float | None = None) -> np.ndarray:
    """Kernel PCA's first component per image (KPCA-CAM; needs scikit-learn)."""
    try:
        from sklearn.decomposition import KernelPCA
    except ImportError as error:  # the models extra
        raise ImportError("KPCA_CAM needs scikit-learn: pip install 'case-saliency[models]'") from error
    activation_batch = activation_batch.copy()
    activation_batch[np.isnan(activation_batch)] = 0
    projections = []
    for activations in activation_batch:
        flat = activations.reshape(activations.shape[0], -1).transpose()
        flat = flat - flat.mean(axis=0)
        projection = KernelPCA(n_components=1, kernel=kernel, gamma=gamma).fit_transform(flat)
        projections.append(projection.reshape(activations.shape[1:]))
    return np.asarray(projections, dtype=np.float32)


def scale_cam_image(cam: np.ndarray | Tensor, target_size: Sequence[int] | None = None) -> np.ndarray:
    """pytorch-grad-cam's ``scale_cam_image``: per map, subtract the minimum, divide by 1e-7 + the
    maximum, then resize to ``target_size`` ((W, H) for 2-D maps, as OpenCV; (W, H, D) reversed for
    3-D). 2-D: bilinear with half-pixel centres (OpenCV's resize); 3-D: SciPy's cubic ``zoom``."""
    maps = cam.detach().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam)
    result = []
    for img in maps:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target_size is not None:
            if img.ndim > 2:
                from scipy.ndimage import zoom

                img = zoom(np.float32(img), [t / i for i, t in zip(img.shape, tuple(target_size)[::-1], strict=True)])
            elif tuple(img.shape) != (target_size[1], target_size[0]):
                img = torch.nn.functional.interpolate(torch.from_numpy(np.float32(img))[None, None],
                                                      size=(int(target_size[1]), int(target_size[0])),
                                                      mode="bilinear", align_corners=False)[0, 0].numpy()
        result.append(img)
    return np.asarray(result, dtype=np.float32)


def preprocess_image(img: np.ndarray, mean: Sequence[float] = (0.5, 0.5, 0.5),
                     std: Sequence[float] = (0.5, 0.5, 0.5)) -> Tensor:
    """pytorch-grad-cam's ``preprocess_image``: an (H, W, C) image (uint8 0..255 or float) -> a
    normalised (1, C, H, W) float tensor (torchvision's ToTensor then Normalize)."""
    array = np.asarray(img)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    tensor = tensor.float().div(255) if array.dtype == np.uint8 else tensor.float()
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return ((tensor - mean_t) / std_t).unsqueeze(0)


# --- Target layers ----------------------------------------------------------------------------------

def _target_layers(model: nn.Module, target_layers: Any) -> list[nn.Module]:
    """Target layers as pytorch-grad-cam reads them: it iterates ``target_layers``, so a list or tuple
    gives its items and a bare ``nn.Sequential`` / ``nn.ModuleList`` gives its children (several
    layers). A single other module (or a dotted name) is one layer here (pytorch-grad-cam fails)."""
    if isinstance(target_layers, (nn.Sequential, nn.ModuleList)):
        layers: list[Any] = list(target_layers)
    elif isinstance(target_layers, (nn.Module, str)):
        layers = [target_layers]
    elif isinstance(target_layers, Iterable):
        layers = list(target_layers)
    else:
        raise TypeError(f"target_layers must be a list of layers, e.g. target_layers=[model.layer4], got "
                        f"{type(target_layers).__name__}")
    if not layers:
        raise ValueError("target_layers is empty; pass a list of layers, e.g. target_layers=[model.layer4]")
    return [resolve_layer(model, layer)[0] for layer in layers]


class ActivationsAndGradients:
    """pytorch-grad-cam's object of that name as its users read it: after each call, ``activations``
    and ``gradients``, one detached CPU tensor (B, C, h, w) per target layer (after the reshape), and
    ``release()``. No hook stays registered between calls (``handles`` is always empty)."""

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module], reshape_transform: Any = None,
                 detach: bool = True):
        self.model = model
        self.target_layers = list(target_layers)
        self.reshape_transform = reshape_transform
        self.detach = detach
        self.activations: list[Tensor] = []
        self.gradients: list[Tensor] = []
        self.handles: list[Any] = []

    def __call__(self, x: Tensor) -> Tensor:
        """The model's outputs for ``x``, with ``activations`` of every target layer (no gradients)."""
        self.clear()
        outputs = None
        for layer in self.target_layers:
            capture = ActivationCapture(self.model, layer, self.reshape_transform, spatial_dims=x.ndim - 2)(x)
            self.activations.append(capture.activations.cpu())
            outputs = capture.logits
        assert outputs is not None
        return outputs

    def clear(self) -> None:
        self.activations.clear()
        self.gradients.clear()

    def release(self) -> None:
        self.clear()
        self.handles.clear()


# --- The CAMs ---------------------------------------------------------------------------------------

_AUGMENTATIONS = list(itertools.product((False, True), (0.9, 1.0, 1.1)))  # ttach's HorizontalFlip x Multiply


class BaseCAM:
    """pytorch-grad-cam's ``BaseCAM``: the same constructor, call, steps and attributes (``model``,
    ``target_layers``, ``reshape_transform``, ``device``, ``outputs``, ``activations_and_grads``,
    ``uses_gradients``, ``tta_transforms``), over this library's engine.

    A subclass defines ``get_cam_weights`` (channel weights (B, C) from NumPy activations and
    gradients) or ``get_cam_image`` (maps (B, h, w)), as for pytorch-grad-cam. The classes here whose
    rule is one of this library's methods (``library_method``) compute it with that method in torch
    unless a subclass overrides ``get_cam_weights`` or ``get_cam_image`` (then the override runs),
    ``eigen_smooth`` is asked for, or the input is a volume (then the NumPy rules below run, which are
    pytorch-grad-cam's).
    """

    library_method: ClassVar[str | None] = None  # this library's method with the same rule (torch fast path)
    _torch_rule: ClassVar[bool] = False  # the fast path may compute the maps with that method's torch rule
    volumes: ClassVar[bool] = True  # pytorch-grad-cam computes this CAM on 3-D inputs (B, C, D, H, W)

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 compute_input_gradient: bool = False, uses_gradients: bool = True, tta_transforms: Any = None,
                 detach: bool = True):
        if compute_input_gradient:
            raise NotImplementedError("compute_input_gradient=True (FullGrad's input gradients) is not supported by "
                                      "case_saliency.compat; the engine stops the backward at the target layer")
        if not detach:
            raise NotImplementedError("detach=False (second-order gradients, as ShapleyCAM) is not supported by "
                                      "case_saliency.compat")
        self.model = model
        self.target_layers = _target_layers(model, target_layers)
        self.reshape_transform = reshape_transform
        self.compute_input_gradient = False
        self.uses_gradients = uses_gradients
        self.tta_transforms = tta_transforms  # None: pytorch-grad-cam's default (flip x intensity 0.9, 1, 1.1)
        self.detach = True
        self.device = model_device(model)
        self.outputs: Tensor | None = None
        self.activations_and_grads = ActivationsAndGradients(model, self.target_layers, reshape_transform)
        self._methods: list[CAMMethod] | None = None
        self._engines: dict[int, list[ActivationCapture]] = {}
        self._captured: tuple[list[Tensor], list[Tensor]] = ([], [])

    # The library's method per layer (its engine, and its rule for the fast path).
    def _library_options(self) -> dict[str, Any]:
        return {}

    def library_methods(self) -> list[CAMMethod]:
        """This library's method of the same rule, one per target layer (``library_method``)."""
        if self._methods is None:
            if self.library_method is None:
                raise RuntimeError(f"{type(self).__name__} has no library method")
            methods = [get_method(self.library_method, self.model, target_layer=layer, reshape=self.reshape_transform,
                                  **self._library_options()) for layer in self.target_layers]
            self._methods = [m for m in methods if isinstance(m, CAMMethod)]
        return self._methods

    def _layer_engines(self, spatial_dims: int) -> list[ActivationCapture]:
        if spatial_dims not in self._engines:
            if spatial_dims == 2 and self.library_method is not None:
                self._engines[2] = [m.engine for m in self.library_methods()]
            else:
                self._engines[spatial_dims] = [ActivationCapture(self.model, layer, self.reshape_transform,
                                                                 spatial_dims=spatial_dims)
                                               for layer in self.target_layers]
        return self._engines[spatial_dims]

    def _overridden(self) -> bool:
        """True when a class below the first one defined here overrides a rule step."""
        mro = type(self).__mro__
        own = next(i for i, cls in enumerate(mro) if cls.__module__ == __name__)
        return any(name in cls.__dict__ for cls in mro[:own] for name in ("get_cam_weights", "get_cam_image"))

    def _fast(self, input_tensor: Tensor, eigen_smooth: bool) -> bool:
        return (self.library_method is not None and self._torch_rule and not eigen_smooth
                and input_tensor.ndim == 4 and not self._overridden())

    # pytorch-grad-cam's steps.
    def get_cam_weights(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """Channel weights (B, C) from activations and gradients (B, C, *spatial), NumPy."""
        raise NotImplementedError("get_cam_weights must be implemented by subclass")

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: Any, eigen_smooth: bool = False) -> np.ndarray:
        """The maps (B, *spatial): ``sum_c w_c A_c`` (or its first principal component with ``eigen_smooth``)."""
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        if isinstance(activations, Tensor):
            activations = activations.cpu().detach().numpy()
        if activations.ndim == 4:
            weighted = weights[:, :, None, None] * activations
        elif activations.ndim == 5:
            weighted = weights[:, :, None, None, None] * activations
        else:
            raise ValueError(f"Invalid activation shape. Get {len(activations.shape)}.")
        return get_2d_projection(weighted) if eigen_smooth else weighted.sum(axis=1)

    def forward(self, input_tensor: Tensor, targets: Sequence[Any] | None, eigen_smooth: bool = False) -> np.ndarray:
        input_tensor = input_tensor.to(self.device)
        resolved = self.capture(input_tensor, targets)
        cam_per_layer = self.compute_cam_per_layer(input_tensor, resolved, eigen_smooth)
        return self.aggregate_multi_layers(cam_per_layer)

    def capture(self, input_tensor: Tensor, targets: Sequence[Any] | None,
                default_targets: Callable[[Tensor], list[Target]] | None = None) -> list[Target]:
        """One engine pass per target layer: sets ``outputs`` and ``activations_and_grads``, returns
        the targets (for None: each image's top class, or ``default_targets(logits)``)."""
        if input_tensor.ndim not in (4, 5):
            raise ValueError(f"Invalid input_tensor shape {tuple(input_tensor.shape)}. Only 2D (B, C, H, W) or 3D "
                             "(B, C, D, H, W) images are supported.")
        if input_tensor.ndim == 5 and not self.volumes:
            raise NotImplementedError(f"{type(self).__name__} has no 3-D form (in pytorch-grad-cam neither); use "
                                      "GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM or EigenCAM on volumes")
        resolved = _check_targets(targets, int(input_tensor.shape[0]))

        def resolve(logits: Tensor) -> list[Target]:
            nonlocal resolved
            if resolved is None:
                resolved = default_targets(logits) if default_targets is not None else \
                    [ClassifierOutputTarget(int(c)) for c in logits.argmax(dim=-1)]
            return resolved

        def select(logits: Tensor) -> Tensor:
            chosen = resolve(logits)
            classes = _classifier_classes(chosen)
            return classes.to(logits.device) if classes is not None else _logit_weights(chosen, logits)

        activations, gradients = [], []
        capture: Capture | None = None
        for engine in self._layer_engines(input_tensor.ndim - 2):
            if self.uses_gradients:
                capture = engine(input_tensor, select)
                assert capture.gradients is not None
                gradients.append(capture.gradients[:, 0])
            else:
                capture = engine(input_tensor)
                resolve(capture.logits)
            activations.append(capture.activations)
        assert capture is not None and resolved is not None
        self.outputs = capture.logits
        self._captured = (activations, gradients)
        self.activations_and_grads.activations = [a.cpu() for a in activations]
        self.activations_and_grads.gradients = [g.cpu() for g in gradients]
        return resolved

    def torch_cam(self, index: int, activations: Tensor, gradients: Tensor | None) -> Tensor:
        """The fast path: the library method's rule on one layer's tensors, (B, h, w)."""
        method = self.library_methods()[index]
        assert gradients is not None
        return method.cam(activations, gradients[:, None], None)[:, 0]

    def compute_cam_per_layer(self, input_tensor: Tensor, targets: list[Target],
                              eigen_smooth: bool) -> list[np.ndarray]:
        activations, gradients = self._captured
        target_size = self.get_target_width_height(input_tensor)
        fast = self._fast(input_tensor, eigen_smooth)
        cam_per_target_layer = []
        for i, target_layer in enumerate(self.target_layers):
            grads = gradients[i] if i < len(gradients) else None
            if fast:
                cam = self.torch_cam(i, activations[i], grads).float().cpu().numpy()
            else:
                cam = self.get_cam_image(input_tensor, target_layer, targets, activations[i].float().cpu().numpy(),
                                         None if grads is None else grads.float().cpu().numpy(), eigen_smooth)
            cam = np.maximum(cam, 0)
            cam_per_target_layer.append(scale_cam_image(cam, target_size)[:, None, :])
        return cam_per_target_layer

    def aggregate_multi_layers(self, cam_per_target_layer: list[np.ndarray]) -> np.ndarray:
        """Per-layer maps (each scaled to [0, 1]) -> their mean, scaled again: (B, H, W)."""
        stacked = np.maximum(np.concatenate(cam_per_target_layer, axis=1), 0)
        return scale_cam_image(np.mean(stacked, axis=1))

    @staticmethod
    def get_target_width_height(input_tensor: Tensor) -> tuple[int, ...]:
        if input_tensor.ndim == 4:
            return int(input_tensor.size(-1)), int(input_tensor.size(-2))
        if input_tensor.ndim == 5:
            return int(input_tensor.size(-1)), int(input_tensor.size(-2)), int(input_tensor.size(-3))
        raise ValueError("Invalid input_tensor shape. Only 2D or 3D images are supported.")

    def forward_augmentation_smoothing(self, input_tensor: Tensor, targets: Sequence[Any] | None,
                                       eigen_smooth: bool = False) -> np.ndarray:
        """pytorch-grad-cam's ``aug_smooth``: the mean of the maps of the augmented inputs, each
        de-augmented (by default the horizontal flip x the intensities 0.9, 1, 1.1, as ttach gives
        them; a ttach ``Compose`` in ``tta_transforms`` is used as pytorch-grad-cam uses it)."""
        cams = []
        if self.tta_transforms is not None:
            for transform in self.tta_transforms:
                cam = self.forward(transform.augment_image(input_tensor), targets, eigen_smooth)
                cams.append(transform.deaugment_mask(torch.from_numpy(cam[:, None])).numpy()[:, 0])
        else:
            for flip, factor in _AUGMENTATIONS:
                augmented = input_tensor * factor
                cam = self.forward(augmented.flip(3) if flip else augmented, targets, eigen_smooth)
                cams.append(np.flip(cam, axis=2) if flip else cam)  # ttach flips dim 3 of (B, 1, ...) masks
        return np.asarray(cams, dtype=np.float32).mean(axis=0)

    def __call__(self, input_tensor: Tensor, targets: Sequence[Any] | None = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> np.ndarray:
        """Maps (B, H, W) (or (B, D, H, W)) as NumPy float32 in [0, 1] for ``input_tensor`` (B, C, H, W)
        (or (B, C, D, H, W)) and ``targets`` (one per image; None: each image's top class)."""
        if aug_smooth is True:
            return self.forward_augmentation_smoothing(input_tensor, targets, eigen_smooth)
        return self.forward(input_tensor, targets, eigen_smooth)

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.activations_and_grads.release()

    def __del__(self) -> None:
        activations_and_grads = getattr(self, "activations_and_grads", None)
        if activations_and_grads is not None:
            activations_and_grads.release()


def _spatial_axes(array: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, array.ndim))


class GradCAM(BaseCAM):
    library_method = "gradcam"
    _torch_rule = True

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_weights(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        if grads.ndim not in (4, 5):
            raise ValueError("Invalid grads shape. Shape of grads should be 4 (2D image) or 5 (3D image).")
        return np.mean(grads, axis=_spatial_axes(grads))


class GradCAMPlusPlus(BaseCAM):
    library_method = "gradcam++"
    _torch_rule = True

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_weights(self, input_tensor: Tensor, target_layers: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        axes = _spatial_axes(activations)
        g2 = grads ** 2
        g3 = g2 * grads
        sum_activations = np.sum(activations, axis=axes).reshape(activations.shape[:2] + (1,) * len(axes))
        aij = g2 / (2 * g2 + sum_activations * g3 + 0.000001)
        aij = np.where(grads != 0, aij, 0)
        return np.sum(np.maximum(grads, 0) * aij, axis=axes)


class XGradCAM(BaseCAM):
    library_method = "xgradcam"
    _torch_rule = True

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_weights(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        axes = _spatial_axes(activations)
        sum_activations = np.sum(activations, axis=axes).reshape(activations.shape[:2] + (1,) * len(axes))
        return (grads * activations / (sum_activations + 1e-7)).sum(axis=axes)


class HiResCAM(BaseCAM):
    library_method = "hirescam"
    _torch_rule = True

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        elementwise = grads * activations
        return get_2d_projection(elementwise) if eigen_smooth else elementwise.sum(axis=1)


class LayerCAM(BaseCAM):
    library_method = "layercam"
    _torch_rule = True

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        weighted = np.maximum(grads, 0) * activations
        return get_2d_projection(weighted) if eigen_smooth else weighted.sum(axis=1)


class GradCAMElementWise(BaseCAM):
    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        elementwise = np.maximum(grads * activations, 0)
        return get_2d_projection(elementwise) if eigen_smooth else elementwise.sum(axis=1)


class RandomCAM(BaseCAM):
    """Uniform random channel weights in [-1, 1) (NumPy's global generator, as pytorch-grad-cam)."""

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_weights(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return np.random.uniform(-1, 1, size=(grads.shape[0], grads.shape[1]))


class EigenCAM(BaseCAM):
    """The first principal component of the activations (class-agnostic; NumPy's SVD as pytorch-grad-cam)."""

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform, uses_gradients=False)

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        return get_2d_projection(activations)


class EigenGradCAM(BaseCAM):
    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        return get_2d_projection(grads * activations)


class KPCA_CAM(BaseCAM):  # noqa: N801 (pytorch-grad-cam's name)
    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 kernel: str = "sigmoid", gamma: float | None = None):
        super().__init__(model, target_layers, reshape_transform, uses_gradients=False)
        self.kernel = kernel
        self.gamma = gamma

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        return get_2d_projection_kernel(activations, self.kernel, self.gamma)


class SegEigenCAM(BaseCAM):
    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None):
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_image(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        return get_2d_projection_with_sign_correction(np.abs(grads) * activations)


class ScoreCAM(BaseCAM):
    """Score-CAM with this library's masked passes. ``batch_size`` (an attribute, as in
    pytorch-grad-cam; default 16): masked images per forward pass."""

    library_method = "scorecam"
    volumes = False

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 batch_size: int | None = None):
        super().__init__(model, target_layers, reshape_transform, uses_gradients=False)
        if batch_size is not None:
            self.batch_size = batch_size

    def get_cam_weights(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        method: Any = self.library_methods()[self.target_layers.index(target_layer)]
        method.batch_size = int(getattr(self, "batch_size", 16))
        classes = _classifier_classes(targets)
        tensor = torch.from_numpy(activations).to(self.device)
        images = input_tensor.to(self.device)
        with torch.no_grad():
            scores = method.masked_scores(images, tensor, None if classes is None else classes.to(self.device),
                                          None if classes is not None else _target_scores(targets))
        return torch.softmax(scores[:, 0].float(), dim=-1).cpu().numpy()


class AblationLayer(nn.Module):
    """Stands for pytorch-grad-cam's default ablation layer (the only one supported here)."""


def _channels_to_ablate(activations: np.ndarray, ratio: float) -> np.ndarray:
    """pytorch-grad-cam's ``AblationLayer.activations_to_be_ablated`` for one image (C, h, w): the
    channels whose mass lies most and least inside EigenCAM's non-negligible area, ``ratio`` of each."""
    if ratio == 1.0:
        return np.arange(activations.shape[0])
    projection = np.abs(get_2d_projection(activations[None, :])[0, :])
    projection = projection - projection.min()
    mask = projection / projection.max() > 0.01
    scores = []
    for channel in activations:
        normalized = np.abs(channel)
        normalized = normalized - normalized.min()
        normalized = normalized / np.max(normalized)
        scores.append((mask * normalized).sum() / normalized.sum())
    order = list(np.argsort(np.asarray(scores, dtype=np.float32)))
    count = int(len(order) * ratio)
    return np.asarray(order[::-1][:count] + order[:count], dtype=np.int32)


class AblationCAM(BaseCAM):
    """Ablation-CAM with this library's ablated passes (through the part after the layer where the
    model splits there). ``ratio_channels_to_ablate`` < 1 ablates only the channels pytorch-grad-cam
    picks (its EigenCAM-mask rule); the others keep weight 0. The ablated value is 0 (pytorch-grad-cam
    writes 0 only where the smallest activation is exactly 0, else ``min - 1e7``: the two agree on
    layers whose activations reach 0, e.g. after a ReLU)."""

    library_method = "ablationcam"
    volumes = False

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 ablation_layer: Any = None, batch_size: int = 32, ratio_channels_to_ablate: float = 1.0):
        if ablation_layer is not None and type(ablation_layer).__name__ != "AblationLayer":
            raise NotImplementedError(f"ablation_layer={type(ablation_layer).__name__}: only the default AblationLayer "
                                      "is supported by case_saliency.compat (no ViT or Faster R-CNN ablation layers)")
        if reshape_transform is not None:
            raise NotImplementedError("AblationCAM with a reshape_transform (token outputs) is not supported by "
                                      "case_saliency.compat; use a convolutional target layer")
        if not 0 < ratio_channels_to_ablate <= 1:
            raise ValueError(f"ratio_channels_to_ablate must be in (0, 1], got {ratio_channels_to_ablate}")
        super().__init__(model, target_layers, reshape_transform, uses_gradients=False)
        self.batch_size = batch_size
        self.ablation_layer = ablation_layer if ablation_layer is not None else AblationLayer()
        self.ratio_channels_to_ablate = ratio_channels_to_ablate

    def get_cam_weights(self, input_tensor: Tensor, target_layer: nn.Module, targets: list[Target],
                        activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        method: Any = self.library_methods()[self.target_layers.index(target_layer)]
        method.batch_size = int(self.batch_size)
        images = input_tensor.to(self.device)
        classes = _classifier_classes(targets)
        score = None if classes is not None else _target_scores(targets)
        classes = None if classes is None else classes.to(self.device)
        capture = method.capture(images, ClassRequest("top1"))
        batch = torch.arange(images.shape[0], device=capture.logits.device)
        if score is not None:
            original = score(capture.logits, batch)  # (B, 1)
        else:
            assert classes is not None
            original = capture.logits.gather(1, classes)
        skip = None
        if self.ratio_channels_to_ablate < 1.0:
            skip = torch.ones(capture.activations.shape[:2], dtype=torch.bool, device=images.device)
            for b in range(activations.shape[0]):
                chosen = _channels_to_ablate(activations[b], self.ratio_channels_to_ablate)
                skip[b, torch.as_tensor(chosen, dtype=torch.long, device=images.device)] = False
        with torch.no_grad():
            ablated = method.ablated_scores(images, capture.activations, getattr(capture, "saved", None), classes,
                                            score, skip)[:, 0]  # (B, C)
        if skip is not None:
            ablated = torch.where(skip, original, ablated)
        return ((original - ablated) / original).float().cpu().numpy()


class CASE(BaseCAM):
    """CASE with pytorch-grad-cam's interface: the target's Grad-CAM weights less their projection on
    the mean weights of the ``contrast`` classes (default: the next logit, ``TopLogits(k=1)``).
    Targets: ``ClassifierOutputTarget`` objects or None (the contrast needs class indices)."""

    library_method = "case"
    volumes = False

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 contrast: ContrastStrategy | None = None):
        self.contrast = contrast or TopLogits(k=1)
        super().__init__(model, target_layers, reshape_transform)

    def _library_options(self) -> dict[str, Any]:
        return {"contrast": self.contrast}

    def forward(self, input_tensor: Tensor, targets: Sequence[Any] | None, eigen_smooth: bool = False) -> np.ndarray:
        checked = _check_targets(targets, int(input_tensor.shape[0]))
        classes = _classifier_classes(checked)
        if checked is not None and classes is None:
            raise TypeError("CASE takes ClassifierOutputTarget targets (or None for the top class): its contrast "
                            "classes are chosen from class indices")
        size = self.get_target_width_height(input_tensor)
        per_layer = []
        for method in self.library_methods():
            method.eigen_smooth = eigen_smooth
            result = method.explain(input_tensor, "top1" if classes is None else classes[:, 0], relu=False,
                                    upsample=False)
            assert result.raw is not None
            self.outputs = result.logits
            cam = np.maximum(result.raw.float().cpu().numpy(), 0)
            per_layer.append(scale_cam_image(cam, size)[:, None, :])
        return self.aggregate_multi_layers(per_layer)


class _Refused(BaseCAM):
    reason: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(f"{type(self).__name__} is not supported by case_saliency.compat: {self.reason}")


class FullGrad(_Refused):
    reason = ("it needs the gradients of every bias and of the input, and this library's engine stops the backward "
              "at the target layer; use pytorch-grad-cam's FullGrad")


class ShapleyCAM(_Refused):
    reason = "it needs second-order gradients (detach=False); use pytorch-grad-cam's ShapleyCAM"


DEFAULT_COMPARISON_CATEGORIES = (1, 2, 3)


def _compat_class(base_method: Any) -> type[BaseCAM]:
    """``base_method`` as a class of this module: ours (or a subclass) as given, pytorch-grad-cam's by name."""
    if isinstance(base_method, type) and issubclass(base_method, BaseCAM):
        return base_method
    found = globals().get(getattr(base_method, "__name__", ""))
    if isinstance(found, type) and issubclass(found, BaseCAM):
        return found
    raise TypeError(f"base_method must be a CAM class of case_saliency.compat (e.g. GradCAM), got {base_method!r}")


class FinerCAM:
    """Finer-CAM with pytorch-grad-cam's interface and numbers: its base CAM (default GradCAM) of
    ``FinerWeightedTarget`` targets (the target logit minus ``alpha`` times the comparison logits,
    weighted by their softmax probabilities). ``comparison_categories`` are ranks among the classes
    sorted by how close their logit is to the target's (default 1, 2, 3: the three nearest)."""

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 base_method: Any = GradCAM):
        self.base_cam = _compat_class(base_method)(model, target_layers, reshape_transform)
        self.compute_input_gradient = self.base_cam.compute_input_gradient
        self.uses_gradients = self.base_cam.uses_gradients

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.forward(*args, **kwargs)

    def forward(self, input_tensor: Tensor, targets: Sequence[Any] | None = None, eigen_smooth: bool = False,
                alpha: float = 1, comparison_categories: Sequence[int] | None = None,
                target_idx: int | None = None) -> np.ndarray:
        def finer_targets(logits: Tensor) -> list[Target]:
            output = logits.detach().cpu().numpy()
            num_classes = output.shape[-1]
            if comparison_categories is None:
                ranks = list(DEFAULT_COMPARISON_CATEGORIES[:max(num_classes - 1, 0)])
            else:
                ranks = [c for c in comparison_categories if c < num_classes]
            main = np.max(output, axis=-1) if target_idx is None else output[:, target_idx]
            order = np.argsort(np.abs(output - main[:, None]), axis=-1)
            return [FinerWeightedTarget(int(order[i, 0]), [int(order[i, r]) for r in ranks], alpha)
                    for i in range(output.shape[0])]

        input_tensor = input_tensor.to(self.base_cam.device)
        resolved = self.base_cam.capture(input_tensor, targets, default_targets=finer_targets)
        cam_per_layer = self.base_cam.compute_cam_per_layer(input_tensor, resolved, eigen_smooth)
        return self.base_cam.aggregate_multi_layers(cam_per_layer)

    def __enter__(self) -> FinerCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.base_cam.activations_and_grads.release()


class RefineCAM:
    """RefineCAM (pytorch-grad-cam's meta-method): one base CAM per target layer, their [0, 1] maps
    multiplied, then scaled. ``kwargs`` go to the base method."""

    def __init__(self, model: nn.Module, target_layers: Any, reshape_transform: ReshapeTransform = None,
                 base_method: Any = GradCAMPlusPlus, **kwargs: Any):
        cls = _compat_class(base_method)
        self.base_cam_per_layer = [cls(model, [layer], reshape_transform, **kwargs)
                                   for layer in _target_layers(model, target_layers)]

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.forward(*args, **kwargs)

    def forward(self, input_tensor: Tensor, targets: Sequence[Any] | None = None,
                eigen_smooth: bool = False) -> np.ndarray:
        # pytorch-grad-cam passes eigen_smooth as the third positional argument, which is aug_smooth: the same here
        cam_per_layer = np.array([cam(input_tensor, targets, eigen_smooth) for cam in self.base_cam_per_layer])
        return scale_cam_image(np.prod(cam_per_layer, axis=0))
