"""The files of `case-saliency explain`: one figure per image and a self-contained HTML page."""

from __future__ import annotations

import base64
import html as html_text
from collections.abc import Sequence
from pathlib import Path

from ..workflows.explain import ImageExplanation
from .figures import explain_figure, save_png

METHOD_TITLES = {"gradcam": "Grad-CAM", "case": "CASE", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM",
                 "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM", "finercam": "Finer-CAM", "scorecam": "Score-CAM",
                 "eigencam": "EigenCAM", "ablationcam": "Ablation-CAM"}


def method_title(spec: str) -> str:
    """A method's display name: "Grad-CAM", "CASE", or the spec itself."""
    return METHOD_TITLES.get(spec, spec)


def write_explanations(explained: Sequence[ImageExplanation], out: str | Path, *, html: bool = False,
                       versus: bool = False, dpi: int | None = None) -> list[Path]:
    """One PNG per image in ``out`` (``<stem>.explain.png``) and, with ``html``, one self-contained
    ``explain.html`` (figures embedded as base64). Returns the paths written, PNGs first."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stems: dict[str, int] = {}
    for item in explained:
        stem = Path(item.source).stem or "image"
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}-{stems[stem]}"
        titles = {spec: method_title(spec) + (", A rather than B" if versus and spec in item.contrast else "")
                  for spec in item.maps}
        figure = explain_figure(item.image, item.maps, item.names, item.probabilities, agreement=item.agreement,
                                k_percent=item.k_percent, titles=titles, chosen=item.chosen,
                                title=Path(item.source).name)
        written.append(save_png(figure, folder / f"{stem}.explain.png", dpi=dpi))
    if html:
        written.append(write_html(explained, written, folder / "explain.html"))
    return written


def write_html(explained: Sequence[ImageExplanation], pngs: Sequence[Path], path: str | Path) -> Path:
    """A self-contained page: each image's figure (base64 PNG) with its classes, probabilities and
    each method's agreement as text."""
    sections = []
    for item, png in zip(explained, pngs, strict=False):
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        rows = "".join(f"<tr><td>{html_text.escape(name)}</td><td>{p:.3f}</td></tr>"
                       for name, p in zip(item.names, item.probabilities, strict=True))
        agree = "".join(f"<li>{html_text.escape(method_title(m))}: {'n/a' if v is None else f'{v:.0f}%'}</li>"
                        for m, v in item.agreement.items())
        sections.append(
            f"<section><h2>{html_text.escape(item.source)}</h2>"
            f"<img alt=\"{html_text.escape(' vs '.join(item.names))}\" src=\"data:image/png;base64,{data}\">"
            f"<table><tr><th>class</th><th>probability</th></tr>{rows}</table>"
            + (f"<p>top-{item.k_percent:g}% agreement of the first two maps (lower: the method tells them apart):</p>"
               f"<ul>{agree}</ul>" if agree else "") + "</section>")
    page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>case-saliency explain</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}img{max-width:100%}"
            "td,th{padding:2px 10px;text-align:left}</style></head><body><h1>Why A and not B?</h1>"
            + "".join(sections) + "</body></html>")
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target
