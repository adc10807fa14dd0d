"""The demo's drawings: one side-by-side PNG per photo and the report page, from the demo's run
directory and summary (``workflows.demo.run_demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..runs.rundir import RunDir
from ..runs.store import gallery_path

METHOD_TITLES = {"gradcam": "Grad-CAM", "case": "CASE"}


def draw_demo(out: Path, summary: dict[str, Any]) -> None:
    """Draw each photo's figure where ``summary`` names it (the photo, then per method its top-1 and
    top-2 maps overlaid, the top-k% regions outlined, the agreement above; ``figures.gallery_figure``)
    and, when the summary names one, the report page.

    Args:
        out: the demo's output folder. summary: what ``run_demo`` returned.
    """
    from . import figures as F
    from .page import write_report

    out = Path(out)
    (out / "photos").mkdir(exist_ok=True)
    names = RunDir.read(out).class_names or []
    methods = summary["methods"]
    for photo in summary["photos"]:
        classes = (photo["top1"]["class"], photo["top2"]["class"])
        with np.load(gallery_path(out, photo["id"]), allow_pickle=False) as data:
            maps = {m: data[f"map_{m}"] for m in methods if f"map_{m}" in data.files}
            fig = F.gallery_figure(data["image"], maps, (names[classes[0]], names[classes[1]]),
                                   (photo["top1"]["prob"], photo["top2"]["prob"]), agreement=photo["agreement"],
                                   k_percent=summary["k_percent"], titles=METHOD_TITLES)
        fig.savefig(out / photo["figure"], dpi=100, facecolor="white")
    if summary.get("report"):
        write_report(out)
