"""`case-saliency confusion`: a model's confusion matrix on a labelled split, for CASE's contrast."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command("confusion")
def confusion(
    model: str = typer.Option(..., "--model", "-m", help="model name or checkpoint path (see `load_model`)"),
    weights: str | None = typer.Option(None, help="weights file for an architecture name"),
    data: str = typer.Option("fashion-mnist:test", "--data", "-d", help="labelled dataset spec, e.g. "
                             "fashion-mnist:test, imagefolder:PATH, cifar10:PATH"),
    root: Path | None = typer.Option(None, help="dataset root override (e.g. the Fashion-MNIST folder)"),
    out: Path | None = typer.Option(None, help="output JSON (default: next to the checkpoint, else runs/confusion/)"),
    limit: int | None = typer.Option(None, min=1, help="use the first N images only"),
    batch_size: int = typer.Option(256, min=1, help="batch size"),
    top: int = typer.Option(5, min=0, help="print the N most confused pairs"),
) -> None:
    """Compute and store a model's confusion matrix (rows = true class) with the identity of model and data;
    CASE's confusion-neighbour contrast refuses a matrix of another model or data."""
    import numpy as np

    from ..workflows.confusion import compute_confusion, default_path, save_confusion
    from ..data import open_dataset
    from ..models import load_model

    from ..models.zoo import WeightsUnavailable

    try:
        loaded = load_model(model, weights)
        dataset = open_dataset(data, root)
    except (FileNotFoundError, ValueError, WeightsUnavailable) as error:  # WeightsUnavailable: offline, no --weights
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        matrix = compute_confusion(loaded, dataset, batch_size=batch_size, limit=limit)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    identity = dict(dataset.identity())
    identity["used"] = int(matrix.sum())
    path = out or default_path(loaded, dataset.name)
    names = loaded.require_class_names()
    save_confusion(path, matrix, loaded.identity, identity, names)
    typer.echo(f"{loaded.name} on {dataset.name}: accuracy {np.trace(matrix) / matrix.sum() * 100:.2f}% "
               f"on {matrix.sum()} images")
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    np.fill_diagonal(rates, 0)
    order = np.argsort(rates, axis=None)[::-1][:top]
    for flat in order:
        true, pred = divmod(int(flat), rates.shape[1])
        if rates[true, pred] > 0:
            typer.echo(f"  {names[true]:>20} -> {names[pred]:<20} {rates[true, pred] * 100:5.1f}%")
    typer.echo(f"wrote {path}")
