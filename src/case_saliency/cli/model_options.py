"""The model options every command that loads a model shares: ``--model``/``--weights``, the
preprocessing (``--size``, ``--crop``/``--no-crop``, ``--mean``, ``--std``) and ``--class-names``;
and loading with them, saying once which preprocessing was assumed where none was stored or given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

MODEL_HELP = ("efficientnet_lite0, a torchvision/timm name (with --weights FILE), a checkpoint of `case-saliency "
              "train`, or a function that builds the model: package.module:build or path/to/file.py:build")
SIZE = typer.Option(None, "--size", min=8, metavar="N", help="the model's input side in pixels (default: stored in "
                    "the checkpoint, else the architecture's; printed when assumed)")
CROP = typer.Option(None, "--crop/--no-crop", help="--crop: resize the short side to N/0.875 and centre-crop N (the "
                    "ImageNet way); --no-crop: resize to N")
MEAN = typer.Option(None, "--mean", metavar="R,G,B", help="normalisation mean per channel (e.g. 0.5,0.5,0.5)")
STD = typer.Option(None, "--std", metavar="R,G,B", help="normalisation standard deviation per channel")
CLASS_NAMES = typer.Option(None, "--class-names", metavar="FILE", help="class names: one per line, a JSON list, or "
                           "a JSON index -> name map")


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not comma-separated numbers, e.g. 0.485,0.456,0.406",
                                 param_hint=option) from None
    if not values:
        raise typer.BadParameter("give one number per channel, e.g. 0.5,0.5,0.5", param_hint=option)
    return values


def model_options(size: int | None = None, crop: bool | None = None, mean: str | None = None,
                  std: str | None = None, class_names: Path | None = None) -> dict[str, Any]:
    """The command-line options as ``load_cli_model`` keywords (None: not given)."""
    return {"size": size, "crop": crop, "mean": _floats(mean, "--mean"), "std": _floats(std, "--std"),
            "class_names": class_names}


def load_cli_model(model: str, weights: str | None, size: int | None = None, crop: bool | None = None,
                   mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                   class_names: Path | None = None, quiet: bool = False) -> Any:
    """``load_model`` with the command-line options: any of size/crop/mean/std replaces that part of
    the model's preprocessing (stored, or the architecture's default); where the preprocessing is
    still assumed, one line on stderr says what and how to change it. Errors propagate."""
    from ..models import load_model

    loaded = load_model(model, weights, class_names=class_names)
    if any(value is not None for value in (size, crop, mean, std)):
        channels = loaded.transform.channels if hasattr(loaded.transform, "channels") else 3
        for values, option in ((mean, "--mean"), (std, "--std")):
            if values is not None and len(values) != channels:
                raise ValueError(f"{option} has {len(values)} values; the model takes {channels} channel(s)")
        base = loaded.transform
        if not hasattr(base, "with_options"):
            raise ValueError(f"{loaded.name}'s preprocessing is not a Preprocess; --size/--crop/--mean/--std "
                             "cannot change it")
        preprocess = base.with_options(size, crop, mean, std)
        rest = [option for option, value in (("--size", size), ("--crop", crop), ("--mean", mean), ("--std", std))
                if value is None]
        assumed = loaded.assumed_preprocess is not None and (mean is None or std is None)
        loaded = loaded.with_preprocess(preprocess)
        if not quiet:
            origin = "as given"
            if rest:
                origin += f"; {', '.join(rest)}: the model's{' assumed default' if assumed else ''}"
            typer.echo(f"preprocessing: {preprocess.describe()} ({origin})", err=True)
    elif loaded.assumed_preprocess and not quiet:
        typer.echo(f"note: {loaded.assumed_preprocess}", err=True)
    return loaded


def pair_subset(loaded: Any, dataset: Any, pairs: list[str], progress: bool = True) -> Any:
    """``diagnose --pairs``: the images whose top-1/top-2 are one of the pairs; exits 2 naming a bad
    pair or an empty selection."""
    from ..workflows.confusion import select_pairs

    try:
        subset = select_pairs(loaded, dataset, pairs, progress=progress)
    except ValueError as error:
        typer.echo(f"error: --pairs: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"--pairs {', '.join(subset.pairs)}: {len(subset)} of the {len(dataset)} images", err=True)
    return subset
