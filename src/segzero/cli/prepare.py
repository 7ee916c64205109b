"""``segzero prepare SOURCE``: read a dataset release and write it as a prepared dataset."""

from __future__ import annotations

import shutil
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from segzero.cli.app import app, output_in_use
from segzero.defaults import COORDINATES, DEFAULT_SEGMENTER, REASONER_FRAME, SEGMENTER_AGREEMENT_IOU
from segzero.protocols import PROTOCOLS, SEGZERO


class Source(StrEnum):
    refcoco = "refcoco"
    refcoco_plus = "refcoco+"
    refcocog = "refcocog"
    reasonseg = "reasonseg"
    reference_hf = "reference-hf"
    prepared = "prepared"


class SecondPoint(StrEnum):
    inscribed = "inscribed"
    reference = "reference"


class Objects(StrEnum):
    single = "single"
    components = "components"


Coordinates = StrEnum("Coordinates", {name: name for name in COORDINATES})


class Subset(StrEnum):
    all = "all"
    short = "short"
    long = "long"


REFER_SOURCES = (Source.refcoco, Source.refcoco_plus, Source.refcocog)


@app.command()
def prepare(
    source: Annotated[Source, typer.Argument(help="Dataset format to read.")],
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            "--path",
            help="refer data folder, ReasonSeg folder, or dataset path (reference-hf, prepared).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the prepared dataset to (save_to_disk).")
    ],
    split: Annotated[
        str | None,
        typer.Option(
            help="train, val, test, testA, testB (default: val for refer and ReasonSeg, else the only one)."
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(help="refer split scheme: umd, google or unc (default: umd for refcocog, else unc)."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(help="COCO train2014 images folder (refer; looked for next to --root if unset)."),
    ] = None,
    subset: Annotated[Subset, typer.Option(help="ReasonSeg subset by is_sentence.")] = Subset.all,
    all_texts: Annotated[
        bool | None,
        typer.Option(
            "--all-texts/--first-text",
            help="ReasonSeg: a sample per text, or text[0] only (default: all for train).",
        ),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help=f"{' or '.join(PROTOCOLS)}: reference reproduces the reference release's training data "
            f"(its point heuristic, SAM2.1 filter, {REASONER_FRAME}x{REASONER_FRAME} INTER_AREA images); see "
            "docs/reproducing.md."
        ),
    ] = SEGZERO,
    frame: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Side of the reasoner's square frame to write prompts in [default: {REASONER_FRAME}].",
        ),
    ] = None,
    coordinates: Annotated[
        Coordinates,
        typer.Option(
            help="pixels: prompts in the --frame pixels (Qwen2.5-VL); relative: on the 0-1000 grid "
            "(Qwen3-VL), whatever --frame."
        ),
    ] = Coordinates.pixels,
    second_point: Annotated[
        SecondPoint | None,
        typer.Option(
            help="Point 2: largest inscribed circle once the first is removed, or the reference heuristic "
            "[default: inscribed; reference under --protocol reference]."
        ),
    ] = None,
    objects: Annotated[
        Objects | None,
        typer.Option(
            help="single: the mask is one object (Seg-Zero); components: one per connected part [default: single]."
        ),
    ] = None,
    filter_with_segmenter: Annotated[
        str | None,
        typer.Option(
            help="SAM 2 or SAM 3 id or folder: keep only samples it reproduces from box + point 1 "
            f"[default: none; {DEFAULT_SEGMENTER} under --protocol reference]."
        ),
    ] = None,
    filter_iou: Annotated[
        float | None,
        typer.Option(
            help=f"IoU the segmenter must reach to keep a sample [default: {SEGMENTER_AGREEMENT_IOU}]."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many kept samples.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it already holds files.")] = False,
    show_skipped: Annotated[
        int, typer.Option(min=0, help="How many skipped ids to print (all go to OUT/skipped.jsonl).")
    ] = 20,
) -> None:
    """Convert a dataset to the prepared format, reporting every skipped record with its id and reason."""
    from rich.console import Console
    from rich.table import Table

    from segzero.data import SkipLog, iter_samples, save_prepared
    from segzero.errors import InputError
    from segzero.protocols import prepare_settings

    # Contradictions are refused here, before the output folder is touched or a model loads.
    settings = prepare_settings(
        protocol,
        source=source.value,
        second_point=second_point.value if second_point else None,
        objects=objects.value if objects else None,
        frame=frame,
        segmenter=filter_with_segmenter,
        filter_iou=filter_iou,
    )
    if coordinates.value != "pixels" and settings.reference_images:
        raise InputError(
            f"--coordinates {coordinates.value} contradicts --protocol reference, where prompts are in the "
            f"{REASONER_FRAME} pixels; drop --coordinates."
        )
    from segzero.frames import answer_grid

    grid = answer_grid(settings.frame, coordinates.value).width  # the grid the reasoner answers on

    console = Console()
    if output_in_use(out):
        if not overwrite:
            raise InputError(f"{out} already exists; choose another --out or pass --overwrite.")
        shutil.rmtree(out) if out.is_dir() else out.unlink()

    options: dict = {}
    if source in REFER_SOURCES:
        options.update(split_by=split_by, images=images)
    elif source == Source.reasonseg:
        options.update(subset=subset.value, all_texts=all_texts)
    if source != Source.prepared:
        options.update(
            second_point=settings.second_point, objects=settings.objects, protocol=settings.protocol
        )

    segmenter = None
    if settings.segmenter:
        try:
            from segzero.segmenter import Segmenter
        except ImportError as exc:
            raise InputError(
                f"The segmenter could not be imported ({exc}); install segzero with its model extras."
            ) from None
        segmenter = Segmenter.from_pretrained(settings.segmenter, multimask_output=settings.multimask)

    report = SkipLog()
    samples = iter_samples(
        source.value,
        root,
        split,
        report=report,
        limit=limit,
        segmenter=segmenter,
        filter_threshold=settings.filter_iou,
        **options,
    )
    if settings.reference_images:
        from segzero.data.reference_prep import reference_training_samples

        samples = reference_training_samples(samples, settings.frame, report=report)
    written = save_prepared(samples, out, frame=grid, second_point=settings.second_point, report=report)
    report.write_jsonl(out / "skipped.jsonl")

    console.print(
        f"[bold green]kept[/] {written}   [bold yellow]skipped[/] {report.n_skipped}"
        f"   warnings {len(report.warnings)}   -> {out}",
        highlight=False,
    )
    if report.kinds:
        table = Table("reason", "count", title="skipped by reason")
        for kind, count in report.kinds.most_common():
            table.add_row(kind, str(count))
        console.print(table)
    for record_id, reason in report.skipped[:show_skipped]:
        console.print(f"  skipped {record_id}: {reason}", highlight=False, markup=False, soft_wrap=True)
    if report.n_skipped > show_skipped:
        console.print(
            f"  ... and {report.n_skipped - show_skipped} more in {out / 'skipped.jsonl'}", highlight=False
        )
    for record_id, reason in report.warnings[:show_skipped]:
        console.print(f"  warning {record_id}: {reason}", highlight=False, markup=False, soft_wrap=True)
