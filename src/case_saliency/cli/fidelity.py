"""`case-saliency fidelity`: confidence drop and deletion/insertion of each method's maps, as a resumable run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .diagnose import DEFAULT_METHODS, execute, fail, resolve_inputs, this_command


@app.command("fidelity")
def fidelity(
    model: str = typer.Option(..., "--model", "-m", help="efficientnet_lite0, a torchvision/timm name, or a checkpoint"),
    data: str = typer.Option(..., "--data", "-d", help="dataset spec: samples, fashion-mnist:test, folder:PATH, ..."),
    out: Path = typer.Option(..., "--out", "-o", help="run directory (created, or resumed if it exists)"),
    methods: str = typer.Option(DEFAULT_METHODS, help="comma-separated method names (see `case-saliency methods`)"),
    n: int = typer.Option(100, help="images to sample (0: all)"),
    seed: int = typer.Option(0, help="seed of the image sample"),
    k: float = typer.Option(50.0, "--k", help="percent of the most salient pixels removed for the confidence drop"),
    fill: str = typer.Option("zero", help="what removed pixels become: zero (the paper: 0 in the normalised input), mean, blur"),
    steps: int = typer.Option(20, help="deletion/insertion steps (0: skip the curves)"),
    correct_only: bool = typer.Option(True, "--correct-only/--all", help="only correctly classified images (the paper)"),
    alpha: float = typer.Option(0.05, help="significance level of the paired tests"),
    layer: Optional[str] = typer.Option(None, help="target layer (default: the model's)"),
    contrast_k: int = typer.Option(1, help="CASE contrast classes per target"),
    confusion: Optional[Path] = typer.Option(None, help="confusion matrix file: CASE contrasts = confusion neighbours"),
    batch_size: int = typer.Option(16, help="images per batch"),
    eval_batch_size: int = typer.Option(64, help="perturbed images per forward pass"),
    holm: bool = typer.Option(False, help="Holm-correct the p-values in the printed summary"),
    weights: Optional[str] = typer.Option(None, help="weights for --model (a name or a file)"),
    root: Optional[str] = typer.Option(None, help="dataset root folder, when the spec has none"),
    device: str = typer.Option("auto", help="cpu, cuda, or auto"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Fidelity: confidence drop after removing the top-k% pixels, deletion/insertion AUC, CASE vs each method."""
    from ..metrics import FILLS
    from ..runs import run_fidelity

    if fill not in FILLS:
        raise fail(f"--fill {fill!r} is not one of {', '.join(FILLS)}")
    if not 0 < k <= 100:
        raise fail(f"--k {k:g} is outside (0, 100]; give a percentage such as 50")
    if n < 0 or steps < 0 or batch_size < 1 or eval_batch_size < 1:
        raise fail("--n and --steps must be >= 0, --batch-size and --eval-batch-size >= 1")
    loaded, dataset, names, contrast = resolve_inputs(model, weights, data, root, methods, contrast_k, confusion, device)
    execute(lambda: run_fidelity(loaded, dataset, out, methods=names, n=n, seed=seed, k_percent=k, fill=fill,
                                 steps=steps, correct_only=correct_only, alpha=alpha, layer=layer, contrast=contrast,
                                 batch_size=batch_size, eval_batch_size=eval_batch_size, dataset_name=data,
                                 progress=not quiet, command=this_command(), weights=weights),
            out, {"correction": "holm" if holm else None})
