"""The package's layers import only downwards: core <- methods <- metrics <- models/data <-
runs/workflows <- report <- cli (lazy imports inside functions included). The package root sits above
runs/workflows (it exports from them) and below report; compat.py (the pytorch-grad-cam drop-in) above
metrics and below models/data."""

from __future__ import annotations

import ast
from pathlib import Path

import case_saliency

PACKAGE = Path(case_saliency.__file__).parent
LEVELS = {"core": 0, "methods": 1, "metrics": 2, "compat": 2.5, "models": 3, "data": 3, "runs": 4, "workflows": 4,
          "__init__": 4.5, "report": 5, "cli": 6}
ROOT_FILES = {"__init__.py": "__init__", "compat.py": "compat"}


def _layer(parts: list[str]) -> str | None:
    """The layer of a module (``parts`` inside the package); a file of the root: ``ROOT_FILES``."""
    if len(parts) == 1 and parts[0] in ROOT_FILES:
        return ROOT_FILES[parts[0]]
    return parts[0] if parts and parts[0] in LEVELS and parts[0] != "__init__" else None


def _imports(path: Path) -> list[tuple[int, list[str]]]:
    """(line, target module parts inside case_saliency) for every import in the file."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("case_saliency"):
                parts = node.module.split(".")[1:]
            else:
                continue
            names = [alias.name for alias in node.names]
            # "from . import x": the targets are the named submodules
            targets = [parts + [name] for name in names] if node.module is None else [parts]
            found += [(node.lineno, t) for t in targets]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[1:]) for alias in node.names
                      if alias.name.startswith("case_saliency.")]
    return found


def test_imports_flow_one_way():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _layer(list(path.relative_to(PACKAGE).parts))
        if here is None:
            continue  # __main__.py: the command line's entry point
        for line, target in _imports(path):
            there = _layer(target) if target else "__init__"
            if there is not None and LEVELS[there] > LEVELS[here]:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} ({here}) imports {'.'.join(target)} ({there})")
    assert not bad, "imports that point up the layers:\n" + "\n".join(bad)


def test_checker_reads_relative_and_absolute_imports():
    """The checker itself: it resolves every import form the package uses to the right layer."""
    photos = [(_layer(t), ".".join(t)) for _, t in _imports(PACKAGE / "report" / "photos.py")]
    assert ("runs", "runs.rundir") in photos  # `from ..runs.rundir import RunDir`
    assert ("report", "report.page") in photos  # `from .page import write_report`, inside a function
    cli = [".".join(t) for _, t in _imports(PACKAGE / "cli" / "__init__.py")]
    assert "cli.methods" in cli and "cli.report" in cli  # `from . import methods`


def test_the_root_and_compat_are_checked_too():
    """The root's exports come from the layers up to runs; compat.py builds on methods only."""
    root = {_layer(t) for _, t in _imports(PACKAGE / "__init__.py")}
    assert {"core", "methods", "metrics", "models", "data", "runs"} <= root and not root & {"report", "cli"}
    assert _layer(["__init__.py"]) == "__init__" and _layer(["compat.py"]) == "compat"
    compat = {_layer(t) for _, t in _imports(PACKAGE / "compat.py")}
    assert compat <= {"core", "methods", "metrics"}
    assert LEVELS["compat"] < LEVELS["models"] and LEVELS["runs"] < LEVELS["__init__"] < LEVELS["report"]
