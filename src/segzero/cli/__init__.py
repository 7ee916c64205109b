"""Command line: ``segzero COMMAND``. Each command lives in its own module and registers on ``app``."""

from __future__ import annotations

import sys

from segzero.cli.app import app
from segzero.cli import segment as _segment  # noqa: F401  (registers commands)
from segzero.cli import report as _report  # noqa: F401  (registers commands)
from segzero.cli import prepare as _prepare  # noqa: F401  (registers commands)
from segzero.cli import serve as _serve  # noqa: F401  (registers commands)
from segzero.cli import eval as _eval  # noqa: F401  (registers commands)
from segzero.cli import shapeworld as _shapeworld  # noqa: F401  (registers commands)
from segzero.cli import train as _train  # noqa: F401  (registers commands)


def main() -> None:
    """Entry point; errors meant for people are printed as one line, exit code 2."""
    from segzero.errors import SegZeroError

    try:
        app()
    except SegZeroError as exc:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
