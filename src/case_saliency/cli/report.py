"""`case-saliency report RUN_DIR`: one self-contained HTML page (and PNG/PDF figures) for a run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app


@app.command("report")
def report(
    run_dir: Path = typer.Argument(..., help="a run directory written by `diagnose` or `fidelity`"),
    out: Optional[Path] = typer.Option(None, "--out", help="the HTML file to write (default RUN_DIR/report.html); "
                                       "figures go to figures/ beside it"),
    threshold: Optional[float] = typer.Option(None, help="agreement threshold, percent (default: the run's)"),
    alpha: Optional[float] = typer.Option(None, help="significance level (default: the run's)"),
    holm: bool = typer.Option(False, help="Holm-correct the p-values"),
) -> None:
    """Write a self-contained HTML report: summary table, histograms, box plots, curves, gallery, confusion."""
    from ..report import RunDirError, write_report

    try:
        path = write_report(run_dir, out, threshold=threshold, alpha=alpha, correction="holm" if holm else None)
    except (RunDirError, FileNotFoundError) as error:
        typer.echo(f"error: RUN_DIR {run_dir}: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"report: {path}")
    typer.echo(f"figures (PNG, PDF): {path.parent / 'figures'}")
