"""A planted ground truth for class sensitivity: evidence unique to each of two classes, known by
construction, so that no contrast, tie rule or subset can flatter a method.

The model: a Fashion-MNIST ResNet-like classifier (``models.fashion``) trained with an 11th class,
"garment with a patch": a fixed 8x8 checkerboard pasted at a random place on a share of the
training garments, labelled 10. On a patched test image the top-1 class should be the patch class
and the top-2 the garment's own class; a class-sensitive map puts the patch class's mass on the
patch and the garment class's on the garment (``metrics.planted.planted_evidence``). As the easy
case, the grid pointing game (Böhle et al., CVPR 2021) on 2x2 mosaics of test images of four
distinct, confidently recognised classes (``metrics.planted.grid_pointing``).

Functions go from a batch of images to rows (:func:`planted_rows`, :func:`mosaic_rows`), so a run
kind can wrap them; :func:`run_planted` trains (resumably: the training state is saved every few
hundred steps and a finished checkpoint is reused) and scores, writing ``rows.csv``,
``mosaic_rows.csv`` and ``summary.json`` under its folder.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.contrast import default_contrast
from ..data.fashion_mnist import CLASS_NAMES, FashionMNIST
from ..methods.base import SaliencyMethod
from ..methods.spec import build_method
from ..metrics.planted import bootstrap_mean, grid_pointing, planted_evidence
from ..models.checkpoint import CHECKPOINT_FORMAT
from ..models.fashion import FashionResNet, MEAN, STD, target_layer
from ..runs.store import atomic_write, write_json

PATCH_CLASS = 10
PATCH_NAME = "garment with a patch"
PLANTED_CLASS_NAMES = (*CLASS_NAMES, PATCH_NAME)
DEFAULT_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "case")
LAYER = target_layer("resnet")
GARMENT_THRESHOLD = 0.05  # pixels above this (in [0, 1]) belong to the garment; the background is 0
log = logging.getLogger("case_saliency")


def patch_pattern(size: int = 8) -> Tensor:
    """The planted pattern: a (size, size) checkerboard of 2x2 checks, 1.0 and 0.0."""
    index = torch.arange(size) // 2
    return ((index[:, None] + index[None, :]) % 2 == 0).float()


def plant(pixels: Tensor, generator: torch.Generator, size: int = 8) -> tuple[Tensor, Tensor]:
    """Paste the pattern at a random place (uniform, fully inside) on each image.

    Args:
        pixels: (B, 1, H, W) in [0, 1]. generator: the places' RNG. size: the pattern's side.
    Returns:
        (patched pixels (B, 1, H, W), patch masks (B, H, W) bool).
    """
    b, _, h, w = pixels.shape
    rows = torch.randint(0, h - size + 1, (b,), generator=generator)
    cols = torch.randint(0, w - size + 1, (b,), generator=generator)
    masks = torch.zeros(b, h, w, dtype=torch.bool)
    patched = pixels.clone()
    pattern = patch_pattern(size)
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        patched[i, 0, r:r + size, c:c + size] = pattern
        masks[i, r:r + size, c:c + size] = True
    return patched, masks


def normalise(pixels: Tensor) -> Tensor:
    """(B, 1, H, W) pixels in [0, 1] -> the model's input scale."""
    return (pixels - MEAN[0]) / STD[0]


@dataclass(frozen=True)
class PlantedSettings:
    """How the planted model is trained: ``steps`` Adam steps of ``batch_size`` images drawn from the
    Fashion-MNIST training split (a seeded subset of ``train_limit`` images, or all), a share
    ``patched`` of each batch given the patch and the label 10; everything random from ``seed``."""

    seed: int = 0
    steps: int = 1200
    batch_size: int = 64
    patched: float = 0.25
    patch_size: int = 8
    lr: float = 3e-3
    train_limit: int | None = None


def _model(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FashionResNet(num_classes=len(PLANTED_CLASS_NAMES))


def train_planted(out_dir: str | Path, settings: PlantedSettings = PlantedSettings(), *, root: str | Path | None = None,
                  save_every: int = 200, progress: Callable[[int, float], None] | None = None) -> Path:
    """Train (or resume training, or reuse) the planted-patch model; returns its checkpoint.

    The checkpoint ``planted-seed<S>.pt`` is a ``case-saliency train`` checkpoint (architecture
    "resnet", 11 classes), so ``load_model`` and every command read it. An existing checkpoint with
    the same settings is reused; one with other settings is refused. While training, the state
    (model, optimiser, RNG, step) is saved every ``save_every`` steps to ``planted-seed<S>.state.pt``,
    and a rerun continues from it: the result equals an uninterrupted run's.

    Args:
        out_dir: the folder. settings: ``PlantedSettings``. root: the Fashion-MNIST folder.
        save_every: steps between saves of the training state. progress: called (step, loss).
    Raises:
        ValueError: an existing checkpoint or state trained with other settings.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / f"planted-seed{settings.seed}.pt"
    state_path = checkpoint.with_suffix(".state.pt")
    wanted = asdict(settings)
    if checkpoint.exists():
        meta = torch.load(checkpoint, map_location="cpu", weights_only=True)["meta"]
        if meta.get("planted") != wanted:
            raise ValueError(f"{checkpoint} was trained with {meta.get('planted')}, not {wanted}; use another --out "
                             "or remove it")
        return checkpoint
    images, labels = FashionMNIST("train", root).tensors()
    generator = torch.Generator().manual_seed(settings.seed)
    if settings.train_limit is not None and settings.train_limit < len(labels):
        keep = torch.randperm(len(labels), generator=generator)[:settings.train_limit]
        images, labels = images[keep], labels[keep]
    model = _model(settings.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    step, started = 0, time.time()
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["settings"] != wanted:
            raise ValueError(f"{state_path} belongs to a training with {state['settings']}, not {wanted}; remove it")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        step = int(state["step"])
        log.info("planted: resuming training at step %d of %d", step, settings.steps)
    model.train()
    while step < settings.steps:
        index = torch.randint(0, len(labels), (settings.batch_size,), generator=generator)
        x, y = images[index], labels[index].clone()
        chosen = torch.rand(settings.batch_size, generator=generator) < settings.patched
        if chosen.any():
            x[chosen] = plant(x[chosen], generator, settings.patch_size)[0]
            y[chosen] = PATCH_CLASS
        loss = F.cross_entropy(model(normalise(x)), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if progress is not None:
            progress(step, float(loss.detach()))
        if step % save_every == 0 and step < settings.steps:
            state = {"settings": wanted, "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                     "generator": generator.get_state(), "step": step}
            _save(state_path, state)
    model.eval()
    meta = {"format": CHECKPOINT_FORMAT, "architecture": "resnet", "family": "fashion-mnist-planted",
            "seed": settings.seed, "planted": wanted, "num_classes": len(PLANTED_CLASS_NAMES), "in_channels": 1,
            "input_size": 28, "mean": list(MEAN), "std": list(STD), "class_names": list(PLANTED_CLASS_NAMES),
            "target_layer": LAYER, "train_data": FashionMNIST("train", root).identity(),
            "train_seconds": time.time() - started, "pattern": "8x8 checkerboard of 2x2 checks, 1.0/0.0"}
    record = {"format": CHECKPOINT_FORMAT, "meta": meta, "state_dict": model.state_dict()}
    _save(checkpoint, record)
    state_path.unlink(missing_ok=True)
    return checkpoint


def _save(path: Path, record: dict[str, Any]) -> None:
    def write(handle: Any) -> None:
        torch.save(record, handle)

    atomic_write(path, write)


def load_planted(checkpoint: str | Path) -> nn.Module:
    """The planted model of a checkpoint written by :func:`train_planted`, in eval mode."""
    record = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = _model(0)
    model.load_state_dict(record["state_dict"])
    return model.eval()


@torch.no_grad()
def _top2(model: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
    top = model(inputs).float().softmax(1).topk(2, dim=1)
    return top.indices, top.values


def planted_rows(model: nn.Module, methods: Mapping[str, SaliencyMethod], pixels: Tensor, labels: Tensor,
                 ids: Sequence[str], generator: torch.Generator, patch_size: int = 8) -> list[dict[str, Any]]:
    """One batch of garments -> rows: each image gets the patch at a random place; per method the
    maps of the patch class and of the garment's class (explained for those two classes whatever
    the model predicts; ``planted_ok`` says whether top-1/top-2 are them) and their scores.

    Args:
        model: the planted model. methods: {label: method} bound to it. pixels: (B, 1, H, W) in [0, 1].
        labels: (B,) garment classes. ids: (B,) image ids. generator: the patch places' RNG.
    Returns:
        One row per (image, method): image_id, method, label, patch_row, patch_col, top1, top2, prob1,
        prob2, planted_ok, patch_share, garment_share, garment_on_patch, contrast.
    """
    patched, masks = plant(pixels, generator, patch_size)
    garment = pixels[:, 0] > GARMENT_THRESHOLD
    inputs = normalise(patched)
    top, probs = _top2(model, inputs)
    targets = torch.stack([torch.full_like(labels, PATCH_CLASS), labels.long()], dim=1)  # (B, 2)
    where = masks.flatten(1).float().argmax(1)
    rows: list[dict[str, Any]] = []
    for name, method in methods.items():
        maps = method.explain(inputs, targets, relu=True, normalize=False).maps.detach().cpu()  # (B, 2, H, W)
        scores = planted_evidence(maps[:, 0], maps[:, 1], masks, garment)
        for i in range(len(ids)):
            rows.append({"image_id": ids[i], "method": name, "label": int(labels[i]),
                         "patch_row": int(where[i]) // masks.shape[-1], "patch_col": int(where[i]) % masks.shape[-1],
                         "top1": int(top[i, 0]), "top2": int(top[i, 1]), "prob1": float(probs[i, 0]),
                         "prob2": float(probs[i, 1]),
                         "planted_ok": bool(top[i, 0] == PATCH_CLASS and top[i, 1] == labels[i]),
                         "patch_share": float(scores.patch_share[i]), "garment_share": float(scores.garment_share[i]),
                         "garment_on_patch": float(scores.garment_on_patch[i]), "contrast": float(scores.contrast[i])})
    return rows


def mosaics(model: nn.Module, pixels: Tensor, labels: Tensor, ids: Sequence[str], count: int,
            confidence: float = 0.9) -> list[tuple[Tensor, list[int], list[str]]]:
    """Up to ``count`` 2x2 mosaics (1, 2H, 2W) of correctly and confidently (p >= ``confidence``)
    recognised images of four distinct classes, in the order the images come: [(pixels, the
    quadrants' classes (top-left, top-right, bottom-left, bottom-right), their ids)]."""
    with torch.no_grad():
        probs = model(normalise(pixels)).float().softmax(1)
    confident = (probs.argmax(1) == labels) & (probs.gather(1, labels[:, None].long())[:, 0] >= confidence)
    out: list[tuple[Tensor, list[int], list[str]]] = []
    group: list[int] = []
    for i in confident.nonzero().flatten().tolist():
        if int(labels[i]) in {int(labels[j]) for j in group}:
            continue
        group.append(i)
        if len(group) == 4:
            top = torch.cat([pixels[group[0]], pixels[group[1]]], dim=-1)
            bottom = torch.cat([pixels[group[2]], pixels[group[3]]], dim=-1)
            out.append((torch.cat([top, bottom], dim=-2), [int(labels[j]) for j in group], [ids[j] for j in group]))
            group = []
            if len(out) == count:
                break
    return out


def mosaic_rows(methods: Mapping[str, SaliencyMethod], grids: Sequence[tuple[Tensor, list[int], list[str]]]
                ) -> list[dict[str, Any]]:
    """Mosaics -> rows of the grid pointing game: per mosaic, method and quadrant, the share of the
    map of that quadrant's class inside the quadrant (chance: 0.25)."""
    if not grids:
        return []
    inputs = normalise(torch.stack([g[0] for g in grids]))  # (N, 1, 2H, 2W)
    targets = torch.tensor([g[1] for g in grids])  # (N, 4)
    rows: list[dict[str, Any]] = []
    for name, method in methods.items():
        maps = method.explain(inputs, targets, relu=True, normalize=False).maps.detach().cpu()  # (N, 4, 2H, 2W)
        for quadrant in range(4):
            shares = grid_pointing(maps[:, quadrant], torch.full((len(grids),), quadrant))
            for n, grid in enumerate(grids):
                rows.append({"mosaic": "|".join(grid[2]), "method": name, "quadrant": quadrant,
                             "class": grid[1][quadrant], "focus": float(shares[n])})
    return rows


def build_methods(model: nn.Module, names: Sequence[str]) -> dict[str, SaliencyMethod]:
    """The methods by spec (``methods.spec``) at the planted model's layer; contrastive methods get
    the diagnostic's contrast (classifier neighbours, the other compared classes left out)."""
    return {name: build_method(name, model, run_contrast=default_contrast(diagnostic=True), target_layer=LAYER)
            for name in names}


def summarise(rows: Sequence[Mapping[str, Any]], grid_rows: Sequence[Mapping[str, Any]], seed: int = 0
              ) -> dict[str, dict[str, Any]]:
    """Per method: the mean and bootstrap 95 % interval of ``contrast``, ``patch_share`` and
    ``garment_share`` over the images whose top-1/top-2 are the patch and garment classes, their
    count, and the grid pointing game's ``focus`` (mean and interval over mosaics and quadrants)."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        kept = [r for r in rows if r["method"] == name and r["planted_ok"]]
        entry: dict[str, Any] = {"n": len(kept), "n_all": sum(r["method"] == name for r in rows)}
        for key in ("contrast", "patch_share", "garment_share"):
            mean, low, high = bootstrap_mean(torch.tensor([r[key] for r in kept], dtype=torch.float64), seed=seed)
            entry[key] = {"mean": mean, "low": low, "high": high}
        focus = [r["focus"] for r in grid_rows if r["method"] == name]
        mean, low, high = bootstrap_mean(torch.tensor(focus, dtype=torch.float64), seed=seed)
        entry["focus"] = {"mean": mean, "low": low, "high": high, "n": len(focus)}
        out[name] = entry
    return out


def format_summary(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as lines: per method the planted contrast, both shares and the focus, each with
    its 95 % interval."""
    def cell(value: Mapping[str, float]) -> str:
        return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"

    lines = ["method        n  contrast (patch map on patch - garment map on patch)  patch share  garment share  "
             "focus (2x2 grid, chance 0.25)"]
    for name, entry in summary.items():
        lines.append(f"{name:<12} {entry['n']:>3}  {cell(entry['contrast']):<52} {cell(entry['patch_share'])}  "
                     f"{cell(entry['garment_share'])}  {cell(entry['focus'])}")
    return "\n".join(lines)


def run_planted(out_dir: str | Path, *, seed: int = 0, n: int = 200, n_mosaics: int = 50,
                methods: Sequence[str] = DEFAULT_METHODS, settings: PlantedSettings | None = None,
                root: str | Path | None = None, batch_size: int = 50,
                progress: Callable[[int, float], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train (resumably) the planted model and score ``methods`` on ``n`` patched test images and
    ``n_mosaics`` mosaics; writes ``rows.csv``, ``mosaic_rows.csv`` and ``summary.json`` in ``out_dir``.

    Args:
        out_dir: the folder (the checkpoint goes there too). seed: the training's and the
            evaluation's seed (images, patch places, bootstrap). n, n_mosaics: how many.
        methods: method specs. settings: the training (default ``PlantedSettings(seed=seed)``).
        root: the Fashion-MNIST folder. batch_size: images per explain call.
    Returns:
        The summary (see :func:`summarise`).
    """
    import pandas as pd

    out_dir = Path(out_dir)
    settings = settings or PlantedSettings(seed=seed)
    checkpoint = train_planted(out_dir, settings, root=root, progress=progress)
    model = load_planted(checkpoint)
    built = build_methods(model, methods)
    test = FashionMNIST("test", root)
    images, labels = test.tensors()
    generator = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(labels), generator=generator)
    chosen = order[:n]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(chosen), batch_size):
        index = chosen[start:start + batch_size]
        rows += planted_rows(model, built, images[index], labels[index], [f"test:{int(i)}" for i in index], generator,
                             settings.patch_size)
    pool = order[n:n + 40 * max(n_mosaics, 1)]  # other test images for the mosaics
    grids = mosaics(model, images[pool], labels[pool], [f"test:{int(i)}" for i in pool], n_mosaics)
    grid_rows: list[dict[str, Any]] = []
    for start in range(0, len(grids), batch_size):
        grid_rows += mosaic_rows(built, grids[start:start + batch_size])
    summary = summarise(rows, grid_rows, seed)
    atomic_write(out_dir / "rows.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write(out_dir / "mosaic_rows.csv", pd.DataFrame(grid_rows).to_csv(index=False))
    write_json(out_dir / "summary.json", {"checkpoint": checkpoint.name, "seed": seed, "n": n,
                                          "n_mosaics": len(grids), "methods": list(methods),
                                          "planted": asdict(settings), "summary": summary,
                                          "planted_ok_share": float(np.mean([r["planted_ok"] for r in rows]))
                                          if rows else float("nan")})
    return summary


SCORES = ("contrast", "patch_share", "garment_share", "focus")


def seed_folder(out_dir: str | Path, seed: int) -> Path:
    """Where :func:`run_planted_seeds` puts one seed's planted folder."""
    return Path(out_dir) / f"seed-{seed}"


def pool_seeds(per_seed: Mapping[int, Mapping[str, Mapping[str, Any]]], confidence: float = 0.95
               ) -> dict[str, dict[str, Any]]:
    """Across seeds, per method and score: the mean of the seeds' means with a t interval over the
    seeds (the seed, i.e. the trained model, is the unit: the images' bootstrap intervals of each seed
    leave the training's variance out), and each seed's mean.

    Args:
        per_seed: {seed: :func:`summarise`'s summary}.
        confidence: the interval's coverage.
    Returns:
        {method: {"n_seeds": int, score: {"mean", "low", "high", "seeds": {seed: mean}}}}; the interval is
        NaN with one seed (no spread to estimate).
    """
    from scipy import stats

    methods = list(dict.fromkeys(m for summary in per_seed.values() for m in summary))
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        entry: dict[str, Any] = {"n_seeds": sum(method in summary for summary in per_seed.values())}
        for score in SCORES:
            means = {seed: float(summary[method][score]["mean"]) for seed, summary in per_seed.items()
                     if method in summary}
            values = np.array([v for v in means.values() if math.isfinite(v)], dtype=np.float64)
            mean = float(values.mean()) if values.size else math.nan
            if values.size > 1:
                half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1)
                             / math.sqrt(values.size))
                low, high = mean - half, mean + half
            else:
                low = high = math.nan
            entry[score] = {"mean": mean, "low": low, "high": high, "seeds": means}
        out[method] = entry
    return out


def run_planted_seeds(out_dir: str | Path, seeds: Sequence[int], *, settings: PlantedSettings | None = None,
                      **options: Any) -> dict[str, Any]:
    """:func:`run_planted` once per seed, each in ``out_dir/seed-S`` (a planted folder of its own:
    resumable, summarised and reported alone), then the seeds pooled (:func:`pool_seeds`) into
    ``out_dir/summary.json``.

    Args:
        out_dir: the parent folder. seeds: the seeds (training and evaluation), repeats dropped.
        settings: the training's settings but the seed (default ``PlantedSettings()``).
        **options: :func:`run_planted`'s ``n``, ``n_mosaics``, ``methods``, ``root``, ``batch_size``, ``progress``.
    Returns:
        {"seeds": [...], "per_seed": {seed: summary}, "pooled": pooled}.
    Raises:
        ValueError: no seeds.
    """
    chosen = list(dict.fromkeys(int(seed) for seed in seeds))
    if not chosen:
        raise ValueError("seeds: give one or more seeds, e.g. 0,1,2")
    template = settings or PlantedSettings()
    per_seed = {seed: run_planted(seed_folder(out_dir, seed), seed=seed, settings=replace(template, seed=seed),
                                  **options) for seed in chosen}
    pooled = pool_seeds(per_seed)
    result = {"seeds": chosen, "per_seed": per_seed, "pooled": pooled}
    write_json(Path(out_dir) / "summary.json", {"seeds": chosen, "folders": [seed_folder("", s).name for s in chosen],
                                                "methods": list(options.get("methods", DEFAULT_METHODS)),
                                                "per_seed": {str(k): v for k, v in per_seed.items()},
                                                "pooled": pooled})
    return result


def format_seeds_summary(result: Mapping[str, Any]) -> str:
    """:func:`run_planted_seeds`' result as lines: per method each seed's means, then their mean with the
    t 95 % interval over the seeds."""
    def cell(value: Mapping[str, Any]) -> str:
        return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"

    seeds = list(result["seeds"])
    lines = [f"planted evidence over {len(seeds)} seed(s) {', '.join(map(str, seeds))}: per method the mean of the "
             "seeds' means with a t 95 % interval over the seeds (the trained model as the unit), then each seed's "
             "mean (its own bootstrap intervals: summarize its folder seed-S)",
             "method       seeds  contrast                 patch share              garment share            focus"]
    for method, entry in result["pooled"].items():
        lines.append(f"{method:<12} {entry['n_seeds']:>5}  " + "  ".join(f"{cell(entry[s]):<23}" for s in SCORES))
        for seed in seeds:
            means = [entry[s]["seeds"].get(seed, entry[s]["seeds"].get(str(seed), math.nan)) for s in SCORES]
            lines.append(f"  seed {seed:<11}" + "  ".join(f"{float(m):<23.3f}" for m in means))
    return "\n".join(lines)


__all__ = ["PATCH_CLASS", "PLANTED_CLASS_NAMES", "PlantedSettings", "patch_pattern", "plant", "train_planted",
           "load_planted", "planted_rows", "mosaics", "mosaic_rows", "build_methods", "summarise", "format_summary",
           "run_planted", "pool_seeds", "run_planted_seeds", "format_seeds_summary", "seed_folder"]
