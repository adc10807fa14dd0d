"""Old module paths of 0.1 (before the ``core/``, ``workflows/`` layout) keep importing, with a
DeprecationWarning, for one release."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {"capture": "core.capture", "layers": "core.layers", "targets": "core.targets", "maps": "core.maps",
         "contrast": "core.contrast", "tail": "core.split", "stats": "metrics.stats", "demo": "report.demo",
         "training": "workflows.training", "confusion": "workflows.confusion"}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        package, _, name = fullname.rpartition(".")
        if package == "case_saliency" and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        new = f"case_saliency.{MOVED[spec.name.rpartition('.')[2]]}"
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        pass  # the module it stands for is already imported


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
