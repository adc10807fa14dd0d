"""One self-contained HTML page for one run directory or several: the sections, figures embedded as
base64 PNG data URIs, the style sheet (style.css) inline.

The page loads nothing from the network and runs no script. Every piece of text that comes from
the data (class names, image ids, file names, config values) is HTML-escaped.
"""

from __future__ import annotations

import shlex
from functools import cache
from importlib import resources
from pathlib import Path
from collections.abc import Sequence

from ..runs.store import atomic_write
from .rundir import Run, check_report_target, read_run, safe_name
from .sections import combined_table, run_sections, run_subtitle, run_title
from .tables import e


@cache
def style() -> str:
    """The page's CSS (style.css beside this module)."""
    return resources.files(__package__).joinpath("style.css").read_text(encoding="utf-8")


def _page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str, int]]) -> str:
    """sections: (id, heading, HTML, level): level 2 headings are in the navigation bar."""
    body = "".join(f'<section id="{key}"><h{level}>{name}</h{level}>{content}</section>'
                   for key, name, content, level in sections)
    nav = "".join(f'<a href="#{key}">{name}</a>' for key, name, _, level in sections if level == 2)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} – case-saliency</title>
<style>
{style()}</style>
</head>
<body>
<main>
<header>
<h1>{e(title)}</h1>
<p class="subtitle">{subtitle}</p>
<nav>{nav}</nav>
</header>
{body}
</main>
</body>
</html>
"""


def render(runs: Sequence[Run], folder: Path, threshold: float | None = None, alpha: float | None = None,
           correction: str | None = None, command: str = "") -> str:
    """The page's HTML for one run or several; figures are written to ``folder`` (one subfolder
    per run when there are several)."""
    from ..runs.summary import summarize_run

    summaries = [summarize_run(run.path, threshold=threshold, alpha=alpha, correction=correction) for run in runs]
    if len(runs) == 1:
        run = runs[0]
        sections = [(key, name, body, 2) for key, name, body in run_sections(run, summaries[0], folder,
                                                                               command or None)]
        return _page(run_title(run), run_subtitle(run), sections)
    sections = [("combined", "Summary across runs", combined_table(runs, summaries), 2)]
    for i, (run, summary) in enumerate(zip(runs, summaries, strict=False), start=1):
        prefix = f"run{i}"
        sub = folder / f"{i}-{run.kind}-{safe_name(run.model)}"
        parts = run_sections(run, summary, sub)
        inner = "".join(f'<section id="{prefix}-{key}"><h3>{name}</h3>{body}</section>' for key, name, body in parts)
        sections.append((prefix, e(run_title(run)), f'<p class="subtitle">{run_subtitle(run)}</p>{inner}', 2))
    if command:
        sections.append(("reproduce", "This page", f"<pre><code>{e(command)}</code></pre>", 2))
    models = sorted({run.model for run in runs})
    return _page(f"case-saliency report: {len(runs)} runs, {len(models)} model{'s' if len(models) > 1 else ''}",
                 " · ".join(e(run_title(run)) for run in runs), sections)


def write_report(run_dir: Path, out: Path | None = None, *, more_runs: Sequence[Path] = (),
                 threshold: float | None = None, alpha: float | None = None,
                 correction: str | None = None) -> Path:
    """Write the self-contained report of a diagnose or fidelity run directory and return its path.

    out: the HTML file (default ``run_dir/report.html``); figures go to ``figures/`` beside it, as
    PNG and PDF. more_runs: further run directories on the same page (e.g. the fidelity run of the
    same model, or other models), with a table across all of them first.
    threshold, alpha: override the runs' for the test; correction: None or "holm".
    Raises ``RunDirError`` (a ValueError) when a directory is not a run directory.
    """
    runs = [read_run(Path(path)) for path in (run_dir, *more_runs)]
    out = Path(out) if out is not None else runs[0].path / "report.html"
    check_report_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = " ".join(shlex.quote(str(run.path)) for run in runs)
    options = "".join([f" --out {shlex.quote(str(out))}" if out != runs[0].path / "report.html" else "",
                       f" --threshold {threshold:g}" if threshold is not None else "",
                       f" --alpha {alpha:g}" if alpha is not None else "", " --holm" if correction == "holm" else ""])
    page = render(runs, out.parent / "figures", threshold, alpha, correction,
                  command=f"case-saliency report {paths}{options}")
    atomic_write(out, page)
    return out
