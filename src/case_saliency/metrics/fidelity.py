"""Fidelity: does a map point at what the model uses? Remove (or reveal) the most salient pixels
and watch the class probability.

- :func:`confidence_drop`: the paper's test. The top-k% pixels of the map are replaced by a fill
  (default "zero": 0 in the normalised input, i.e. the dataset mean colour, as the paper) and the
  softmax probability of the class is read before and after. Two scores, clearly named:
  ``drop_relative = max(p_before - p_after, 0) / p_before`` (what the authors' code computes; the
  Grad-CAM++ "average drop") and ``drop_absolute = p_before - p_after`` (what the paper's text
  describes; may be negative).
- :func:`deletion_insertion`: the RISE protocol (Petsiuk et al., 2018): pixels are removed from
  the image (deletion) or revealed on a substrate (insertion) in order of decreasing saliency, in
  ``steps`` equal steps; the curves of class probability and their areas (trapezoid rule over the
  removed fraction, 0..1). Low deletion AUC and high insertion AUC are good. Perturbed images
  are evaluated in batches.

Pixel order: descending map value, ties by row-major position (the tie policy of
:mod:`case_saliency.metrics.agreement`), so constant maps remove pixels in reading order.
The mask is (H, W) and broadcast over channels (the public code swapped rows and columns; here
the map and the image share one (H, W) layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterator

import torch
import torchvision.transforms.functional as TF
from torch import Tensor, nn

from .agreement import top_mask

FILLS = ("zero", "mean", "blur")


def substrate(images: Tensor, fill: str = "zero", *, blur_kernel: int = 11, blur_sigma: float = 5.0) -> Tensor:
    """What removed pixels become, (B, C, H, W) -> (B, C, H, W).

    "zero": 0 in the (normalised) input, the dataset mean colour when inputs are standardised;
    "mean": each image's own per-channel mean; "blur": a Gaussian blur of the image (kernel
    ``blur_kernel``, sigma ``blur_sigma``; RISE's insertion substrate is 11 / 5).
    """
    if fill == "zero":
        return torch.zeros_like(images)
    if fill == "mean":
        return images.mean(dim=(-2, -1), keepdim=True).expand_as(images).clone()
    if fill == "blur":
        return TF.gaussian_blur(images, [blur_kernel, blur_kernel], [blur_sigma, blur_sigma])
    raise ValueError(f"fill={fill!r} is not one of {FILLS}")


@torch.no_grad()
def class_probability(model: nn.Module, images: Tensor, classes: Tensor, batch_size: int = 64,
                      progress: Callable[[int], None] | None = None) -> Tensor:
    """Softmax probability of ``classes`` (N,) for ``images`` (N, C, H, W) -> (N,), in batches.
    progress: called with the number of images of each forward pass, after it."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size])
        probs = logits.float().softmax(dim=1)
        out.append(probs.gather(1, classes[start:start + batch_size, None].to(probs.device))[:, 0])
        if progress is not None:
            progress(out[-1].shape[0])
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class ConfidenceDrop:
    """Per image (B,): probability of the class before and after removal, and the two drops."""

    prob_before: Tensor
    prob_after: Tensor
    drop_relative: Tensor  # max(p0 - p1, 0) / p0
    drop_absolute: Tensor  # p0 - p1


def remove_top(images: Tensor, maps: Tensor, k: float = 50.0, fill: str = "zero", **fill_options) -> Tensor:
    """Images (B, C, H, W) with the top-k% pixels of ``maps`` (B, H, W) replaced by the fill."""
    if maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps {tuple(maps.shape)} and images {tuple(images.shape)} differ in (H, W); "
                         "upsample the maps to the input size")
    mask = top_mask(maps.to(images.device), k).unsqueeze(1)  # (B, 1, H, W)
    return torch.where(mask, substrate(images, fill, **fill_options), images)


def confidence_drop(model: nn.Module, images: Tensor, maps: Tensor, classes: Tensor, k: float = 50.0,
                    fill: str = "zero", *, prob_before: Tensor | None = None, batch_size: int = 64,
                    progress: Callable[[int], None] | None = None, **fill_options) -> ConfidenceDrop:
    """The paper's fidelity score for maps (B, H, W) of ``classes`` (B,) on ``images`` (B, C, H, W).

    k: percent of pixels removed (the public script: 50). prob_before: pass it when already known
    to save a forward pass. progress: called with the images of each forward pass.
    Cost: one forward pass (two without ``prob_before``).
    """
    classes = classes.long()
    if prob_before is None:
        prob_before = class_probability(model, images, classes, batch_size, progress)
    perturbed = remove_top(images, maps, k, fill, **fill_options)
    prob_after = class_probability(model, perturbed, classes, batch_size, progress)
    prob_before = prob_before.float().to(prob_after.device)
    absolute = prob_before - prob_after
    relative = absolute.clamp_min(0) / prob_before.clamp_min(1e-12)
    return ConfidenceDrop(prob_before, prob_after, relative, absolute)


@dataclass
class Curves:
    """Deletion/insertion curves: fractions (S+1,) of pixels removed/revealed; curves (B, S+1)
    of class probability; AUCs (B,) by the trapezoid rule over the fractions."""

    fractions: Tensor
    deletion: Tensor
    insertion: Tensor
    deletion_auc: Tensor
    insertion_auc: Tensor


def pixel_ranks(maps: Tensor) -> Tensor:
    """Rank of each pixel, 0 = most salient: (B, H, W) -> (B, H*W) long; ties by position."""
    flat = torch.nan_to_num(maps.detach().float(), nan=0.0).flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def _perturbed(images: Tensor, start: Tensor, end: Tensor, ranks: Tensor, counts: Tensor,
               batch_size: int) -> Iterator[Tensor]:
    """Yield batches of the (B * S) images in which the first ``counts[s]`` ranked pixels of
    ``start`` are taken from ``end``, image-major."""
    b, s = images.shape[0], counts.numel()
    h, w = images.shape[-2:]
    jobs = [(i, j) for i in range(b) for j in range(s)]
    for offset in range(0, len(jobs), batch_size):
        chunk = jobs[offset:offset + batch_size]
        idx = torch.tensor([i for i, _ in chunk], device=images.device)
        cnt = counts[torch.tensor([j for _, j in chunk], device=counts.device)]
        mask = (ranks[idx] < cnt[:, None]).view(-1, 1, h, w)
        yield torch.where(mask, end[idx], start[idx])


def check_steps(steps: int, size: tuple[int, int]) -> None:
    """Refuse deletion/insertion ``steps`` that the images cannot take: negative, or more than their
    pixels (a step would then remove less than one pixel: the curve repeats points, at 2 (steps + 1)
    forward passes per image). 0 means no curves.

    Args:
        steps: the steps asked for.
        size: the (H, W) of the images as the model sees them.
    Raises:
        ValueError: naming the steps, the pixels and the largest number that fits.
    """
    pixels = int(size[0]) * int(size[1])
    if steps < 0:
        raise ValueError(f"steps={steps}: use 0 to skip the curves or a positive number of steps")
    if steps > pixels:
        raise ValueError(f"steps={steps} is more than the {pixels} pixels of a {size[0]}x{size[1]} image: a step "
                         f"would remove less than one pixel; use at most {pixels} (one pixel a step), e.g. the "
                         "default 20")


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: Tensor, maps: Tensor, classes: Tensor, steps: int = 20,
                       *, deletion_fill: str = "zero", insertion_fill: str = "blur", batch_size: int = 64,
                       progress: Callable[[int], None] | None = None, **fill_options) -> Curves:
    """RISE deletion and insertion curves of maps (B, H, W) for ``classes`` (B,) on images (B, C, H, W).

    steps: number of equal steps from 0 to all pixels (curves have steps + 1 points).
    deletion_fill: what deleted pixels become (default "zero", RISE's constant substrate);
    insertion_fill: the substrate pixels are revealed on (default "blur", as RISE).
    progress: called with the number of perturbed images of each forward pass, after it.
    Cost: 2 * B * (steps + 1) forward passes, ``batch_size`` images at a time.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}; need at least 1 step")
    check_steps(steps, (images.shape[-2], images.shape[-1]))
    classes = classes.long().to(images.device)
    b = images.shape[0]
    n = images.shape[-2] * images.shape[-1]
    fractions = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    counts = torch.round(fractions * n).long().to(images.device)
    ranks = pixel_ranks(maps.to(images.device))
    repeated = classes.repeat_interleave(steps + 1)
    curves = {}
    for name, start, end in (("deletion", images, substrate(images, deletion_fill, **fill_options)),
                             ("insertion", substrate(images, insertion_fill, **fill_options), images)):
        probs = []
        offset = 0
        for batch in _perturbed(images, start, end, ranks, counts, batch_size):
            logits = model(batch).float()
            chunk = repeated[offset:offset + batch.shape[0]]
            probs.append(logits.softmax(1).gather(1, chunk[:, None].to(logits.device))[:, 0])
            offset += batch.shape[0]
            if progress is not None:
                progress(batch.shape[0])
        curves[name] = torch.cat(probs).view(b, steps + 1).cpu()
    x = fractions.float()
    return Curves(fractions=x, deletion=curves["deletion"], insertion=curves["insertion"],
                  deletion_auc=torch.trapezoid(curves["deletion"], x, dim=1),
                  insertion_auc=torch.trapezoid(curves["insertion"], x, dim=1))
