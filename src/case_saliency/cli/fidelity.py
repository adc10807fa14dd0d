"""`case-saliency fidelity`: deletion/insertion, the class-contrastive drop and the confidence drop of each method's
maps, as a resumable run."""

from __future__ import annotations

from pathlib import Path

import typer

from ..runs.settings import EVAL_BATCH_SIZE
from . import model_options as mo
from . import run_options as opt
from .app import app


def _sweep(text: str | None) -> tuple[float, ...] | None:
    """--contrastive-k as percents (None: unset; "none": no sweep); a bad value exits naming it."""
    if text is None:
        return None
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise opt.fail(f"--contrastive-k {text!r}: give comma-separated percentages such as 5,10,20,50, "
                       "or none") from None
    return values  # the range is checked by FidelitySettings


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
    deletion_fill: str | None = typer.Option(None, help="what the deletion curve's removed pixels become: blur "
                                             "(default for a new run; insertion is always on the blur), zero, "
                                             "mean; a resumed run keeps its own"),
    contrastive_k: str | None = typer.Option(None, "--contrastive-k", metavar="PERCENTS",
                                             help="the class-contrastive drop's sweep, comma-separated percents "
                                             "of the top-1 map removed with a blur (default 5,10,20,50 for a new "
                                             "run, a resumed run keeps its own); 'none' skips it"),
    correct_only: bool | None = opt.CORRECT_ONLY,
    alpha: float = typer.Option(0.05, help="significance level of the paired tests"),
    layer: str | None = opt.LAYER,
    contrast_k: int = opt.CONTRAST_K,
    confusion: Path | None = opt.CONFUSION,
    contrast: str | None = opt.CONTRAST,
    batch_size: int = opt.BATCH_SIZE,
    eval_batch_size: int = typer.Option(EVAL_BATCH_SIZE, help="perturbed images per forward pass (the default "
                                        "chosen by benchmarks/eval_batch.py)"),
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
    """Fidelity: deletion/insertion AUC (the primary measures; deletion blurs by default), the class-contrastive
    drop (logit top-1 minus top-2 after removing the top-k% of the top-1 map with a blur, over --contrastive-k),
    and the confidence drop after removing the top-k% pixels with --fill; verdicts against Grad-CAM."""
    from ..runs.fidelity import run_fidelity
    from ..runs.settings import FidelitySettings

    if n < 0 or steps < 0 or batch_size < 1 or eval_batch_size < 1:
        raise opt.fail("--num-images and --steps must be >= 0, --batch-size and --eval-batch-size >= 1")
    sweep = _sweep(contrastive_k)
    budget = opt.parse_memory(max_memory)
    settings = opt.settings_or_exit(lambda: FidelitySettings(
        methods=tuple(opt.parse_list(methods, "methods")), n=n, seed=seed, k_percent=k, fill=fill, steps=steps,
        correct_only=correct_only, alpha=alpha, layer=layer, batch_size=batch_size, eval_batch_size=eval_batch_size,
        weights=weights, dataset=data, command=opt.this_command(), deletion_fill=deletion_fill,
        contrastive_k=sweep))
    loaded, dataset, names, spec, matrix = opt.resolve_inputs(model, weights, data, root, methods, contrast_k,
                                                              confusion, device, contrast,
                                                              mo.model_options(size, crop, mean, std, class_names))
    opt.warn_if_out_inside_data(out, dataset)
    opt.check_layer(loaded, layer)
    chosen = settings.with_(methods=tuple(names), contrast=spec)
    opt.run_and_summarize(lambda: run_fidelity(loaded, dataset, out, chosen, confusion=matrix, progress=not quiet,
                                     workers=workers), out, {"correction": "holm" if holm else None}, budget)
