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

Memory: Integrated Gradients and SmoothGrad run many copies of each image through the network at
once (IG: ``internal_batch_size`` interpolation points, SmoothGrad: batch x ``samples_batch_size``
noisy copies), and each copy keeps its activations for the backward pass. ``max_memory`` (bytes;
default :func:`default_memory_budget`: the budget of an enclosing :func:`memory_budget`, which the
command line's ``--max-memory`` sets, else half the memory available now) caps that: the activations
one image saves for the backward pass are measured once per input size (:func:`backward_bytes_per_image`,
one forward of one image with ``saved_tensors_hooks``), and the copies per pass are cut to what fits
the budget (images are split into smaller groups if even one copy each does not fit). Below the
cap the batches are the given ones, so results do not depend on the machine.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


MEMORY_SHARE = 0.5  # of the memory available when a method is called: the default budget
OVERHEAD = 1.5  # saved activations -> peak of a forward + backward pass (gradient buffers, temporaries)


def available_memory(device: torch.device | None = None) -> int:
    """Bytes available now: free GPU memory for a CUDA device, else the system's ``MemAvailable``
    (``/proc/meminfo``; elsewhere free physical pages from ``os.sysconf``; 4 GiB if neither can be read)."""
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


_budget: list[int] = []  # the budgets of the enclosing ``memory_budget`` blocks, innermost last


@contextmanager
def memory_budget(max_bytes: int | float | None) -> Iterator[None]:
    """Inside, gradient methods given no ``max_memory`` of their own use ``max_bytes`` (a method
    spec's ``max_memory=`` still wins): what ``--max-memory`` sets for a whole command. None leaves
    the default (half the memory available). The budget is per process (a torchrun rank has its own).

    Args:
        max_bytes: bytes a forward + backward pass may hold (> 0), or None.
    Raises:
        ValueError: ``max_bytes`` is not a positive number.
    """
    if max_bytes is None:
        yield
        return
    if not max_bytes > 0:
        raise ValueError(f"a memory budget must be a positive number of bytes, got {max_bytes!r}")
    _budget.append(int(max_bytes))
    try:
        yield
    finally:
        _budget.pop()


def default_memory_budget(device: torch.device | None = None) -> int:
    """The budget a gradient method uses when given no ``max_memory``: that of the innermost enclosing
    :func:`memory_budget`, else ``MEMORY_SHARE`` of :func:`available_memory`."""
    if _budget:
        return _budget[-1]
    return int(MEMORY_SHARE * available_memory(device))


def backward_bytes_per_image(model: torch.nn.Module, image: Tensor) -> int:
    """Bytes one image keeps for a backward pass to the input: the tensors autograd saves in a forward
    pass of ``image`` (1, C, H, W) with gradients on, each storage counted once, the model's parameters
    and buffers excluded (shared by the batch), times ``OVERHEAD`` for the backward's own buffers.

    Args:
        model: the network, in the mode it is explained in (eval).
        image: (1, C, H, W) one input.

    Returns:
        An estimate in bytes per image copy in a pass (>= the input's own size).
    """
    shared = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in shared:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = image[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(inputs)
    seen.setdefault(inputs.untyped_storage().data_ptr(), inputs.nbytes)  # the copy itself, saved or not
    return int(OVERHEAD * sum(seen.values()))


class CaptumMethod(SaliencyMethod):
    """Base of the Captum adapters: subclasses define ``attribute(images, classes (B,)) -> (B, 3, H, W)``.

    One forward pass without autograd resolves the targets; then, for each of the M requested
    classes, the Captum method's own passes (listed in each subclass).
    """

    uses_layer = False

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 channels: str = "sum", max_memory: int | None = None):
        if channels not in CHANNEL_RULES:
            raise ValueError(f"unknown channel rule {channels!r}; use one of {', '.join(CHANNEL_RULES)}")
        if max_memory is not None and max_memory <= 0:
            raise ValueError(f"max_memory={max_memory} must be a positive number of bytes (e.g. 4 * 2**30), "
                             "or None for half the memory available")
        super().__init__(model, target_layer=target_layer, reshape=reshape)
        self.channels = channels
        self.max_memory = max_memory
        self._bytes_per_image: dict[tuple[object, ...], int] = {}  # per input shape, dtype and device

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        raise NotImplementedError

    def copies_per_pass(self, images: Tensor) -> int:
        """How many image copies (interpolation points, noisy samples) one forward + backward pass may
        hold within the memory budget (>= 1); the per-image cost is measured once per input shape."""
        key = (tuple(images.shape[1:]), images.dtype, str(images.device))
        if key not in self._bytes_per_image:
            self._bytes_per_image[key] = backward_bytes_per_image(self.model, images[:1])
        return max(1, self.memory_budget(images.device) // max(1, self._bytes_per_image[key]))

    def memory_budget(self, device: torch.device | None = None) -> int:
        """Bytes a pass may hold: ``max_memory`` if given, else :func:`default_memory_budget`."""
        if self.max_memory is not None:
            return int(self.max_memory)  # a spec may give 3e9: a float
        return default_memory_budget(device)

    def _in_groups(self, images: Tensor, classes: Tensor, group: int,
                   attribute: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """``attribute`` over groups of at most ``group`` images (all at once when they fit)."""
        if group >= images.shape[0]:
            return attribute(images, classes)
        return torch.cat([attribute(images[i:i + group], classes[i:i + group])
                          for i in range(0, images.shape[0], group)])

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
        n_steps: quadrature points.
        internal_batch_size: interpolated inputs per pass (all images' points together), at most;
            cut to what ``max_memory`` allows (the maps are the same up to float rounding).
        max_memory: bytes a pass may use (default: half the memory available), see the module docstring.
    """

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 channels: str = "sum", baseline: float = 0.0, n_steps: int = 50,
                 internal_batch_size: int | None = 64, max_memory: int | None = None):
        super().__init__(model, target_layer=target_layer, reshape=reshape, channels=channels, max_memory=max_memory)
        self.baseline = float(baseline)
        self.n_steps = int(n_steps)
        self.internal_batch_size = internal_batch_size

    def attribute(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import IntegratedGradients as CaptumIG

        wanted = self.internal_batch_size or images.shape[0] * self.n_steps  # None: every point in one pass
        fits = min(wanted, self.copies_per_pass(images))
        group = min(images.shape[0], fits)  # Captum puts at least one point of every image in a pass

        def attribute(part: Tensor, part_classes: Tensor) -> Tensor:
            per_pass = max(part.shape[0], fits // part.shape[0] * part.shape[0])
            result: Tensor = CaptumIG(self.model).attribute(part, baselines=self.baseline, target=part_classes,
                                                            n_steps=self.n_steps, internal_batch_size=per_pass)
            return result

        return self._in_groups(images, classes, group, attribute)


@register("smoothgrad")
class SmoothGrad(CaptumMethod):
    """SmoothGrad (Smilkov et al., 2017): |gradient| averaged over noisy inputs, via Captum's NoiseTunnel.

    ``captum.attr.NoiseTunnel(Saliency)``; the noise SD is ``noise_level`` times the value range
    of the batch (the paper's 15%).

    Captum draws the noise from the global RNG; each call here forks it, seeds it from this
    instance's generator (seeded by ``seed``) and restores it, so results are reproducible and
    the caller's RNG state is untouched.

    Cost per image and class: ``samples`` forward and ``samples`` backward passes to the input.

    Memory: a pass holds batch x ``samples_batch_size`` noisy copies; ``max_memory`` (bytes, default
    half the memory available) cuts ``samples_batch_size``, then the images per pass, to what fits.
    Only then do the noise draws (and so the maps) differ from an unbounded run's.
    """

    def __init__(self, model: ModelInput, *, target_layer: LayerSpec | None = None, reshape: Reshape | None = None,
                 channels: str = "sum", samples: int = 25, noise_level: float = 0.15, seed: int = 0,
                 samples_batch_size: int | None = 8, max_memory: int | None = None):
        super().__init__(model, target_layer=target_layer, reshape=reshape, channels=channels, max_memory=max_memory)
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
        fits = self.copies_per_pass(images)
        group = min(images.shape[0], fits)
        samples_per_pass = max(1, min(self.samples_batch_size or self.samples, fits // group))

        def attribute(part: Tensor, part_classes: Tensor) -> Tensor:
            result: Tensor = NoiseTunnel(CaptumSaliency(self.model)).attribute(
                part, nt_type="smoothgrad", nt_samples=self.samples, stdevs=stdev, target=part_classes,
                nt_samples_batch_size=samples_per_pass, abs=True)
            return result

        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(draw_seed)
            return self._in_groups(images, classes, group, attribute)


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
