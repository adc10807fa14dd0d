"""`case-saliency sanity`: the sanity checks of Adebayo et al. (2018) for a model's saliency methods:
cascading randomisation of the weights (top down, on a seeded copy) and a shuffled-label model."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command("sanity")
def sanity(
    model: str = typer.Option(..., "--model", "-m", help="model name or checkpoint path (see `load_model`)"),
    weights: str | None = typer.Option(None, help="weights file for an architecture name"),
    data: str = typer.Option("fashion-mnist:test", "--data", "-d", help="dataset spec (e.g. fashion-mnist:test, "
                             "samples, imagefolder:PATH)"),
    root: Path | None = typer.Option(None, help="dataset root override"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for rows.csv and summary.json"),
    methods: str = typer.Option("gradcam,gradcam++,layercam,case", help="method specs, comma-separated"),
    n: int = typer.Option(16, "--n", min=1, help="images (a seeded sample of the data)"),
    seed: int = typer.Option(0, help="seed of the sample and of the randomisation"),
    layer: str | None = typer.Option(None, help="target layer (default: the model's)"),
    k: float = typer.Option(5.0, min=0.01, max=100.0, help="top share (percent) for the overlap and the agreement"),
    max_steps: int | None = typer.Option(12, min=1, help="cascade steps evaluated, evenly spaced, the fully "
                                         "randomised model always included (all: a large number)"),
    shuffled: str | None = typer.Option(None, help="a checkpoint of the same architecture trained with "
                                        "`case-saliency train --shuffle-labels`, compared too"),
    threshold: float = typer.Option(50.0, help="agreement threshold of the class-sensitivity test (percent)"),
    alpha: float = typer.Option(0.05, help="significance level of the class-sensitivity test"),
) -> None:
    """Per method and randomisation step: the similarity of the maps to the trained model's (Spearman, SSIM, top-k
    overlap) and whether the randomised model still passes the class-sensitivity test (if it does, the pass means
    nothing). The caller's model is never modified."""
    import pandas as pd
    import torch

    from ..data import open_dataset
    from ..models import load_model
    from ..models.zoo import WeightsUnavailable
    from ..runs.runner import check_methods
    from ..runs.store import atomic_write, write_json
    from ..workflows.sanity import format_summary, sanity_rows, summarise

    try:
        names = check_methods(methods)
        loaded = load_model(model, weights)
        dataset = open_dataset(data, root)
        other = load_model(shuffled).model.eval() if shuffled else None
    except (FileNotFoundError, ValueError, KeyError, OSError, WeightsUnavailable) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    items = [dataset[i] for i in order]
    images = loaded.preprocess([image for image, _, _ in items])
    ids = [image_id for _, _, image_id in items]
    net = loaded.model.eval()
    try:
        rows = sanity_rows(net, names, images, ids, layer=layer or loaded.target_layer, seed=seed, k=k,
                           max_steps=max_steps, shuffled=other)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    summary = summarise(rows, threshold, alpha)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "rows.csv", pd.DataFrame(rows).to_csv(index=False))
    write_json(out / "summary.json", {"model": loaded.identity, "data": data, "n": len(ids), "seed": seed, "k": k,
                                      "shuffled": shuffled, "threshold": threshold, "alpha": alpha,
                                      "summary": summary})
    typer.echo(format_summary(summary))
    typer.echo(f"wrote {out / 'rows.csv'} and {out / 'summary.json'}")
