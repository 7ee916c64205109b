"""``segzero eval``: a benchmark split through the pipeline, resumable, shardable; ``segzero eval-merge``."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from segzero.cli.app import app
from segzero.cli.options import load_pipeline, model_options
from segzero.config import PipelineConfig
from segzero.errors import InputError
from segzero.protocols import REFERENCE, SEGZERO


class Benchmark(StrEnum):
    reasonseg = "reasonseg"
    refcoco = "refcoco"
    refcoco_plus = "refcoco+"
    refcocog = "refcocog"
    grefcoco = "grefcoco"


class DataFormat(StrEnum):
    auto = "auto"
    reasonseg = "reasonseg"
    refer = "refer"
    prepared = "prepared"
    reference_hf = "reference-hf"


class Subset(StrEnum):
    all = "all"
    short = "short"
    long = "long"


_DATA_HELP = (
    "LISA's ReasonSeg folder, a refer folder (refs(...).p + instances.json), a gRefCOCO folder "
    "(grefs(unc).json or .p + instances.json), a prepared dataset "
    "(segzero prepare) or a dataset in the reference release's Hugging Face format."
)
BenchmarkOpt = Annotated[Benchmark, typer.Option("--benchmark", "-b", help="Benchmark to evaluate.")]
DataOpt = Annotated[Path, typer.Option("--data", help=_DATA_HELP)]
SplitOpt = Annotated[
    str,
    typer.Option("--split", help="ReasonSeg, RefCOCOg: val or test; RefCOCO/+, gRefCOCO: val, testA, testB."),
]
SubsetOpt = Annotated[Subset, typer.Option("--subset", help="ReasonSeg: all, or only short or long queries.")]
FormatOpt = Annotated[DataFormat, typer.Option("--format", help="Format of --data (auto: from its files).")]
SplitByOpt = Annotated[
    str | None,
    typer.Option("--split-by", help="refer: umd, unc or google (default: umd for RefCOCOg, else unc)."),
]
ImagesOpt = Annotated[
    Path | None,
    typer.Option("--images", help="refer, gRefCOCO: the COCO train2014 images (default: near --data)."),
]
DataSplitOpt = Annotated[
    str | None, typer.Option("--data-split", help="Split name inside a Hugging Face dataset, if not --split.")
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Run folder (default: runs/BENCHMARK-SPLIT); re-running resumes."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate only the first N samples.")]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", help="Run shard I/N (0-based) in OUT/shards/I-of-N; automatic under accelerate."),
]
RetryOpt = Annotated[
    bool, typer.Option("--retry-errors", help="Run again the samples an earlier attempt failed on.")
]
KeepMasksOpt = Annotated[
    bool, typer.Option("--keep-masks/--no-keep-masks", help="Keep predicted masks (RLE) for `visualize`.")
]


@app.command("eval")
@model_options()
def eval_command(
    benchmark: BenchmarkOpt,
    data: DataOpt,
    split: SplitOpt = "val",
    subset: SubsetOpt = Subset.all,
    data_format: FormatOpt = DataFormat.auto,
    split_by: SplitByOpt = None,
    images: ImagesOpt = None,
    data_split: DataSplitOpt = None,
    out: OutOpt = None,
    limit: LimitOpt = None,
    shard: ShardOpt = None,
    retry_errors: RetryOpt = False,
    keep_masks: KeepMasksOpt = True,
    *,
    model: PipelineConfig,
) -> None:
    """Evaluate a benchmark split (resumable, shardable): gIoU, cIoU, box accuracy, the paper's numbers;
    on gRefCOCO its own gIoU, cIoU, N-acc and T-acc.

    --protocol reference reproduces the reference release's evaluation (docs/reproducing.md in the source
    tree); every run also reports its masks scored by the other protocol's rules.
    """
    from segzero.evaluation.benchmarks import BenchmarkSpec, index_benchmark
    from segzero.evaluation.results import parse_shard
    from segzero.evaluation.runner import evaluate, make_config
    from segzero.evaluation.shards import launch_device, launched_shard

    spec = BenchmarkSpec(
        benchmark=benchmark.value,
        split=split,
        data=data,
        format=data_format.value,
        subset=subset.value,
        limit=limit,
        split_by=split_by,
        images=images,
        data_split=data_split,
        keep_empty=model.protocol == REFERENCE,
    )
    launch = launched_shard()
    if launch is not None and shard is not None:
        raise InputError(
            f"--shard {shard} was given but the launcher already runs {launch.count} processes; "
            "give one or the other."
        )
    shard_ix = parse_shard(shard) if shard is not None else (launch.index, launch.count) if launch else None
    main = launch is None or launch.index == 0
    console = Console(stderr=True, quiet=not main)
    run_dir = out or Path("runs") / spec.name
    model = dataclasses.replace(model, device=launch_device(model.device, launch))
    config = make_config(spec, model)
    if config.extra["format"] == "reference-hf" and spec.benchmark == "reasonseg" and model.protocol == SEGZERO:
        console.print(
            "[yellow]note:[/] the reference release's ReasonSeg sets turned ignore regions into foreground; "
            "these figures are not comparable with LISA's release (use the ReasonSeg folder), "
            "and they are the reference's own figures only under --protocol reference.",
            highlight=False,
        )
    with console.status(f"Reading {spec.name} from {data}..."):
        index = index_benchmark(spec)
    _print_skips(console, index.skipped, data)

    with _ProgressBar(console, spec.name, shard_ix) as bar:
        outcome = evaluate(
            spec, run_dir, config, lambda: load_pipeline(model), shard=shard_ix, batch_size=model.batch_size,
            retry_errors=retry_errors, keep_masks=keep_masks, progress=bar.update, index=index,
        )  # fmt: skip

    label = f"shard {shard_ix[0]}/{shard_ix[1]}" if shard_ix else spec.name
    Console(stderr=True).print(
        f"{label}: {outcome.evaluated} evaluated now, {outcome.skipped_before} already done, "
        f"{outcome.errors} failed -> {outcome.out_dir}",
        highlight=False,
    )
    if outcome.merged is not None:
        Console(stderr=True).print(f"All {shard_ix[1]} shards done; merged into {run_dir}.", highlight=False)
        _print_summary(outcome.merged, str(run_dir))
        return
    if main:
        _print_summary(outcome.summary, str(outcome.out_dir))
    if outcome.merge_problem:
        Console(stderr=True).print(f"[yellow]Not merged:[/] {outcome.merge_problem}", highlight=False)
    elif shard_ix is not None:
        Console(stderr=True).print(
            f"Other shards are still running or to run; when all are done: segzero eval-merge {run_dir}",
            highlight=False,
        )


@app.command("eval-merge")
def eval_merge(
    paths: Annotated[
        list[Path],
        typer.Argument(help="A run folder holding shards/, or the shard folders themselves."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where the merged run goes (default: the shards' run folder)."),
    ] = None,
) -> None:
    """Merge the shards of a sharded evaluation, refusing overlapping or missing shards, and summarise it."""
    from segzero.evaluation.shards import SHARDS_DIR, find_shards, merge_run

    if len(paths) == 1 and (paths[0] / SHARDS_DIR).is_dir():
        run_dir, shards = out or paths[0], find_shards(paths[0])
    else:
        parents = {p.resolve().parent for p in paths}
        if out is None and not (len(parents) == 1 and next(iter(parents)).name == SHARDS_DIR):
            raise InputError(
                "These shard folders are not under one RUN_DIR/shards; say where to merge them with --out."
            )
        run_dir, shards = out or next(iter(parents)).parent, paths
    summary = merge_run(run_dir, shards)
    Console(stderr=True).print(f"Merged {len(shards)} shards into {run_dir}.", highlight=False)
    _print_summary(summary, str(run_dir))


def _print_skips(console: Console, skipped: Any, data: Path) -> None:
    if not skipped.n_skipped:
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in skipped.kinds.most_common())
    console.print(
        f"[bold yellow]warning:[/] {skipped.n_skipped} records of {data} could not be read and are in no "
        f"figure ({kinds}); the run folder's skipped.jsonl lists them.",
        highlight=False,
    )
    for record_id, reason in skipped.skipped[:5]:
        console.print(f"  skipped {record_id}: {reason}", highlight=False, markup=False)


class _ProgressBar:
    """A rich progress bar of samples done / to do, fed by :func:`segzero.evaluation.runner.evaluate`'s callback.

    The callback's first call (when the models are loaded) starts it, with the total known, so it never
    draws over the loading spinner.
    """

    def __init__(self, console: Console, name: str, shard: tuple[int, int] | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.progress import TimeRemainingColumn

        self.label = name + (f" shard {shard[0]}/{shard[1]}" if shard else "")
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        )  # fmt: skip
        self.task = None
        self.iou_sum = 0.0
        self.count = 0

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.bar.stop()

    def update(self, done: int, total: int, records) -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task(f"{self.label}  first batch...", total=total)
        self.iou_sum += sum(r.iou for r in records)
        self.count += len(records)
        if self.count:
            description = f"{self.label}  gIoU so far {100 * self.iou_sum / self.count:.1f}"
            self.bar.update(self.task, description=description)
        self.bar.update(self.task, total=total, completed=done)


def _print_summary(summary: dict[str, Any], name: str) -> None:
    """The run's figures as the report's rich table, beside the paper's for the same benchmark and split."""
    from segzero.evaluation.report import render_differences, render_report, report_rows, reproducing_doc, run_summary

    overall = summary["overall"]
    console = Console()
    run = run_summary(summary, name)
    console.print(render_report(report_rows([run]), reproducing_doc()))
    differences = render_differences([run])
    if differences is not None:
        console.print(differences)
    skipped = (summary.get("reader_skipped") or {}).get("n", 0)
    console.print(
        f"n={overall['n']}  pipeline errors={overall['errors']}  unparsed={overall['parse_failures']}"
        + (f"  unreadable records left out={skipped}" if skipped else "")
        + (f"  left out by the protocol={overall['left_out']}" if overall.get("left_out") else "")
        + ("" if summary.get("complete", True) else "  [bold yellow]INCOMPLETE[/]")
        + f"   summary: {Path(name) / 'summary.json'}",
        highlight=False,
    )
