"""Sanity checks (Adebayo et al., NeurIPS 2018) for a model and its saliency methods.

- **Cascading randomisation**: the model's parameters re-initialised layer by layer from the top
  (the logits end) down, on a seeded deep copy (the caller's model is never touched). The layers
  are the modules with their own ``reset_parameters`` (convolutions, linear and norm layers), in
  reverse registration order, each reset under ``torch.manual_seed(seed + 1)``: the order and the
  draws of Quantus' ``MPRT`` (``get_random_layer_generator(order="top_down")``), so the two agree
  on the same model (tests/metrics/test_quantus_checks.py). Norm layers' running statistics are reset too.
- **A model trained on shuffled labels** (``case-saliency train --shuffle-labels``): compared with
  the model trained on the true labels, as one more "randomised" model.

Per method, image and randomisation step: the similarity of the top-1 map to the original model's
(Spearman, SSIM, top-k% overlap; ``metrics.sanity``), and the randomised model's own top-1/top-2
agreement for the original's two classes, from which :func:`summarise` tests whether the
randomised model still "passes" the class-sensitivity test (a method that passes on a random
model: its pass means nothing). :func:`sanity_rows` goes from a batch of images to rows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.contrast import default_contrast
from ..methods.spec import build_method
from ..metrics import topk_agreement
from ..metrics.sanity import map_similarity
from ..metrics.stats import agreement_below


def randomisable_layers(model: nn.Module) -> list[str]:
    """The names of the modules cascading randomisation resets, top (logits end) first."""
    return [name for name, module in model.named_modules() if hasattr(module, "reset_parameters")][::-1]


def cascading_randomisation(model: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer name, model) with one more layer re-initialised at each step, top down, on one
    deep copy of ``model`` (the same copy, further randomised at each step: use it before the next).

    The caller's model and the global RNG are left as they were (the draws run under a forked RNG).
    """
    randomised = copy.deepcopy(model).eval()
    modules = dict(randomised.named_modules())
    for name in randomisable_layers(randomised):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            modules[name].reset_parameters()  # type: ignore[operator]
        yield name, randomised


def evenly_spaced(count: int, wanted: int | None) -> list[int]:
    """``wanted`` step indices out of ``count``, evenly spaced, always with the last (the fully
    randomised model); all of them for None."""
    if wanted is None or wanted >= count:
        return list(range(count))
    if wanted <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(count - 1, 0, wanted)})


def _maps(model: nn.Module, specs: Sequence[str], images: Tensor, targets: Tensor, layer: str | None,
          contrast: str) -> dict[str, Tensor]:
    out = {}
    for spec in specs:
        method = build_method(spec, model, run_contrast=contrast, target_layer=layer)
        out[spec] = method.explain(images, targets, relu=True, normalize=False).maps.detach().float().cpu()
    return out


def _rows_for(step: int, layer: str, ids: Sequence[str], original: Mapping[str, Tensor],
              other: Mapping[str, Tensor], k: float) -> list[dict[str, Any]]:
    rows = []
    for spec, maps in other.items():
        similar = map_similarity(original[spec][:, 0], maps[:, 0], k)
        pair = topk_agreement(maps[:, 0], maps[:, 1], k)
        for i, image_id in enumerate(ids):
            rows.append({"image_id": image_id, "method": spec, "step": step, "layer": layer,
                         "spearman": float(similar["spearman"][i]), "ssim": float(similar["ssim"][i]),
                         "topk": float(similar["topk"][i]), "agreement": float(pair[i])})
    return rows


def sanity_rows(model: nn.Module, methods: Sequence[str], images: Tensor, ids: Sequence[str], *,
                layer: str | None = None, seed: int = 0, k: float = 5.0, max_steps: int | None = None,
                shuffled: nn.Module | None = None, contrast: str | None = None) -> list[dict[str, Any]]:
    """One batch of images -> the sanity rows of every method.

    Args:
        model: the trained model, in eval mode (never modified). methods: method specs. images: (B, C, H, W) inputs.
        ids: (B,) image ids. layer: the methods' target layer (None: their default).
        seed: the randomisation's seed. k: the top share (percent) of the overlap and the agreement.
        max_steps: evaluate at this many evenly spaced cascade steps (the last always), None: all.
        shuffled: a model of the same architecture trained on shuffled labels, compared too (step -1).
        contrast: contrastive methods' contrast (default: the diagnostic's, leave-pair-out).
    Returns:
        Rows: image_id, method, step (0 = the original model, 1.. = layers randomised so far, -1 =
        the shuffled-label model), layer (the last layer randomised; "original"; "shuffled-labels"),
        spearman / ssim / topk (the top-1 map against the original model's), agreement (the model's
        own top-1/top-2 map agreement, for the original model's two classes).
    """
    contrast = contrast or default_contrast(diagnostic=True)
    with torch.no_grad():
        targets = model(images).topk(2, dim=1).indices  # the original model's top-1 and top-2
    original = _maps(model, methods, images, targets, layer, contrast)
    rows = _rows_for(0, "original", ids, original, original, k)
    layers = randomisable_layers(model)
    wanted = set(evenly_spaced(len(layers), max_steps))
    for step, (name, randomised) in enumerate(cascading_randomisation(model, seed)):
        if step in wanted:
            rows += _rows_for(step + 1, name, ids, original, _maps(randomised, methods, images, targets, layer,
                                                                   contrast), k)
    if shuffled is not None:
        rows += _rows_for(-1, "shuffled-labels", ids, original,
                          _maps(shuffled, methods, images, targets, layer, contrast), k)
    return rows


def summarise(rows: Sequence[Mapping[str, Any]], threshold: float = 50.0, alpha: float = 0.05
              ) -> list[dict[str, Any]]:
    """Per method and step: the median similarities to the original maps, the mean top-1/top-2
    agreement, and whether that model "passes" the class-sensitivity test (one-sided Wilcoxon of the
    agreement below ``threshold``, p < ``alpha``; ``metrics.stats.agreement_below``)."""
    out = []
    keys = dict.fromkeys((r["method"], r["step"], r["layer"]) for r in rows)
    for method, step, layer in keys:
        chosen = [r for r in rows if r["method"] == method and r["step"] == step]
        test = agreement_below([r["agreement"] for r in chosen], threshold)
        out.append({"method": method, "step": step, "layer": layer, "n": len(chosen),
                    **{f"median_{key}": float(np.nanmedian([r[key] for r in chosen]))
                       if np.isfinite([r[key] for r in chosen]).any() else float("nan")
                       for key in ("spearman", "ssim", "topk")},
                    "mean_agreement": float(np.nanmean([r["agreement"] for r in chosen])),
                    "p_below": test.pvalue, "passes": bool(test.pvalue < alpha)})
    return out


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a table of lines."""
    lines = [f"{'method':<14} {'step':>4}  {'randomised down to':<28} {'spearman':>8} {'ssim':>6} {'top-k':>6} "
             f"{'agree':>6} {'p':>8}  passes"]
    for r in summary:
        lines.append(f"{r['method']:<14} {r['step']:>4}  {r['layer']:<28} {r['median_spearman']:>8.3f} "
                     f"{r['median_ssim']:>6.3f} {r['median_topk']:>6.1f} {r['mean_agreement']:>6.1f} "
                     f"{r['p_below']:>8.2g}  {'yes' if r['passes'] else 'no'}")
    return "\n".join(lines)
