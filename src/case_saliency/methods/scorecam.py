"""Score-CAM (Wang et al., CVPR-W 2020): each channel, upsampled and min-max scaled to [0, 1],
masks the input; the class logit of the masked input, softmaxed over channels, weights the channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.capture import Capture, ModelInput, eval_mode
from ..core.layers import LayerSpec, Reshape
from .base import CAMMethod, register
from .channel_batches import Score, channel_pairs, class_logits


@register("scorecam")
class ScoreCAM(CAMMethod):
    """Score-CAM (Wang et al., 2020): weights = softmax over channels of the logit of channel-masked inputs.

    Defined as in pytorch-grad-cam (the reference of the parity tests):

    - mask_c = upsample(A_c) with bilinear ``align_corners=True`` to the input size, then
      ``(mask_c - min) / (max - min + 1e-8)`` per channel;
    - s_c = the raw logit of the target class for ``images * mask_c`` (not the softmax, not the
      increase over a baseline as in the paper);
    - weights = softmax over channels of s; map = ReLU(sum_c w_c A_c), bilinear to (H, W).

    Cost per batch of B images: one forward of the B images, then forward passes of
    ``ceil(B * C' / batch_size)`` batches of masked images, C' = the channels that are not all
    zero (an all-zero channel masks the input to zeros, whose score one extra forward of a single
    zero image gives for every such channel), no backward. The masks do not depend on the class,
    so all M requested classes (and, in ``CASE(base="scorecam")``, all contrast classes) are scored
    by the same passes: the cost does not grow with M.

    Args:
        model: (B, 3, H, W) -> (B, K) logits, or a ``LoadedModel``.
        target_layer: module or dotted name; None picks the default layer.
        reshape: maps the layer output to (B, C, h, w) (e.g. ``vit_reshape``).
        batch_size: masked images per forward pass (memory vs. speed).
        eigen_smooth, aug_smooth: pytorch-grad-cam's smoothings, options of every CAM (see ``CAMMethod``).
    """

    needs_gradients = False

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 batch_size: int = 64,
                 eigen_smooth: bool = False, aug_smooth: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        super().__init__(model, target_layer=target_layer, reshape=reshape, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth)
        self.batch_size = batch_size

    def class_weights(self, images: Tensor, capture: Capture) -> Tensor:
        assert capture.classes is not None
        scores = self.masked_scores(images, capture.activations, capture.classes)  # (B, M, C)
        capture.per_class["channel_scores"] = scores
        return torch.softmax(scores, dim=-1)

    def masked_scores(self, images: Tensor, activations: Tensor, classes: Tensor | None,
                      score: Score | None = None) -> Tensor:
        """Logits of ``classes`` (B, M) for every channel mask: (B, M, C). ``score`` replaces the logit
        lookup: (logits (n, K), image index (n,)) -> scores (n, M) (pytorch-grad-cam's target objects)."""
        size = tuple(images.shape[-2:])
        b, c = activations.shape[:2]
        score = score or class_logits(classes)
        scores = activations.new_empty(b, c, 1 if classes is None else classes.shape[1])
        all_zero = activations.flatten(2).eq(0).all(-1)  # (B, C)
        with eval_mode(self.model, no_grad=True):
            if all_zero.any():  # these channels all mask the input to exactly zero
                zero_logits = self.model(torch.zeros_like(images[:1]))  # (1, K)
                rows, cols = all_zero.nonzero(as_tuple=True)
                scores[rows, cols] = score(zero_logits.expand(len(rows), -1), rows)
            for image_idx, channel_idx in channel_pairs(activations, self.batch_size, all_zero):
                chosen = activations[image_idx, channel_idx][:, None]  # (n, 1, h, w)
                masks = F.interpolate(chosen, size=size, mode="bilinear", align_corners=True)
                lo = masks.amin(dim=(-2, -1), keepdim=True)
                hi = masks.amax(dim=(-2, -1), keepdim=True)
                masks = (masks - lo) / (hi - lo + 1e-8)
                logits = self.model(images[image_idx] * masks)  # (n, K)
                scores[image_idx, channel_idx] = score(logits, image_idx)
        return scores.transpose(1, 2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.engine.layer_name!r}, batch_size={self.batch_size})"
