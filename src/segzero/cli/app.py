"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="segzero",
    help="Reasoning segmentation: a vision-language reasoner thinks and points, SAM2 draws the mask.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
