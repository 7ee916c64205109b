"""The typer application every command module registers on."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="segzero",
    help="Reasoning segmentation: a vision-language reasoner thinks and points, SAM2 draws the mask.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def output_in_use(out: Path) -> bool:
    """True when ``out`` is a file or a folder that already holds something: commands that write a
    whole folder refuse it (or replace it only when told to) rather than mix old and new files."""
    return out.is_file() or (out.is_dir() and any(out.iterdir()))
