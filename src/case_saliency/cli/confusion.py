"""`case-saliency confusion`: a model's confusion matrix on a labelled split, for CASE's contrast."""

from __future__ import annotations

from pathlib import Path

import typer

from . import model_options as mo
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
    size: int | None = mo.SIZE,
    crop: bool | None = mo.CROP,
    mean: str | None = mo.MEAN,
    std: str | None = mo.STD,
    class_names: Path | None = mo.CLASS_NAMES,
) -> None:
    """Compute and store a model's confusion matrix (rows = true class) with the identity of model and data;
    CASE's confusion-neighbour contrast refuses a matrix of another model or data."""
    import numpy as np

    from ..workflows.confusion import compute_confusion, confused_pairs, default_path, save_confusion
    from ..data import open_dataset

    from ..models.zoo import WeightsUnavailable

    try:
        loaded = mo.load_cli_model(model, weights, **mo.model_options(size, crop, mean, std, class_names))
        dataset = open_dataset(data, root)
    except (FileNotFoundError, ValueError, OSError, WeightsUnavailable) as error:  # WeightsUnavailable: offline
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
    data_names = getattr(dataset, "class_names", None)
    if names == [f"class {i}" for i in range(len(names))] and data_names and len(data_names) == len(names):
        names = list(data_names)  # the model has no names of its own: the labelled data's name its classes
        typer.echo(f"class names: the data's ({', '.join(names[:3])}, ...); --class-names FILE to set others", err=True)
    save_confusion(path, matrix, loaded.identity, identity, names)
    typer.echo(f"{loaded.name} on {dataset.name}: accuracy {np.trace(matrix) / matrix.sum() * 100:.2f}% "
               f"on {matrix.sum()} images")
    if top:
        typer.echo("most confused (true -> predicted, share of the true class's images):")
    for pair in confused_pairs(matrix, names, top=top) if top else []:
        typer.echo(f"  {pair.true_name:>20} -> {pair.predicted_name:<20} {pair.rate * 100:5.1f}% ({pair.count})")
    typer.echo(f"wrote {path}")
