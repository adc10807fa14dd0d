"""`case-saliency methods`: list the available saliency methods."""

import inspect
import re

import typer

from .app import app


def summary(cls: type) -> str:
    """The first paragraph of a method's class docstring (else its module's), on one line."""
    doc = cls.__doc__ or inspect.getmodule(cls).__doc__ or ""
    text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    return re.sub(r"``(.+?)``", r"\1", text)  # reStructuredText literals read as plain text in a terminal


@app.command("methods")
def list_methods() -> None:
    """List the saliency methods by name, with the first paragraph of their description."""
    from ..methods import lookup_method, method_names

    for name in method_names():
        cls, preset = lookup_method(name)
        text = summary(cls) if not preset else f"{cls.__name__} on the channel weights of {preset['base']}"
        typer.echo(f"{name:24s} {text}")
