"""Class-contrastive fidelity: does A's map point at what makes the model prefer A over B?

:func:`contrastive_drop` removes the top-k% pixels of A's map (by default with a blur fill, so no
out-of-distribution colour stands in for them) and reads the change of the logit margin
``logit_A - logit_B`` over a sweep of k. A map of evidence *unique* to A lowers the margin (a
positive ``drop``); a map of evidence shared by A and B lowers both logits and leaves the margin
nearly unchanged, however faithful it is to A alone. Logits, not probabilities: the margin is the
log-odds of A against B, unaffected by the other classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .fidelity import remove_top


@dataclass
class ContrastiveDrop:
    """Per image and k: ``k_percent`` (S,); ``margin_before`` (B,) = logit A - logit B on the image;
    ``margin_after`` (B, S) after removing the top-k% of A's map; ``drop`` (B, S) = before - after
    (positive: the removed pixels held A's evidence against B); ``mean_drop`` (B,) the trapezoid
    average of ``drop`` over the sweep (k as a fraction; the drop itself when S = 1)."""

    k_percent: Tensor
    margin_before: Tensor
    margin_after: Tensor
    drop: Tensor
    mean_drop: Tensor

    def rows(self) -> list[list[dict[str, float]]]:
        """Per image, one dict per k: ``{"k_percent", "margin_before", "margin_after", "drop"}``,
        the form a run's rows take."""
        return [[{"k_percent": float(k), "margin_before": float(self.margin_before[i]),
                  "margin_after": float(self.margin_after[i, j]), "drop": float(self.drop[i, j])}
                 for j, k in enumerate(self.k_percent.tolist())] for i in range(self.drop.shape[0])]


@torch.no_grad()
def logit_margin(model: nn.Module, images: Tensor, classes_a: Tensor, classes_b: Tensor,
                 batch_size: int = 8) -> Tensor:
    """logit A - logit B of ``images`` (N, C, H, W) for classes (N,) and (N,) -> (N,), in batches."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size]).float()
        a = classes_a[start:start + batch_size, None].to(logits.device)
        b = classes_b[start:start + batch_size, None].to(logits.device)
        out.append((logits.gather(1, a) - logits.gather(1, b))[:, 0])
    return torch.cat(out) if out else torch.zeros(0)


def contrastive_drop(model: nn.Module, images: Tensor, maps: Tensor, classes_a: Tensor, classes_b: Tensor,
                     k_percent: Sequence[float] = (5.0, 10.0, 20.0, 50.0), fill: str = "blur", *,
                     batch_size: int = 8, **fill_options: float) -> ContrastiveDrop:
    """The change of logit A minus logit B when the top-k% pixels of A's map are removed.

    Args:
        model: the classifier; its output (N, K) logits.
        images: (B, C, H, W) model inputs.
        maps: (B, H, W) A's maps at the input size (any scale: only their order is used).
        classes_a, classes_b: (B,) the explained class and the class it is contrasted with.
        k_percent: the sweep, percentages in (0, 100].
        fill: what removed pixels become (``metrics.fidelity.substrate``: "blur", "zero", "mean").
        batch_size: images per forward pass.
        fill_options: ``blur_kernel``, ``blur_sigma``.
    Returns:
        ``ContrastiveDrop`` with (B,) and (B, S) tensors on the CPU.
    Raises:
        ValueError: an empty sweep or a k outside (0, 100]; maps not (B, H, W) at the input size.
    Cost: 1 + S forward passes of the batch.

    Example: a fidelity run kind calls it with the top-1 maps of a batch and ``classes_b`` the
    top-2 classes, and writes ``result.rows()[i]`` beside image i's row.
    """
    ks = sorted(float(k) for k in k_percent)
    if not ks or any(not 0 < k <= 100 for k in ks):
        raise ValueError(f"k_percent={list(k_percent)}: give one or more percentages in (0, 100], e.g. (5, 10, 20, 50)")
    if maps.ndim != 3 or maps.shape[0] != images.shape[0]:
        raise ValueError(f"maps must be (B, H, W) for images (B, C, H, W) = {tuple(images.shape)}, "
                         f"got {tuple(maps.shape)}")
    classes_a, classes_b = classes_a.long().flatten(), classes_b.long().flatten()
    before = logit_margin(model, images, classes_a, classes_b, batch_size).cpu()
    perturbed = torch.cat([remove_top(images, maps, k, fill, **fill_options) for k in ks])  # (S*B, C, H, W)
    repeat_a, repeat_b = classes_a.repeat(len(ks)), classes_b.repeat(len(ks))
    after = logit_margin(model, perturbed, repeat_a, repeat_b, batch_size).cpu().view(len(ks), -1).T  # (B, S)
    drop = before[:, None] - after
    fractions = torch.tensor(ks, dtype=drop.dtype) / 100.0
    if len(ks) == 1:
        mean = drop[:, 0].clone()
    else:
        mean = torch.trapezoid(drop, fractions, dim=1) / (fractions[-1] - fractions[0])
    return ContrastiveDrop(torch.tensor(ks), before, after, drop, mean)
