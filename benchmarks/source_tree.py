"""The ``src/`` folder of another git revision, for the benchmarks that time "before" against "after"
(no torch import: the summarize benchmark's processes must not pay for one)."""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export_tree(revision: str, into: Path) -> Path:
    """The ``src/`` folder of ``revision`` (``git archive``), extracted under ``into``; returns its path."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"
