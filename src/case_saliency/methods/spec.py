"""Method specs: a method name with options, so that one run can compare variants of a method.

Syntax (the same on the command line, in ``results.csv`` and in the report)::

    name[:base][(option=value, option=value, ...)]

- ``case``, ``gradcam++``, ``finercam``: a registered method with its defaults (``case-saliency methods``);
- ``case(contrast=top:1)``, ``case(contrast=classifier:3)``, ``case(contrast=rank:3)``: CASE with
  another contrast set (see :func:`case_saliency.core.contrast.build_contrast` for the contrast specs);
- ``finercam(weighting=mean)``, ``finercam(contrast=nearest:1,gamma=0.5)``: any keyword option of the
  method's constructor; values are read as int, float, true/false, none, or text;
- ``case:gradcam++``: a method with a base method (the ``base=`` option), for methods that take one.

Several specs are separated by commas outside parentheses:
``gradcam,case,case(contrast=top:1)``. On a shell command line quote the list (parentheses are
shell syntax): ``--methods 'gradcam,case,case(contrast=top:1)'``. A spec's ``label`` is its canonical
text (lower case, no spaces, options in the order given), which names its rows in a run.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from ..core.contrast import build_contrast
from .base import METHODS, CAMMethod, SaliencyMethod

_HEAD = re.compile(r"^([a-z0-9_+\-]+)(?::([a-z0-9_+\-]+))?$")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
# Options the run (or the caller) sets for every method; a spec may not override them.
RESERVED = ("target_layer", "reshape")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: the registered ``name``, an optional ``base`` method, the ``options``
    (keyword -> value, values still as given: a contrast stays its spec text), and the ``label``."""

    name: str
    base: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def method_class(self) -> type[SaliencyMethod]:
        return METHODS[self.name]


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs at the commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in method list {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValueError(f"unbalanced '(' in method list {text!r}")
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _options_of(cls: type) -> tuple[list[str], bool]:
    """The keyword options a method class's constructor takes (besides model), and whether it
    takes any (``**options``) beyond them."""
    init = cls.__init__  # type: ignore[misc]
    params = list(inspect.signature(init).parameters.values())[2:]  # self, model
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # The base constructors' **options only refuse what they do not know: they take nothing more.
    base_inits = (SaliencyMethod.__init__, CAMMethod.__init__)
    anything = init not in base_inits and any(p.kind is p.VAR_KEYWORD for p in params)
    return names, anything


def _defaults_of(*classes: type) -> dict[str, Any]:
    """The constructor defaults of the method classes (the first class's where several have one)."""
    defaults: dict[str, Any] = {}
    for cls in classes:
        for param in list(inspect.signature(cls.__init__).parameters.values())[2:]:  # type: ignore[misc]
            if param.default is not param.empty:
                defaults.setdefault(param.name, param.default)
    return defaults


def _check_value(text: str, key: str, value: Any, default: Any) -> None:
    """Refuse a value of another kind than the option's default (a word for a number, or for true/false),
    naming the spec and the option, before any method is built."""
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ValueError(f"method spec {text!r}: option {key} takes true or false (default {_text(default)}), "
                         f"not {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
        raise ValueError(f"method spec {text!r}: option {key} takes a number (default {default!r}), not {value!r}")


def parse_method_spec(text: str) -> MethodSpec:
    """Parse one spec (see the module docstring); unknown methods and options are ValueErrors that
    list what exists."""
    raw = text.strip()
    head, options_text = raw, None
    if "(" in raw:
        if not raw.endswith(")"):
            raise ValueError(f"method spec {text!r}: options go in parentheses at the end, e.g. case(contrast=top:1)")
        head, options_text = raw[:raw.index("(")], raw[raw.index("(") + 1:-1]
    head = head.strip().lower()
    match = _HEAD.match(head)
    if not match:
        raise ValueError(f"method spec {text!r} does not read as name[:base][(option=value,...)]")
    name, base = match.group(1), match.group(2)
    if head in METHODS:  # a name registered with its colon (e.g. a base variant registered on its own)
        name, base = head, None
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} in {text!r}; available: {', '.join(sorted(METHODS))}")
    allowed, anything = _options_of(METHODS[name])
    wrapped = base or METHODS[name].default_variant
    defaults = _defaults_of(METHODS[name])
    if anything and wrapped in METHODS:  # a wrapper (CASE) passes the rest to its base method: the base's options
        base_allowed, anything = _options_of(METHODS[wrapped])
        allowed = allowed + [o for o in base_allowed if o not in allowed]
        defaults = _defaults_of(METHODS[name], METHODS[wrapped])
    options: dict[str, Any] = {}
    for item in split_specs(options_text) if options_text else []:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not _KEY.match(key) or not value:
            raise ValueError(f"method spec {text!r}: option {item!r} is not key=value")
        if key in RESERVED:
            raise ValueError(f"method spec {text!r}: {key} is set for the whole run (--layer), not per method")
        if key not in allowed and not anything:
            shown = ", ".join(o for o in allowed if o not in RESERVED) or "none"
            raise ValueError(f"method {name!r} has no option {key!r} (in {text!r}); its options: {shown}")
        if key in options:
            raise ValueError(f"method spec {text!r} sets {key} twice")
        options[key] = value.lower() if key == "contrast" else _value(value)
        _check_value(text, key, options[key], defaults.get(key))
    if base is not None:
        if "base" not in allowed and not anything:
            raise ValueError(f"method {name!r} takes no base method ({text!r}); write {name!r} alone")
        if "base" in options:
            raise ValueError(f"method spec {text!r} gives the base twice")
    label = head if base is None or head in METHODS else f"{name}:{base}"
    if options:
        label += "(" + ",".join(f"{key}={_text(value)}" for key, value in options.items()) + ")"
    return MethodSpec(name=name, base=base, options=options, label=label)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def parse_method_list(text: str | list[str] | tuple[str, ...]) -> list[MethodSpec]:
    """Specs from a comma-separated text or a list of spec texts; duplicates (same label) dropped."""
    items = split_specs(text) if isinstance(text, str) else [p for item in text for p in split_specs(item)]
    specs: list[MethodSpec] = []
    for item in items:
        spec = parse_method_spec(item)
        if spec.label not in {s.label for s in specs}:
            specs.append(spec)
    if not specs:
        raise ValueError("no methods given; name at least one (see `case-saliency methods`)")
    return specs


def follows_run_contrast(spec: MethodSpec) -> bool:
    """True for methods whose contrast the run chooses when the spec sets none (CASE): the run's
    model-level default, so that a diagnostic never hands CASE the class it is compared with."""
    return bool(getattr(spec.method_class, "follows_run_contrast", False)) and "contrast" not in spec.options


def build_method(spec: MethodSpec | str, model: Any, *, run_contrast: Any = None, confusion: Any = None,
                 **common: Any) -> SaliencyMethod:
    """The method a spec names, bound to ``model``.

    run_contrast: a contrast strategy or spec text for methods that follow the run's contrast
        (CASE) when the spec sets none; None leaves the method's own default.
    confusion: the confusion matrix (or ``ConfusionNeighbours``) that ``confusion:K`` contrasts use.
    common: keywords for every method (``target_layer``, ``reshape``), passed where the method takes them.
    """
    spec = parse_method_spec(spec) if isinstance(spec, str) else spec
    cls = spec.method_class
    allowed, anything = _options_of(cls)
    network = getattr(model, "model", model)  # a LoadedModel's network, for classifier neighbours
    kwargs = {key: value for key, value in common.items() if value is not None and (key in allowed or anything)}
    kwargs.update(spec.options)
    if spec.base is not None:
        kwargs["base"] = spec.base
    if "contrast" in spec.options:
        kwargs["contrast"] = build_contrast(spec.options["contrast"], model=network, confusion=confusion)
    elif run_contrast is not None and follows_run_contrast(spec):
        kwargs["contrast"] = build_contrast(run_contrast, model=network, confusion=confusion)
    return cls(model, **kwargs)
