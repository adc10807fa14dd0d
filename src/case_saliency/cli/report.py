"""`case-saliency report RUN_DIR [RUN_DIR ...]`: one self-contained HTML page (and PNG/PDF figures)."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app


@app.command("report")
def report(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR...",
                                          help="run directories written by `diagnose` or `fidelity`, or one "
                                          "folder written by `planted` or `sanity`; several "
                                          "go on one page (e.g. a model's diagnose and fidelity runs, or several "
                                          "models) with a table across them first"),
    out: Path | None = typer.Option(None, "--out", help="the HTML file to write (default: report.html in the "
                                       "first RUN_DIR); figures go to figures/ beside it"),
    threshold: float | None = typer.Option(None, help="agreement threshold, percent (default: the run's)"),
    alpha: float | None = typer.Option(None, help="significance level (default: the run's)"),
    holm: bool = typer.Option(False, help="Holm-correct the p-values"),
) -> None:
    """Write a self-contained HTML report of runs: tables, histograms, box plots, curves, gallery, confusion."""
    from ..report import RunDirError, write_report
    from ..report.evidence import evidence_kind, write_evidence_report

    try:
        if len(run_dirs) == 1 and evidence_kind(run_dirs[0]):  # a `planted` or `sanity` folder: its own page
            path = write_evidence_report(run_dirs[0], out, threshold=threshold, alpha=alpha)
        else:
            path = write_report(run_dirs[0], out, more_runs=run_dirs[1:], threshold=threshold, alpha=alpha,
                                correction="holm" if holm else None)
    except (RunDirError, FileNotFoundError) as error:
        typer.echo(f"error: RUN_DIR: {error}", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # e.g. a run on a read-only file system: the page can go elsewhere
        target = out or run_dirs[0] / "report.html"
        typer.echo(f"error: cannot write the report at {target} ({error.strerror or error}); write it "
                   "elsewhere with --out FILE", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"report: {path}")
    typer.echo(f"figures (PNG, PDF): {path.parent / 'figures'}")
