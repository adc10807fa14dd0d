"""`case-saliency diagnose`: the class-sensitivity diagnostic over a dataset, as a resumable run."""

from __future__ import annotations

from pathlib import Path

import typer

from . import model_options as mo
from . import run_options as opt
from .app import app


@app.command("diagnose")
def diagnose(
    model: str = opt.MODEL,
    data: str = opt.DATA,
    out: Path = opt.OUT,
    methods: str = opt.METHODS,
    n: int = opt.N,
    seed: int = opt.SEED,
    k: list[str] = typer.Option(["5"], "--k", metavar="PERCENT",
                                help="top-k% for the agreement; repeat or comma-separate for several"),
    threshold: float = typer.Option(50.0, help="agreement threshold of the Wilcoxon test, percent "
                                    "(paper: 50; its code: 70)"),
    alpha: float = typer.Option(0.05, help="significance level"),
    layer: str | None = opt.LAYER,
    contrast_k: int = opt.CONTRAST_K,
    confusion: Path | None = opt.CONFUSION,
    contrast: str | None = opt.CONTRAST,
    correct_only: bool | None = opt.CORRECT_ONLY,
    batch_size: int = opt.BATCH_SIZE,
    gallery: int = typer.Option(8, help="save the maps of the first N images for the report"),
    signed: bool = typer.Option(False, help="rank raw signed maps (no ReLU) in the agreement"),
    similarity: bool = typer.Option(True, help="also compute Spearman and SSIM, the secondary measures "
                                    "(--no-similarity: agreement only, about a quarter faster on a CPU)"),
    ties: str = typer.Option("index", help="agreement tie order: index (first of equal pixels first), reverse, "
                             "authors (np.argsort(flat)[::-1], as the paper's code), inclusive"),
    sparse: str = typer.Option("positive", help="agreement of maps with fewer positive pixels than the top set: "
                               "positive (top sets hold positive pixels only; padding never agrees) or pad "
                               "(the paper's: zero pixels pad the set and count)"),
    holm: bool = opt.HOLM,
    weights: str | None = opt.WEIGHTS,
    root: str | None = opt.ROOT,
    device: str = opt.DEVICE,
    quiet: bool = opt.QUIET,
    max_memory: str | None = opt.MAX_MEMORY,
    workers: int | None = opt.WORKERS,
    pairs: list[str] = typer.Option(None, "--pairs", metavar="A:B", help="only images whose top-1/top-2 classes are "
                                    "this pair, in either order (by name or index; repeatable), e.g. Shirt:Coat"),
    size: int | None = mo.SIZE,
    crop: bool | None = mo.CROP,
    mean: str | None = mo.MEAN,
    std: str | None = mo.STD,
    class_names: Path | None = mo.CLASS_NAMES,
) -> None:
    """Class sensitivity: agreement of each method's top-1 and top-2 maps, with a Wilcoxon test per method."""
    from ..runs.diagnose import run_diagnose
    from ..runs.settings import DiagnoseSettings

    percents = opt.parse_percents(k)
    if n < 0 or batch_size < 1 or gallery < 0:
        raise opt.fail("--num-images and --gallery must be >= 0 and --batch-size >= 1")
    budget = opt.parse_memory(max_memory)
    settings = opt.settings_or_exit(lambda: DiagnoseSettings(
        methods=tuple(opt.parse_list(methods, "methods")), n=n, seed=seed, k_percent=tuple(percents),
        threshold=threshold, alpha=alpha, layer=layer, correct_only=correct_only, batch_size=batch_size,
        gallery=gallery, signed=signed, ties=ties, sparse=sparse, similarity=similarity, weights=weights,
        dataset=data, command=opt.this_command()))
    loaded, dataset, names, spec, matrix = opt.resolve_inputs(model, weights, data, root, methods, contrast_k,
                                                              confusion, device, contrast,
                                                              mo.model_options(size, crop, mean, std, class_names),
                                                              diagnostic=True)
    if pairs:
        dataset = mo.pair_subset(loaded, dataset, pairs, progress=not quiet)
    opt.warn_if_out_inside_data(out, dataset)
    opt.check_layer(loaded, layer)
    chosen = settings.with_(methods=tuple(names), contrast=spec)
    opt.run_and_summarize(lambda: run_diagnose(loaded, dataset, out, chosen, confusion=matrix, progress=not quiet,
                                     workers=workers), out, {"correction": "holm" if holm else None}, budget)
