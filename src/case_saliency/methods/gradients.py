"""Input-gradient methods, computed by Captum (a dependency, not rewritten) behind the same call as
the CAMs: ``method(images, targets) -> (B, H, W)`` (or (B, M, H, W)).

Channel rule: Captum returns attributions shaped like the input (B, 3, H, W); ``channels="sum"``
(the default) sums them over the colour channels, which keeps Integrated Gradients' completeness
(the map still sums to the logit difference). For Saliency and SmoothGrad, which Captum returns as
absolute gradients, that is the sum of |gradient|. "abs_sum" sums absolute values and "max_abs"
takes the largest absolute value (Simonyan et al.'s rule). ``relu=True`` (the default of every
method) then keeps the positive evidence only.

The model is run in eval mode with its parameters' ``requires_grad`` switched off for the call
(no parameter gradient is computed); training flags, ``requires_grad``, ``.grad`` and hooks are as
before afterwards, also when an error is raised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..core.capture import ModelInput, eval_mode
from ..core.layers import LayerSpec, Reshape
from .base import ClassRequest, RawMaps, SaliencyMethod, register

CHANNEL_RULES: dict[str, Callable[[Tensor], Tensor]] = {
    "sum": lambda a: a.sum(dim=1),
    "abs_sum": lambda a: a.abs().sum(dim=1),
    "max_abs": lambda a: a.abs().amax(dim=1),
}


class CaptumMethod(SaliencyMethod):
    """Base of the Captum adapters: subclasses define ``attribute(images, classes (B,)) -> (B, 3, H, W)``.

    One forward pass without autograd resolves the targets; then, for each of the M requested
    classes, the Captum method's own passes (listed in each subclass).
    """

    uses_layer = False

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 channels: str = "sum"):
        if channels not in CHANNEL_RULES:
            raise ValueError(f"unknown channel rule {channels!r}; use one of {', '.join(CHANNEL_RULES)}")
        super().__init__(model, target_layer=target_layer, reshape=reshape)
        self.channels = channels

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        raise NotImplementedError

    def raw_maps(self, images: Tensor, request: ClassRequest) -> RawMaps:
        frozen = [p for p in self.model.parameters() if p.requires_grad]
        with eval_mode(self.model):
            try:
                for parameter in frozen:
                    parameter.requires_grad_(False)
                with torch.no_grad():
                    logits = self.model(images)
                request(logits)
                assert request.targets is not None
                targets = request.targets
                columns = targets if targets.ndim == 2 else targets[:, None]
                inputs = images.clone().requires_grad_(True)  # Captum would set it and warn
                with torch.enable_grad(), warnings.catch_warnings():
                    # Captum announces its temporary ReLU hooks (removed before it returns).
                    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                    raw = torch.stack([CHANNEL_RULES[self.channels](self.attribute(inputs, columns[:, m]).detach())
                                       for m in range(columns.shape[1])], dim=1)  # (B, M, H, W)
            finally:
                for parameter in frozen:
                    parameter.requires_grad_(True)
        return RawMaps(raw, logits, info={"channels": self.channels})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels!r})"


@register("saliency")
class Saliency(CaptumMethod):
    """Vanilla gradient (Simonyan et al., 2014), |d y_c / d x| via ``captum.attr.Saliency``.

    Cost per image and class: one forward and one backward pass to the input (plus one forward
    per batch for the targets).
    """

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import Saliency as CaptumSaliency

        attribution: Tensor = CaptumSaliency(self.model).attribute(images, target=classes, abs=True)
        return attribution


@register("inputxgradient")
class InputXGradient(CaptumMethod):
    """Input x gradient (Shrikumar et al., 2016) via ``captum.attr.InputXGradient``.

    Cost per image and class: one forward and one backward pass to the input.
    """

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import InputXGradient as CaptumInputXGradient

        attribution: Tensor = CaptumInputXGradient(self.model).attribute(images, target=classes)
        return attribution


@register("integrated_gradients")
class IntegratedGradients(CaptumMethod):
    """Integrated Gradients (Sundararajan et al., 2017) via ``captum.attr.IntegratedGradients``.

    The path integral of gradients from ``baseline`` to the input, Gauss-Legendre quadrature.

    Cost per image and class: ``n_steps`` forward and ``n_steps`` backward passes to the input,
    run ``internal_batch_size`` at a time.

    Args:
        baseline: the constant baseline image value, in the model's (normalised) input space;
            0 is the dataset mean colour for mean/std-normalised inputs.
        n_steps: quadrature points. internal_batch_size: inputs per pass (memory bound).
    """

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 channels: str = "sum", baseline: float = 0.0, n_steps: int = 50,
                 internal_batch_size: int | None = 64):
        super().__init__(model, target_layer=target_layer, reshape=reshape, channels=channels)
        self.baseline = float(baseline)
        self.n_steps = int(n_steps)
        self.internal_batch_size = internal_batch_size

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import IntegratedGradients as CaptumIG

        attribution: Tensor = CaptumIG(self.model).attribute(images, baselines=self.baseline, target=classes,
                                                             n_steps=self.n_steps,
                                                             internal_batch_size=self.internal_batch_size)
        return attribution


@register("smoothgrad")
class SmoothGrad(CaptumMethod):
    """SmoothGrad (Smilkov et al., 2017): |gradient| averaged over noisy inputs, via Captum's NoiseTunnel.

    ``captum.attr.NoiseTunnel(Saliency)``; the noise SD is ``noise_level`` times the value range
    of the batch (the paper's 15%).

    Captum draws the noise from the global RNG; each call here forks it, seeds it from this
    instance's generator (seeded by ``seed``) and restores it, so results are reproducible and
    the caller's RNG state is untouched.

    Cost per image and class: ``samples`` forward and ``samples`` backward passes to the input.
    """

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 channels: str = "sum", samples: int = 25, noise_level: float = 0.15, seed: int = 0,
                 samples_batch_size: int | None = 8):
        super().__init__(model, target_layer=target_layer, reshape=reshape, channels=channels)
        self.samples = int(samples)
        self.noise_level = float(noise_level)
        self.seed = int(seed)
        self.samples_batch_size = samples_batch_size
        self.generator = torch.Generator().manual_seed(self.seed)

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as CaptumSaliency

        stdev = self.noise_level * (images.max() - images.min()).item()
        draw_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(draw_seed)
            attribution: Tensor = NoiseTunnel(CaptumSaliency(self.model)).attribute(
                images, nt_type="smoothgrad", nt_samples=self.samples, stdevs=stdev, target=classes,
                nt_samples_batch_size=self.samples_batch_size, abs=True)
        return attribution


@register("guided_gradcam")
class GuidedGradCAM(CaptumMethod):
    """Guided Grad-CAM (Selvaraju et al., 2017) via Captum: guided backprop times Grad-CAM.

    Guided backpropagation times the Grad-CAM map of ``target_layer`` (nearest-upsampled, Captum's default).
    Guided backpropagation needs the model's ReLUs to be ``nn.ReLU`` modules (not functional calls).

    Cost per image and class: two forwards and two backwards (one for Grad-CAM to the layer, one
    for guided backpropagation to the input).
    """

    uses_layer = True

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import GuidedGradCam

        layer = self.engine.layer(images)
        if self.engine.reshape is not None:
            raise ValueError(f"Guided Grad-CAM needs a convolutional layer; {self.layer_name!r} outputs "
                             "tokens (it needs a reshape). Pass a convolutional target_layer")
        attribution: Tensor = GuidedGradCam(self.model, layer).attribute(images, target=classes)
        return attribution

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer_name!r}, channels={self.channels!r})"
