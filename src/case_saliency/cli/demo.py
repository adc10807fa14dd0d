"""`case-saliency demo`: the main job, offline, in under a minute."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .app import app


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="output folder (created; a previous demo "
                             "output there is replaced)"),
    model: str = typer.Option("efficientnet_lite0", help="model (offline: efficientnet_lite0/1/2)"),
    k: float = typer.Option(5.0, "--k", min=0.01, max=100.0, help="top-k% for the agreement"),
    report: bool = typer.Option(True, help="write report.html (the `case-saliency report` page)"),
) -> None:
    """EfficientNet-Lite0 on the sample photos of scikit-image and scikit-learn: top-1/top-2 classes,
    Grad-CAM and CASE maps for both, and their top-5% agreement. No network needed. Writes PNG
    figures, report.html, summary.json and a diagnose run directory to --out, and prints a table."""
    from ..models.zoo import WeightsUnavailable
    from ..report.photos import draw_demo
    from ..workflows.demo import OutputFolderInUse, format_table, run_demo

    started = time.time()
    try:
        summary = run_demo(out, model_name=model, k_percent=k, report=report)
        draw_demo(out, summary)
    except OutputFolderInUse as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, FileNotFoundError, WeightsUnavailable) as error:  # a bad --model or --out
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{summary['model']['name']} at layer {summary['layer']}; CASE contrast {summary['contrast']}; "
               f"top-{k:g}% agreement of the top-1 and top-2 maps (percent, lower = more class-specific)")
    typer.echo(format_table(summary["photos"]))
    typer.echo(f"\nwrote {out}/: photos/*.png, summary.json"
               + (f", {summary['report']}" if summary["report"] else "") + f" ({time.time() - started:.1f} s)")
