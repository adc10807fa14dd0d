"""The typer application every command module registers on."""

import typer

app = typer.Typer(
    name="case-saliency",
    help="Class-sensitive saliency maps (CASE) and diagnostics: does a saliency method tell classes apart?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: no rich import or table layout (fast --help), no <bool> on flags
)


@app.callback()
def root() -> None:
    """Class-sensitive saliency maps (CASE) and diagnostics: does a saliency method tell classes apart?"""
