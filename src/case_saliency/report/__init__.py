"""Reports of run directories: matplotlib figures (PNG and PDF) and one self-contained HTML page
(``tables``, ``sections``, ``page`` with ``style.css``).

The names below import lazily (PEP 562), so that a module of this package (``report.figures`` for
`case-saliency explain`) loads without the page's statistics stack."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"write_report": "page", "read_run": "rundir", "Run": "rundir", "GalleryItem": "rundir",
            "RunDirError": "rundir"}

__all__ = ["write_report", "read_run", "Run", "GalleryItem", "RunDirError"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


if TYPE_CHECKING:
    from .page import write_report
    from .rundir import GalleryItem, Run, RunDirError, read_run
