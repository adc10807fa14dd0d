"""`case-saliency fidelity`: confidence drop and deletion/insertion of each method's maps, as a resumable run."""

from __future__ import annotations

from pathlib import Path

import typer

from . import model_options as mo
from . import run_options as opt
from .app import app


@app.command("fidelity")
def fidelity(
    model: str = opt.MODEL,
    data: str = opt.DATA,
    out: Path = opt.OUT,
    methods: str = opt.METHODS,
    n: int = opt.N,
    seed: int = opt.SEED,
    k: float = typer.Option(50.0, "--k", help="percent of the most salient pixels removed for the confidence drop"),
    fill: str = typer.Option("zero", help="what removed pixels become: zero (the paper: 0 in the normalised "
                             "input), mean, blur"),
    steps: int = typer.Option(20, help="deletion/insertion steps (0: skip the curves)"),
    correct_only: bool | None = opt.CORRECT_ONLY,
    alpha: float = typer.Option(0.05, help="significance level of the paired tests"),
    layer: str | None = opt.LAYER,
    contrast_k: int = opt.CONTRAST_K,
    confusion: Path | None = opt.CONFUSION,
    contrast: str | None = opt.CONTRAST,
    batch_size: int = opt.BATCH_SIZE,
    eval_batch_size: int = typer.Option(64, help="perturbed images per forward pass"),
    holm: bool = opt.HOLM,
    weights: str | None = opt.WEIGHTS,
    root: str | None = opt.ROOT,
    device: str = opt.DEVICE,
    quiet: bool = opt.QUIET,
    max_memory: str | None = opt.MAX_MEMORY,
    workers: int | None = opt.WORKERS,
    size: int | None = mo.SIZE,
    crop: bool | None = mo.CROP,
    mean: str | None = mo.MEAN,
    std: str | None = mo.STD,
    class_names: Path | None = mo.CLASS_NAMES,
) -> None:
    """Fidelity: confidence drop after removing the top-k% pixels, deletion/insertion AUC, CASE vs each method."""
    from ..runs.fidelity import run_fidelity
    from ..runs.settings import FidelitySettings

    if n < 0 or steps < 0 or batch_size < 1 or eval_batch_size < 1:
        raise opt.fail("--num-images and --steps must be >= 0, --batch-size and --eval-batch-size >= 1")
    budget = opt.parse_memory(max_memory)
    settings = opt.settings_or_exit(lambda: FidelitySettings(
        methods=tuple(opt.parse_list(methods, "methods")), n=n, seed=seed, k_percent=k, fill=fill, steps=steps,
        correct_only=correct_only, alpha=alpha, layer=layer, batch_size=batch_size, eval_batch_size=eval_batch_size,
        weights=weights, dataset=data, command=opt.this_command()))
    loaded, dataset, names, spec, matrix = opt.resolve_inputs(model, weights, data, root, methods, contrast_k,
                                                              confusion, device, contrast,
                                                              mo.model_options(size, crop, mean, std, class_names))
    opt.warn_if_out_inside_data(out, dataset)
    opt.check_layer(loaded, layer)
    chosen = settings.with_(methods=tuple(names), contrast=spec)
    opt.run_and_summarize(lambda: run_fidelity(loaded, dataset, out, chosen, confusion=matrix, progress=not quiet,
                                     workers=workers), out, {"correction": "holm" if holm else None}, budget)
