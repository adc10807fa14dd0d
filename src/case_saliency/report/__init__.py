"""Reports of run directories: matplotlib figures (PNG and PDF) and one self-contained HTML page
(``tables``, ``sections``, ``page`` with ``style.css``)."""

from .page import write_report
from .rundir import GalleryItem, Run, RunDirError, read_run

__all__ = ["write_report", "read_run", "Run", "GalleryItem", "RunDirError"]
