"""Reports of run directories: matplotlib figures (PNG and PDF) and one self-contained HTML page
(``tables``, ``sections``, ``page`` with ``style.css``).

The names below import lazily (PEP 562), so that a module of this package (``report.figures`` for
`case-saliency explain`) loads without the page's statistics stack."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

_EXPORTS = {"write_report": "page", "read_run": "rundir", "Run": "rundir", "GalleryItem": "rundir",
            "RunDirError": "rundir"}

__all__ = ["write_report", "read_run", "Run", "GalleryItem", "RunDirError"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:
    from .page import write_report
    from .rundir import GalleryItem, Run, RunDirError, read_run
