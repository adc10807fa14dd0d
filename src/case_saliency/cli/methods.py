"""`case-saliency methods`: list the available saliency methods."""

import typer

from ..methods import METHODS
from .app import app


@app.command("methods")
def list_methods() -> None:
    """List the saliency methods by name, with the first line of their description."""
    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or (__import__(cls.__module__, fromlist=["_"]).__doc__) or "").strip().splitlines()
        typer.echo(f"{name:24s} {doc[0] if doc else ''}")
