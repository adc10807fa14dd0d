"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): a channel's weight is the relative drop of the
class logit when that channel of the target layer is set to zero."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.capture import Capture, ModelInput, eval_mode
from ..core.layers import LayerSpec, Reshape
from ..core.split import SplitModel, split_at_layer, verify_split
from .base import CAMMethod, ClassRequest, register
from .channel_batches import Score, channel_pairs, class_logits

log = logging.getLogger("case_saliency")


@dataclass
class _AblationCapture(Capture):
    saved: list[Tensor] | None = None  # the earlier values the split's tail reads; None: full passes


@register("ablationcam")
class AblationCAM(CAMMethod):
    """Ablation-CAM (Desai & Ramaswamy, 2020): weights = relative logit drop when a channel is zeroed.

    ``w_c = (y - y_c) / y`` with y the target logit and y_c the logit with channel c of the layer
    output set to ``ablation_value``; map = ReLU(sum_c w_c A_c), bilinear to (H, W). A target logit
    of exactly 0 gives non-finite weights (as in the reference).

    As in pytorch-grad-cam (the parity reference) the scores are raw logits and the drop is
    divided by the (signed) unablated logit. One deviation: pytorch-grad-cam ablates with 0 only
    when the smallest activation of the image is exactly 0; otherwise (layers with negative, or
    only positive, activations) it writes ``min - 1e7``, and that minimum is re-read after each
    ablated row of a batch, so the value grows more negative along the batch. Here the ablated
    value is ``ablation_value`` (0 by default, the paper's definition) for every channel; the two
    agree on layers whose activations are >= 0 and reach 0 (e.g. after a ReLU).

    Cost per batch of B images, when the model splits at the layer (torch.fx; torchvision
    ResNet, VGG, DenseNet, ConvNeXt, timm EfficientNet and other traceable models): one forward of
    the part up to the layer, then ``ceil(B * C / batch_size)`` forwards of batch_size rows through
    only the part *after* the layer. Otherwise: one full forward, then as many full forwards of
    batch_size images with the layer output replaced by the ablated activations. No backward;
    all M requested classes come from the same passes, so the cost does not grow with M. The
    split is traced once per instance and checked against the full model on the first batch.
    ``CASE(base="ablationcam")`` scores its contrast classes in the same passes too.

    Args:
        model: (B, 3, H, W) -> (B, K) logits, or a ``LoadedModel``.
        target_layer: module or dotted name of a layer with output (B, C, h, w); None picks the
            last spatial layer. reshape: must stay None (channels of token outputs are not ablated).
        batch_size: ablated rows per pass.
        ablation_value: the value written into an ablated channel.
        split: False forces full forward passes (the fallback path).
        eigen_smooth, aug_smooth: pytorch-grad-cam's smoothings, options of every CAM (see ``CAMMethod``).
    """

    needs_gradients = False

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 batch_size: int = 128, ablation_value: float = 0.0, split: bool = True,
                 eigen_smooth: bool = False, aug_smooth: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        super().__init__(model, target_layer=target_layer, reshape=reshape, eigen_smooth=eigen_smooth,
                         aug_smooth=aug_smooth)
        self.batch_size = batch_size
        self.ablation_value = float(ablation_value)
        self.use_split = split
        self._split: SplitModel | None = None
        self._split_checked = False

    def split_model(self, images: Tensor) -> SplitModel | None:
        """The head/tail split at the target layer, traced and verified on first use; None when
        the model cannot be split (then full forward passes are used)."""
        if not self.use_split:
            return None
        if not self._split_checked:
            self._split_checked = True
            layer = self.engine.layer(images)
            split = split_at_layer(self.model, layer)
            with eval_mode(self.model, no_grad=True):
                if split is not None and not verify_split(split, self.model, images[:1]):
                    log.warning("the traced tail after %r does not reproduce the model's logits; "
                                "using full forward passes", self.engine.layer_name)
                    split = None
            self._split = split
        return self._split

    def capture(self, images: Tensor, request: ClassRequest) -> Capture:
        """One pass: through the head and tail of the split when there is one (the tail is then
        what each ablated row runs), else through the whole model."""
        self.engine.layer(images)  # resolves the default layer (and its reshape) on first use
        if self.engine.reshape is not None:
            raise ValueError(f"Ablation-CAM ablates channels of a (B, C, h, w) layer output; layer "
                             f"{self.engine.layer_name!r} needs a reshape (token outputs). "
                             "Pass a convolutional target_layer")
        split = self.split_model(images)
        with eval_mode(self.model, no_grad=True):
            head_out = split.head(images) if split is not None else None
        capture: _AblationCapture
        if split is not None and head_out is not None and all(
                isinstance(t, Tensor) and t.shape[:1] == images.shape[:1] for t in head_out):
            activations, saved = head_out[0], list(head_out[1:])
            with eval_mode(self.model, no_grad=True):  # clones: the tail may work in place on its inputs
                logits = split.tail(activations.clone(), *[t.clone() for t in saved])
            capture = _AblationCapture(logits, activations, None, None, info={"path": "tail"}, saved=saved)
        else:  # not traceable, or a tail input without a batch dimension
            cap = self.engine(images)
            capture = _AblationCapture(cap.logits, cap.activations, None, None, info={"path": "full"})
        if capture.activations.ndim != 4:
            raise ValueError(f"Ablation-CAM needs a layer with output (B, C, h, w); "
                             f"{self.engine.layer_name!r} gives {tuple(capture.activations.shape)}. "
                             "Choose a convolutional layer")
        capture.classes = request(capture.logits)
        return capture

    def class_weights(self, images: Tensor, capture: Capture) -> Tensor:
        """``(y - y_c) / y`` for every class of the capture: (B, M, C), all from one set of passes."""
        assert capture.classes is not None
        saved = capture.saved if isinstance(capture, _AblationCapture) else None
        original = capture.logits.gather(1, capture.classes)  # (B, M)
        ablated = self.ablated_scores(images, capture.activations, saved, capture.classes)  # (B, M, C)
        return (original[..., None] - ablated) / original[..., None]

    def ablated_scores(self, images: Tensor, activations: Tensor, saved: list[Tensor] | None,
                       classes: Tensor | None, score: Score | None = None, skip: Tensor | None = None) -> Tensor:
        """Logits of ``classes`` (B, M) with each channel ablated: (B, M, C). ``saved`` None means
        full forward passes with the layer output replaced. ``score`` replaces the logit lookup:
        (logits (n, K), image index (n,)) -> (n, M); ``skip`` (B, C) True: not ablated (left unset)."""
        b, c = activations.shape[:2]
        score = score or class_logits(classes)
        scores = activations.new_empty(b, c, 1 if classes is None else classes.shape[1])
        layer = self.engine.layer(images)
        replacement: list[Tensor] = []
        handle = None
        split = self.split_model(images) if saved is not None else None
        if saved is None:
            handle = layer.register_forward_hook(lambda module, inputs, output: replacement[0])
        try:
            with eval_mode(self.model, no_grad=True):
                for image_idx, channel_idx in channel_pairs(activations, self.batch_size, skip):
                    rows = activations[image_idx]  # (n, C, h, w), a copy
                    rows[torch.arange(len(image_idx)), channel_idx] = self.ablation_value
                    if saved is not None and split is not None:
                        logits = split.tail(rows, *[t[image_idx] for t in saved])
                    else:
                        replacement[:] = [rows]
                        logits = self.model(images[image_idx])
                    scores[image_idx, channel_idx] = score(logits, image_idx)
        finally:
            if handle is not None:
                handle.remove()
        return scores.transpose(1, 2)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layer={self.engine.layer_name!r}, batch_size={self.batch_size}, "
                f"ablation_value={self.ablation_value})")
