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
- :func:`road`: ROAD (Rong, Leemann et al., ICML 2022): the most (MoRF) or least (LeRF) relevant p% of
  the pixels are filled by noisy linear imputation (:func:`noisy_linear_imputation`: each the weighted
  mean of its neighbours, plus noise), which leaves no trace of the removed region's shape, and the
  model's accuracy and class probability are read at each p. Checked against Quantus' ``ROAD``
  (tests/metrics/test_road.py).

Pixel order: descending map value, ties by row-major position (the tie policy of
:mod:`case_saliency.metrics.agreement`), so constant maps remove pixels in reading order.
The mask is (H, W) and broadcast over channels (the public code swapped rows and columns; here
the map and the image share one (H, W) layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterator, Sequence

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
def class_probability(model: nn.Module, images: Tensor, classes: Tensor, batch_size: int = 8,
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
                    fill: str = "zero", *, prob_before: Tensor | None = None, batch_size: int = 8,
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
                       *, deletion_fill: str = "zero", insertion_fill: str = "blur", batch_size: int = 8,
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


# ---------------------------------------------------------------------------------------------
# ROAD: RemOve And Debias (Rong, Leemann et al., ICML 2022).

# Noisy linear imputation's neighbour weights: (row offset, column offset, weight), direct neighbours 1/6 and
# diagonal ones 1/12 (Rong et al.'s; the weights of the neighbours inside the image are renormalised).
IMPUTATION_NEIGHBOURS = ((0, 1, 1 / 6), (0, -1, 1 / 6), (1, 0, 1 / 6), (-1, 0, 1 / 6),
                         (1, 1, 1 / 12), (1, -1, 1 / 12), (-1, 1, 1 / 12), (-1, -1, 1 / 12))
ROAD_ORDERS = ("morf", "lerf")


def noisy_linear_imputation(images: Tensor, removed: Tensor, noise: float = 0.01,
                            generator: torch.Generator | None = None) -> Tensor:
    """Rong et al.'s imputation: every removed pixel becomes the weighted mean of its eight neighbours
    (removed or not: one sparse linear system per image, solved for all channels at once), plus
    Gaussian noise of SD ``noise``. Unlike a constant fill, the removed region carries no trace of
    its shape that the model could read (ROAD's "debias").

    Args:
        images: (B, C, H, W).
        removed: (B, H, W) bool, the pixels to impute (the same set in every channel).
        noise: SD of the noise added to the imputed values (0: the deterministic imputation).
        generator: the noise's torch generator (None: the global one).
    Returns:
        (B, C, H, W) on the images' device: kept pixels unchanged, removed ones imputed.
    Raises:
        ValueError: shapes that differ, or every pixel of an image removed (nothing to impute from).
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    b, c, h, w = images.shape
    if removed.shape != (b, h, w):
        raise ValueError(f"removed {tuple(removed.shape)} must be (B, H, W) = {(b, h, w)} for images "
                         f"{tuple(images.shape)}")
    out = images.detach().clone()
    masks = removed.detach().cpu().numpy().reshape(b, h * w).astype(bool)
    pixels = images.detach().cpu().double().numpy().reshape(b, c, h * w)
    rows, cols = np.divmod(np.arange(h * w), w)
    for i in range(b):
        gone = np.flatnonzero(masks[i])
        if gone.size == 0:
            continue
        # Any removed region short of the whole image has a kept pixel among its neighbours (8-connected), so
        # the system is regular; the whole image has nothing to impute from.
        if gone.size == h * w:
            raise ValueError(f"image {i}: all {h * w} pixels removed, so no kept pixel is left to impute them "
                             "from; remove fewer than all pixels")
        unknown = np.full(h * w, -1)
        unknown[gone] = np.arange(gone.size)
        total = np.zeros(gone.size)
        rhs = np.zeros((gone.size, c))
        entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for dy, dx, weight in IMPUTATION_NEIGHBOURS:
            y, x = rows[gone] + dy, cols[gone] + dx
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            where = np.flatnonzero(inside)
            neighbour = y[inside] * w + x[inside]
            total[where] += weight
            variable = unknown[neighbour]
            known = variable < 0
            rhs[where[known]] += weight * pixels[i][:, neighbour[known]].T
            entries.append((where[~known], variable[~known], np.full(int((~known).sum()), -weight)))
        diagonal = np.arange(gone.size)
        r = np.concatenate([diagonal, *(e[0] for e in entries)])
        q = np.concatenate([diagonal, *(e[1] for e in entries)])
        v = np.concatenate([total, *(e[2] for e in entries)])
        system = coo_matrix((v, (r, q)), shape=(gone.size, gone.size)).tocsc()
        solved = np.asarray(spsolve(system, rhs)).reshape(gone.size, c)
        values = torch.from_numpy(solved.T.copy()).to(out.dtype)  # (C, removed)
        if noise:
            values = values + noise * torch.randn(values.shape, generator=generator, dtype=values.dtype)
        flat = out[i].reshape(c, h * w)
        flat[:, torch.from_numpy(gone).to(out.device)] = values.to(out.device)
    return out


@dataclass
class Road:
    """ROAD curves of a batch: ``percentages`` (S,) removed; per image and percentage (B, S) the
    ``probability`` of the class and whether the prediction is still the class (``correct``);
    ``accuracy`` (S,) the share of images still correct (the measure of Rong et al. and Quantus'
    ``ROAD``); ``mean_probability`` (B,) the trapezoid average of ``probability`` over the removed
    fraction. MoRF (most relevant first): lower = more faithful; LeRF: higher."""

    percentages: Tensor
    probability: Tensor
    correct: Tensor
    accuracy: Tensor
    mean_probability: Tensor


@torch.no_grad()
def road(model: nn.Module, images: Tensor, maps: Tensor, classes: Tensor,
         percentages: Sequence[float] = tuple(range(1, 100, 2)), order: str = "morf", *, noise: float = 0.01,
         generator: torch.Generator | None = None, batch_size: int = 8) -> Road:
    """ROAD (Rong, Leemann et al., "A Consistent and Efficient Evaluation Strategy for Attribution
    Methods", ICML 2022): remove the map's most (MoRF) or least (LeRF) relevant p% of the pixels, fill
    them by noisy linear imputation (:func:`noisy_linear_imputation`) and read the model's output, at
    each p.

    Args:
        model: the classifier; its output (N, K) logits.
        images: (B, C, H, W) model inputs.
        maps: (B, H, W) the maps of ``classes`` at the input size (only their order is used: descending
            value, ties by position; LeRF ascending, ties by position).
        classes: (B,) the explained classes (the label, or the model's prediction).
        percentages: the removed shares, in [0, 100); floor(H W p / 100) pixels each (as Quantus' ``ROAD``).
        order: "morf" (most relevant first) or "lerf" (least relevant first).
        noise: the imputation's noise SD (Rong et al. and Quantus: 0.01). generator: the noise's generator.
        batch_size: images per forward pass.
    Returns:
        ``Road`` with CPU tensors.
    Raises:
        ValueError: an order not in ``ROAD_ORDERS``, a percentage outside [0, 100), maps not (B, H, W).
    Cost: one sparse solve and one forward pass per image and percentage.
    """
    if order not in ROAD_ORDERS:
        raise ValueError(f"order={order!r}: use 'morf' (most relevant first) or 'lerf' (least relevant first)")
    shares = [float(p) for p in percentages]
    if not shares or any(not 0 <= p < 100 for p in shares):
        raise ValueError(f"percentages={list(percentages)}: give one or more in [0, 100), e.g. range(1, 100, 2)")
    if maps.ndim != 3 or maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps must be (B, H, W) for images (B, C, H, W) = {tuple(images.shape)}, "
                         f"got {tuple(maps.shape)}")
    classes = classes.long().to(images.device)
    h, w = images.shape[-2:]
    scores = maps.to(images.device)
    ranks = pixel_ranks(scores if order == "morf" else -scores)
    probability, correct = [], []
    for share in shares:
        count = int(h * w * share / 100)
        removed = (ranks < count).view(-1, h, w)
        perturbed = noisy_linear_imputation(images, removed, noise, generator)
        probs, hits = [], []
        for start in range(0, perturbed.shape[0], batch_size):
            logits = model(perturbed[start:start + batch_size]).float()
            chunk = classes[start:start + batch_size, None].to(logits.device)
            probs.append(logits.softmax(1).gather(1, chunk)[:, 0].cpu())
            hits.append((logits.argmax(1, keepdim=True) == chunk)[:, 0].cpu())
        probability.append(torch.cat(probs))
        correct.append(torch.cat(hits))
    prob, hit = torch.stack(probability, 1), torch.stack(correct, 1)
    fractions = torch.tensor(shares, dtype=prob.dtype) / 100.0
    mean = prob[:, 0].clone() if len(shares) == 1 else \
        torch.trapezoid(prob, fractions, dim=1) / (fractions[-1] - fractions[0])
    return Road(torch.tensor(shares), prob, hit, hit.double().mean(0), mean)
