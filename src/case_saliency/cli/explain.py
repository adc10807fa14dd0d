"""`case-saliency explain`: "why A and not B?" for image files, one figure per image."""

from __future__ import annotations

from pathlib import Path

import typer

from . import model_options as mo
from . import run_options as opt
from .app import app


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command("explain")
def explain(
    images: list[str] = typer.Argument(None, metavar="IMAGE...", help="image files, folders, glob patterns, or the "
                                       "shipped photos: samples, samples:skimage/chelsea,skimage/coffee"),
    model: str = typer.Option(..., "--model", "-m", metavar="NAME|FILE|MODULE:FUNCTION", help=mo.MODEL_HELP),
    weights: str | None = typer.Option(None, metavar="FILE", help="weights (a state dict) for --model"),
    classes: str | None = typer.Option(None, "--classes", "-c", metavar="A,B", help="the classes to explain, by name "
                                       "(case-insensitive; a unique prefix or part is enough) or index (default: "
                                       "each image's top --top classes)"),
    top: int = typer.Option(2, "--top", min=1, help="explain each image's top N classes (without --classes)"),
    methods: str = typer.Option("gradcam,case", metavar="SPECS", help="comma-separated method specs (see "
                                "`case-saliency methods`)"),
    versus: bool = typer.Option(False, "--versus", help="CASE explains 'A rather than B': each class's map has the "
                                "other class(es) asked for as its contrast (circular by design)"),
    contrast: str | None = typer.Option(None, "--contrast", metavar="SPEC", help="CASE's contrast without --versus "
                                        "(default: classifier neighbours)"),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME", help="target layer (default: the model's)"),
    k: float = typer.Option(5.0, "--k", metavar="PERCENT", help="top-k%% outlined and compared by the agreement"),
    out: Path = typer.Option(Path("explain-output"), "--out", "-o", metavar="DIR", help="folder for the figures"),
    html: bool = typer.Option(False, "--html", help="also write one self-contained HTML page (explain.html)"),
    dpi: int = typer.Option(150, "--dpi", min=30, help="resolution of the PNG figures"),
    confused: Path | None = typer.Option(None, "--confused", metavar="RUN|MATRIX", help="explain the images a "
                                         "diagnose run (its folder) or a confusion matrix (JSON, with IMAGE... as "
                                         "the labelled images' folder) finds most confused"),
    n: int = typer.Option(6, "--n", min=1, help="with --confused: how many images"),
    size: int | None = mo.SIZE,
    crop: bool | None = mo.CROP,
    mean: str | None = mo.MEAN,
    std: str | None = mo.STD,
    class_names: Path | None = mo.CLASS_NAMES,
    max_memory: str | None = opt.MAX_MEMORY,
) -> None:
    """Write one figure per image: the maps of the classes asked for, by each method, with their
    probabilities, each map's top-k% outlined and each method's agreement of the two maps."""
    import time

    started = time.perf_counter()
    from ..methods.gradients import memory_budget
    from ..methods.spec import split_specs
    from ..models.zoo import WeightsUnavailable
    from ..workflows import explain as workflow

    if not 0 < k <= 100:
        raise _fail(f"--k {k:g} is outside (0, 100]")
    budget = opt.parse_memory(max_memory)
    try:
        loaded = mo.load_cli_model(model, weights, **mo.model_options(size, crop, mean, std, class_names))
    except (FileNotFoundError, ValueError, KeyError, OSError, TypeError, WeightsUnavailable) as error:
        raise _fail(f"--model {model}: {error}") from None
    names = loaded.require_class_names()
    per_image = None
    try:
        if confused is not None:
            pictures, sources, per_image = workflow.confused_images(confused, loaded, images or [], n)
        else:
            if not images:
                raise _fail("give at least one IMAGE (a file, a folder or a glob pattern), or --confused RUN")
            pictures, sources = workflow.load_images(images)
        chosen = workflow.resolve_classes(classes, names) if classes else None
        method_specs = split_specs(methods)
    except (FileNotFoundError, ValueError) as error:
        raise _fail(str(error)) from None
    if versus and (chosen is None and top < 2):
        raise _fail("--versus needs two classes: --classes A,B or --top 2")
    try:
        with memory_budget(budget):
            explained = workflow.explain_images(loaded, pictures, sources, classes=chosen, top=top,
                                                methods=method_specs, k_percent=k, versus=versus,
                                                contrast=contrast, per_image_classes=per_image, layer=layer)
    except (ValueError, TypeError, IndexError) as error:
        raise _fail(str(error)) from None
    from ..report.explain import write_explanations

    written = write_explanations(explained, out, html=html, versus=versus, dpi=dpi)
    for item in explained:
        typer.echo(item.line())
    pngs = [p for p in written if p.suffix == ".png"]
    typer.echo(f"wrote {len(pngs)} figure(s) to {out}/" + (f" ({pngs[0].name})" if len(pngs) == 1 else ""))
    if html:
        typer.echo(f"wrote {written[-1]}")
    typer.echo(f"({time.perf_counter() - started:.1f} s)", err=True)
