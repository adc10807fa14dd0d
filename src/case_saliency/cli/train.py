"""`case-saliency train`: train a Fashion-MNIST classifier of one family with a seed."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app

FAMILY_NAMES = ("resnet", "densenet", "vgg")


@app.command("train")
def train(
    arch: str = typer.Option("resnet", "--arch", "-a", help="architecture family: resnet, densenet or vgg"),
    seed: int = typer.Option(0, help="seed of initialisation, shuffling and augmentation"),
    epochs: int = typer.Option(3, min=1, help="training epochs"),
    out: Path = typer.Option(Path("runs/train"), help="folder for the checkpoint (.pt) and its metadata (.json)"),
    root: Path | None = typer.Option(None, help="folder of the Fashion-MNIST IDX files "
                                        "(default: Debian's /usr/share/datasets/fashion-mnist)"),
    batch_size: int = typer.Option(128, min=1, help="batch size"),
    max_lr: float = typer.Option(5e-3, help="peak learning rate of the one-cycle schedule"),
    train_limit: int | None = typer.Option(None, min=1, help="train on a seeded random subset of this size"),
    test_limit: int | None = typer.Option(None, min=1, help="evaluate on a seeded random subset of this size"),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads (default: torch's choice)"),
) -> None:
    """Train a Fashion-MNIST classifier (ResNet-, DenseNet- or VGG-like); writes a checkpoint usable as
    --model in the other commands, and a metadata JSON (architecture, seed, accuracy, data hash)."""
    import torch

    from ..workflows.training import train_fashion

    if arch not in FAMILY_NAMES:
        typer.echo(f"error: --arch {arch!r} is not a family; choose one of {', '.join(FAMILY_NAMES)}", err=True)
        raise typer.Exit(2) from None
    if threads:
        torch.set_num_threads(threads)
    try:
        result = train_fashion(arch, seed=seed, epochs=epochs, out_dir=out, root=root, batch_size=batch_size,
                               max_lr=max_lr, train_limit=train_limit, test_limit=test_limit)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    meta = result.metadata
    typer.echo(f"{arch} seed {seed}: test accuracy {meta['test_accuracy']:.2f}% after {epochs} epoch(s) "
               f"({meta['train_seconds']:.0f} s, {meta['num_parameters']} parameters)")
    typer.echo(f"checkpoint: {result.checkpoint}")
    typer.echo(f"metadata:   {result.metadata_path}")
