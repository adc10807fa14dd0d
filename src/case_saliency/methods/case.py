"""CASE (Williamson et al., 2025, arXiv 2506.07327): the target's channel weights minus their
projection on the mean channel weights of a contrast set, so only evidence unique to the target
remains:  w_perp = w_t - <w_t, w_S> / (||w_S||^2 + eps) * w_S,  M = ReLU(sum_c w_perp[c] A[c]).

The paper uses Grad-CAM weights; here any channel-weight CAM can be the base (``base="gradcam++"``,
``"xgradcam"``, ``"scorecam"``, ``"ablationcam"``; by name ``case:<base>``), its weights computed
for the targets and all contrast classes from one pass (one batched backward for the gradient
CAMs, one set of masked forwards for Score-CAM and Ablation-CAM).

Cost: the base method's, with 1 + k classes per target in the same pass (the paper's public code
runs k + 1 full forward and backward passes per image).
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor

from ..core.capture import Capture, ModelInput
from ..core.contrast import ContrastStrategy, build_contrast
from ..core.layers import LayerSpec, Reshape
from .base import CAMMethod, ClassRequest, RawMaps, method_class, register


def remove_projection(weights: Tensor, direction: Tensor, eps: float = 1e-8) -> Tensor:
    """weights - (<weights, direction> / (||direction||^2 + eps)) * direction, over the last dim."""
    coef = (weights * direction).sum(-1, keepdim=True) / (direction.pow(2).sum(-1, keepdim=True) + eps)
    return weights - coef * direction


def channel_weight_bases() -> list[str]:
    """Names of the registered methods CASE can wrap: the channel-weight CAMs."""
    from .base import METHODS

    return sorted(name for name, cls in METHODS.items()
                  if issubclass(cls, CAMMethod) and cls.is_channel_weight_rule() and not issubclass(cls, CASE))


@register("case")
class CASE(CAMMethod):
    """CASE (Williamson et al., 2025): the target's channel weights minus their projection on the mean
    weights of a contrast set, so only evidence unique to the target remains.

    Which contrast: the paper defines the contrast set either by confusion neighbours (the classes
    the model confuses with the target on held-out data) or by the input's top logits. Its
    class-sensitivity experiments (RQ1) used confusion neighbours with k = 1 (each class its own
    most-confused class); its figures use k = 2 and its public code defaults to k = 5. The default
    here is model-level too: ``ClassifierNeighbours(model, k=1)`` (the class whose final-layer
    weight row is closest to the target's), because no confusion matrix exists for a model in
    general; pass ``ConfusionNeighbours(matrix, k)`` to follow the paper where you have one.
    ``TopLogits(1)`` contrasts the top-1 class with the top-2 and vice versa, so a top-1/top-2
    agreement test of its maps is circular (see :mod:`case_saliency.core.contrast`).

    Args:
        base: the channel-weight CAM whose weights are contrasted: "gradcam" (the paper's CASE, the
            default), "gradcam++", "xgradcam", "scorecam" or "ablationcam" (any registered
            channel-weight CAM). ``get_method("case:scorecam", model)`` is ``CASE(model, base="scorecam")``.
        contrast: a contrast strategy (``ClassifierNeighbours(model, k)``,
            ``ConfusionNeighbours(matrix, k)``, ``TopLogits(k)``, ``RankContrast(r)``,
            ``ExplicitContrast([...])``, ``LeavePairOut(...)``, ``Versus()``) or its spec text
            (``"classifier:1"``, ``"top:5"``, ``"leave-pair-out"``, ``"random:1:0"``, ...); ``"versus"``
            with ``targets=[[A, B]]`` gives A's map with B as its contrast and B's with A (circular by design);
            default ``ClassifierNeighbours(model, k=1)``, which needs an ``nn.Linear`` head (else
            pass a contrast). With k=0, or a contrast direction that is all zero, CASE equals its
            base method (and says so once); a contrast set holding the target is refused.
        eps: added to ||w_S||^2 in the projection.
        base_options: the base method's own options (e.g. ``batch_size`` for Score-CAM).
        eigen_smooth, aug_smooth: pytorch-grad-cam's smoothings, options of every CAM (see ``CAMMethod``).
    """

    follows_run_contrast = True  # runs hand it their (model-level) contrast unless its spec sets one
    default_variant = "gradcam"

    @classmethod
    def variants(cls) -> list[str]:
        return channel_weight_bases()

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 base: str = "gradcam", contrast: ContrastStrategy | str | None = None, eps: float = 1e-8,
                 eigen_smooth: bool = False, aug_smooth: bool = False, **base_options: Any):
        key = str(base).strip().lower()
        bases = channel_weight_bases()
        if key not in bases:
            raise ValueError(f"base={base!r} is not a channel-weight CAM that CASE can contrast; use one of "
                             f"{', '.join(bases)}")
        base_cls = method_class(key)
        assert issubclass(base_cls, CAMMethod)
        self.base = base_cls(model, target_layer=target_layer, reshape=reshape, **base_options)
        super().__init__(model, target_layer=target_layer, reshape=reshape, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth)
        self.engine = self.base.engine  # one layer, and one default-layer choice, for both
        self.base_name = key
        self._base_label = "Grad-CAM" if key == "gradcam" else base_cls.__name__
        self.name = "case" if key == "gradcam" else f"case:{key}"
        self.contrast = build_contrast(contrast if contrast is not None else "classifier:1", model=self.model)
        self.eps = eps
        self._warned = False

    @property  # a class attribute elsewhere; here its base's
    def needs_gradients(self) -> bool:  # type: ignore[override]
        return self.base.needs_gradients

    def capture(self, images: Tensor, request: ClassRequest) -> Capture:
        return self.base.capture(images, request)

    def maps_from(self, images: Tensor, capture: Capture, request: ClassRequest) -> RawMaps:
        weights, contrast_weights = request.split(self.base.class_weights(images, capture))  # (B, M, C), (B, M, k, C)
        if contrast_weights is None:
            self._warn_once(f"CASE has an empty contrast set (k=0); its maps equal {self._base_label}'s")
            final = weights
        else:
            direction = contrast_weights.mean(dim=2)  # (B, M, C): mean over the k classes
            if (direction == 0).all(dim=-1).any():
                self._warn_once(f"CASE contrast direction is all zero for some targets; those maps equal "
                                f"{self._base_label}'s")
            final = remove_projection(weights, direction, self.eps)
        per_target = {key: request.split(value)[0] for key, value in capture.per_class.items()}
        per_target.update(channel_weights=final, base_weights=weights)
        return RawMaps(self.combine(final, capture.activations), capture.logits, per_target,
                       {**capture.info, "base": self.base_name})

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            warnings.warn(message, stacklevel=5)
            self._warned = True

    def __repr__(self) -> str:
        base = "" if self.base_name == "gradcam" else f", base={self.base_name!r}"
        return f"{type(self).__name__}(layer={self.engine.layer_name!r}{base}, contrast={self.contrast!r})"
