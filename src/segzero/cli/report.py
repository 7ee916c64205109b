"""``segzero report`` and ``segzero visualize``: read finished evaluation runs; no model is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segzero.cli.app import app
from segzero.errors import InputError


@app.command()
def report(
    results: Annotated[
        list[Path] | None,
        typer.Argument(help="Run folders (or their summary.json); none: just the paper's numbers."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write the table: Markdown (.md) or JSON rows (.json)."),
    ] = None,
) -> None:
    """Show runs' gIoU / cIoU side by side with the paper's numbers for the same benchmark and split.

    A run is compared (its delta) only with a published figure of the same checkpoint measured by the
    evaluation its protocol reproduces; a run on a ShapeWorld export is shown apart.
    """
    from segzero.evaluation.report import (
        load_run_summary,
        render_differences,
        render_report,
        report_rows,
        reproducing_doc,
        rows_to_json,
        rows_to_markdown,
    )

    if out is not None and out.suffix not in (".md", ".json"):
        raise InputError(f"--out must end in .md or .json, got {out.name}.")
    runs = [load_run_summary(path) for path in results or []]
    rows = report_rows(runs)
    console = Console()
    console.print(render_report(rows, reproducing_doc()))
    differences = render_differences(runs)
    if differences is not None:
        console.print(differences)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".md":
            out.write_text(rows_to_markdown(rows), encoding="utf-8")
        else:
            out.write_text(json.dumps(rows_to_json(rows), indent=2) + "\n", encoding="utf-8")
        Console(stderr=True).print(f"Wrote {out}", highlight=False)


@app.command()
def visualize(
    results_dir: Annotated[Path, typer.Argument(help="A run folder written by the evaluation.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="PNG to write (default: RESULTS_DIR/contact_sheet.png)."),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many worst and best samples to draw.")] = 8,
) -> None:
    """Draw a run's k worst and k best samples: image, ground truth, prediction, request and reasoning.

    The images and ground truth are read again from the dataset the run was made on, in whatever
    format it was (ReasonSeg folder, refer files, prepared or reference Hugging Face dataset).
    """
    from segzero.evaluation.benchmarks import samples_for
    from segzero.evaluation.contact_sheet import render_contact_sheet, sample_loader, select_worst_best
    from segzero.evaluation.results import load_results, read_config

    records = load_results(results_dir)
    config = read_config(results_dir)
    if config is None:
        raise InputError(f"{results_dir} has no run.json, so the dataset its samples came from is unknown.")
    worst, best = select_worst_best(records.values(), k)
    samples = samples_for(config, [r["id"] for r in (*worst, *best)])
    loader = sample_loader(records, samples.__getitem__)
    path = render_contact_sheet(records, loader, out or results_dir / "contact_sheet.png", k)
    Console().print(f"Wrote {path}", highlight=False)
