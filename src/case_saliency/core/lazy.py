"""Lazy exports (PEP 562) for a package's ``__init__``: a name is imported from its module on first
use, so importing the package costs nothing (no torch for ``--help``, ``summarize`` or ``report``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        namespace: the package's ``globals()``: a resolved name is stored there, so later look-ups
            skip ``__getattr__``.
        exports: public name -> module, relative to the package (``"runs.fidelity"``).
    Returns:
        (``__getattr__``, ``__dir__``) to assign at module level.
    Examples:
        >>> __getattr__, __dir__ = lazy_exports(__name__, globals(), {"spearman": "similarity"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
