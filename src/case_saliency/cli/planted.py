"""`case-saliency planted`: a planted ground truth for class sensitivity (a Fashion-MNIST model with an
11th class "garment with a patch"), trained resumably and scored per method."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command("planted")
def planted(
    out: Path = typer.Option(..., "--out", "-o", help="folder for the planted model, its rows and summary.json "
                             "(rerun with the same folder to resume or reuse the training)"),
    seed: int = typer.Option(0, help="seed of the training and of the evaluation (images, patch places, bootstrap)"),
    seeds: str | None = typer.Option(None, help="several seeds, comma-separated (e.g. 0,1,2): one planted folder "
                                     "per seed in --out/seed-S, and their pooled summary (the mean of the seeds' "
                                     "means with a t 95 % interval over the seeds) in --out/summary.json"),
    n: int = typer.Option(200, "--n", min=1, help="patched test images scored"),
    mosaics: int = typer.Option(50, min=0, help="2x2 mosaics for the grid pointing game"),
    methods: str = typer.Option(",".join(("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "case")),
                                help="method specs, comma-separated (see `case-saliency methods`)"),
    steps: int = typer.Option(1200, min=1, help="training steps (batch 64; about 0.1 s each on one loaded core)"),
    train_limit: int | None = typer.Option(None, min=1, help="train on a seeded subset of this many training images"),
    root: Path | None = typer.Option(None, help="folder of the Fashion-MNIST IDX files"),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads (default: torch's choice)"),
) -> None:
    """Train (or resume, or reuse) the planted-patch model and score each method: the share of the patch class's
    map on the patch, of the garment class's map on the garment, their contrast, and the grid pointing game, each
    with a bootstrap 95 % interval. Writes rows.csv, mosaic_rows.csv and summary.json in --out."""
    import torch

    from ..runs.runner import check_methods
    from ..workflows.planted import (PlantedSettings, format_seeds_summary, format_summary, run_planted,
                                     run_planted_seeds, seed_folder)

    if threads:
        torch.set_num_threads(threads)
    try:
        names = check_methods(methods)
    except ValueError as error:
        typer.echo(f"error: --methods: {error}", err=True)
        raise typer.Exit(2) from None
    chosen: list[int] | None = None
    if seeds is not None:
        try:
            chosen = [int(part) for part in seeds.split(",") if part.strip()]
        except ValueError:
            typer.echo(f"error: --seeds {seeds!r}: give comma-separated integers, e.g. --seeds 0,1,2", err=True)
            raise typer.Exit(2) from None
        if not chosen:
            typer.echo("error: --seeds is empty; give comma-separated integers, e.g. --seeds 0,1,2", err=True)
            raise typer.Exit(2)
    settings = PlantedSettings(seed=seed, steps=steps, train_limit=train_limit)

    def progress(step: int, loss: float) -> None:
        if step % 100 == 0 or step == steps:
            typer.echo(f"planted: step {step}/{steps}, loss {loss:.3f}", err=True)

    try:
        if chosen is not None:
            pooled = run_planted_seeds(out, chosen, n=n, n_mosaics=mosaics, methods=names, settings=settings,
                                       root=root, progress=progress)
        else:
            summary = run_planted(out, seed=seed, n=n, n_mosaics=mosaics, methods=names, settings=settings,
                                  root=root, progress=progress)
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if chosen is not None:
        typer.echo(format_seeds_summary(pooled))
        typer.echo(f"wrote {out / 'summary.json'} and a planted folder per seed: "
                   f"{', '.join(str(seed_folder(out, s)) for s in pooled['seeds'])}")
        return
    typer.echo(format_summary(summary))
    typer.echo(f"wrote {out / 'summary.json'}, {out / 'rows.csv'}, {out / 'mosaic_rows.csv'}")
