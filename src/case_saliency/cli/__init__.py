"""The command line: thin wrappers that parse arguments and call the library.

Exit codes: 0 success, 1 a failure while running, 2 bad arguments or inputs.
Each area's commands live in their own module and register on ``app`` when imported; ``app`` loads
on first use, so an installation without the ``cli`` extra gets a message rather than a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer


def _load_app() -> typer.Typer:
    from . import methods  # noqa: F401  (registers `methods`)
    from . import diagnose, fidelity, summarize  # noqa: F401  (registers `diagnose`, `fidelity`, `summarize`)
    from . import report  # noqa: F401  (registers `report`)
    from . import confusion, demo, train  # noqa: F401  (registers `demo`, `train`, `confusion`)
    from .app import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """Warnings as one line each ("warning: ..."), without the source line Python prints by default."""
    print(f"warning: {message}", file=file or sys.stderr)


def main() -> None:
    try:
        app = _load_app()
    except ModuleNotFoundError as error:
        print(f"error: the command line needs {error.name}, which this installation lacks; install it with "
              "pip install 'case-saliency[cli]' (or [all])", file=sys.stderr)
        raise SystemExit(1) from None
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    warnings.showwarning = _show_warning
    app()
