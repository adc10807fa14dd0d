"""The command line: thin wrappers that parse arguments and call the library.

Exit codes: 0 success, 1 a failure while running, 2 bad arguments or inputs.
Each area's commands live in their own module and register on ``app`` when imported. Heavy modules
(torch and the rest) are imported inside the commands, so ``--help`` stays fast; an installation
without the ``cli`` extra gets a message rather than a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings

_MISSING: str | None = None
try:
    from .app import app
    from . import methods  # noqa: F401  (registers `methods`)
    from . import diagnose, fidelity, summarize  # noqa: F401  (registers `diagnose`, `fidelity`, `summarize`)
    from . import report  # noqa: F401  (registers `report`)
    from . import confusion, demo, train  # noqa: F401  (registers `demo`, `train`, `confusion`)
    from . import explain  # noqa: F401  (registers `explain`)
    from . import planted, sanity  # noqa: F401  (registers `planted`, `sanity`)
except ModuleNotFoundError as error:  # installed without the cli extra
    if error.name not in ("typer", "click"):
        raise
    _MISSING = error.name


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """Warnings as one line each ("warning: ..."), without the source line Python prints by default."""
    print(f"warning: {message}", file=file or sys.stderr)


def main() -> None:
    if _MISSING is not None:
        print(f"error: the command line needs {_MISSING}, which this installation lacks; install it with "
              "pip install 'case-saliency[cli]' (or [all])", file=sys.stderr)
        raise SystemExit(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    warnings.showwarning = _show_warning
    app()
