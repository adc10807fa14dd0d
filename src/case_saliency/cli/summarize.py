"""`case-saliency summarize RUN_DIR`: the per-method tables of a diagnose or fidelity run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from .app import app
from .run_options import fail


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON null) and NumPy scalars as Python numbers."""
    import math

    if isinstance(value, dict):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@app.command("summarize")
def summarize(
    run_dir: Path = typer.Argument(..., help="a run directory written by `diagnose` or `fidelity`"),
    threshold: float | None = typer.Option(None, help="agreement threshold, percent (default: the run's)"),
    alpha: float | None = typer.Option(None, help="significance level (default: the run's)"),
    holm: bool = typer.Option(False, help="Holm-correct the agreement tests' p-values (the verdicts are always "
                                          "Holm-corrected across the methods; their uncorrected p is kept)"),
    reference: str = typer.Option("case", help="fidelity: the method compared with each other method"),
    baseline: str = typer.Option("gradcam", help="diagnose: the method every verdict compares with"),
    margin: float = typer.Option(5.0, help="diagnose: the verdicts' equivalence margin, agreement points"),
    as_json: bool = typer.Option(False, "--json", help="print the tables as JSON records"),
) -> None:
    """Per-method tables: N, mean, SD, median, degenerate count, Wilcoxon test, and a verdict per method against
    Grad-CAM on the same images; or fidelity means and paired tests."""
    from ..report.evidence import evidence_summary
    from ..runs.summary import format_summary, summarize_run

    if not margin > 0:
        raise fail(f"--margin {margin:g} must be positive, e.g. --margin 5 (agreement points)")
    try:
        if (evidence := evidence_summary(run_dir, as_json, threshold, alpha)) is not None:  # `planted`, `sanity`
            return typer.echo(evidence)
        summary = summarize_run(run_dir, threshold, alpha, "holm" if holm else None, reference, baseline=baseline,
                                margin=margin)
    except (FileNotFoundError, ValueError) as error:
        raise fail(f"RUN_DIR {run_dir}: {error}") from None
    if as_json:
        tables = {key: value.to_dict(orient="records") for key, value in summary.items()
                  if hasattr(value, "to_dict")}
        extra = {"verdicts": summary["verdicts"]} if "verdicts" in summary else {}
        typer.echo(json.dumps(strict_json({"kind": summary["kind"], **tables, **extra}), indent=2, allow_nan=False))
    else:
        typer.echo(format_summary(summary))
