"""Evaluation runs side by side with the published numbers (SPEC section 8).

The published numbers are :data:`segzero.evaluation.paper.PAPER_RESULTS`. :func:`report_rows`
lines runs up with them by (benchmark, split, subset); :func:`render_report` draws the rows as a
rich table and :func:`rows_to_markdown` as Markdown. All metrics in rows are percentages.

A report cannot mislead:

- every row names its protocol (a run's) or the evaluation that measured it (a published figure);
- a run is compared (its delta) only with a published figure of the same checkpoint measured by the
  evaluation its protocol reproduces (:meth:`~segzero.evaluation.paper.PaperResult.compares_with`); a
  local copy of a released checkpoint compares as the checkpoint;
- a run on a ShapeWorld export is shown in its own section, apart from the paper's figures;
- each run also shows its masks scored by the other protocol's rules, and its notes say how many
  samples the protocol left out;
- the table points to ``docs/reproducing.md`` only where that file is on disk (a source checkout).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segzero.errors import DatasetError, InputError
from segzero.evaluation.paper import ALL, PAPER_RESULTS, PaperResult
from segzero.evaluation.results import SHAPEWORLD_ORIGIN, SUMMARY_FILE, RunConfig, results_path, summarize_run
from segzero.protocols import REFERENCE, SEGZERO

#: How the report names the data of a run on a ShapeWorld export (a section of its own).
SHAPEWORLD_DATA = "ShapeWorld export"

#: Each protocol's ignore convention, as the report words it.
IGNORE_WORDS = {SEGZERO: "ignore left out", REFERENCE: "ignore as target"}

#: How the report names the evaluation behind a published figure.
_EVALUATION_WORDS = {REFERENCE: "reference", "lisa": "LISA", "own": "own paper"}

_BENCHMARK_ALIASES = {
    "reason_seg": "reasonseg",
    "refcoco_unc": "refcoco",
    "refcoco+_unc": "refcoco+",
    "refcocoplus": "refcoco+",
    "refcoco_plus": "refcoco+",
    "refcocog_umd": "refcocog",
}
_BENCHMARK_ORDER = ("reasonseg", "refcoco", "refcoco+", "refcocog")
_SPLIT_ORDER = ("val", "test", "testA", "testB")
_SUBSET_ORDER = (ALL, "short", "long")


def _benchmark(name: str) -> str:
    key = name.strip().lower()
    return _BENCHMARK_ALIASES.get(key, key)


def _split(name: str) -> str:
    """Canonical spelling (``testa`` -> ``testA``) so runs and the paper line up."""
    return {s.lower(): s for s in _SPLIT_ORDER}.get(name.strip().lower(), name.strip())


def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def _sort_key(key: tuple[str, str, str, str]) -> tuple:
    benchmark, split, subset, data = key
    return (data, _rank(benchmark, _BENCHMARK_ORDER), _rank(split, _SPLIT_ORDER), _rank(subset, _SUBSET_ORDER))


@dataclass(frozen=True)
class RunSummary:
    """One evaluation run's summary, as the report reads it.

    Attributes:
        name: how the run is labelled (the path it was given as).
        benchmark, split: from its configuration, canonically spelled.
        reasoner: the reasoner it ran, or None if unknown.
        metrics: subset name (``"all"`` for the whole split) -> :meth:`IoUAccumulator.summary` dict.
        complete: whether every benchmark sample was scored; None when unknown.
        protocol: the protocol it followed (``segzero`` for runs from before protocols).
        data: ``""`` for the benchmark's own data, :data:`SHAPEWORLD_DATA` for a ShapeWorld export.
        other: per other protocol, its ``metrics`` for the same masks (empty for older runs).
        differences: samples touched by each protocol difference (empty for older runs).
    """

    name: str
    benchmark: str
    split: str
    reasoner: str | None
    metrics: dict[str, dict[str, Any]]
    complete: bool | None = None
    protocol: str = SEGZERO
    data: str = ""
    other: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    differences: dict[str, int] = field(default_factory=dict)


def run_summary(summary: Mapping[str, Any], name: str) -> RunSummary:
    """The :class:`RunSummary` of a ``summary.json`` dict (:func:`segzero.evaluation.results.summarize_run`).

    A run of the whole split reports its ``overall`` figures as subset ``"all"`` and each of its
    ``subsets`` beside them. A run of one ReasonSeg subset (``segzero eval --subset short|long``)
    measured only that subset: its ``overall`` figures are that subset's, reported under its name
    and never as the whole split's (they are not comparable with the paper's whole-split numbers).
    """
    config = summary.get("config") or {}
    extra = config.get("extra") or {}
    subset = extra.get("subset") or ALL  # what make_config records
    run_config = RunConfig.from_json(config) if config else None

    def by_subset(figures: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        overall = figures["overall"]
        return {ALL: overall, **figures.get("subsets", {})} if subset == ALL else {subset: overall}

    origin = summary.get("origin") or extra.get("origin")
    return RunSummary(
        name=name,
        benchmark=_benchmark(config.get("benchmark", "")),
        split=_split(config.get("split", "")),
        reasoner=run_config.pipeline.get("reasoner") if run_config else None,
        metrics=by_subset(summary),
        complete=summary.get("complete"),
        protocol=summary.get("protocol") or (run_config.protocol if run_config else SEGZERO),
        data=SHAPEWORLD_DATA if origin == SHAPEWORLD_ORIGIN else "",
        other={p: by_subset(figures) for p, figures in (summary.get("other_protocols") or {}).items()},
        differences=dict(summary.get("differences") or {}),
    )


def load_run_summary(path: str | os.PathLike[str]) -> RunSummary:
    """Read a run: its ``summary.json``, or a run folder (summarised on the fly if it has no summary yet).

    Subset runs are read as :func:`run_summary` says.

    Raises:
        InputError: nothing readable at ``path``, or the run does not say its benchmark and split.
    """
    path = Path(path)
    if path.is_dir() and (path / SUMMARY_FILE).is_file():
        path = path / SUMMARY_FILE
    if path.is_file() and path.suffix == ".json":
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc}); summarise the run again.") from None
        name = str(path.parent)
    elif results_path(path).is_file():
        summary = summarize_run(path, write=False)
        name = str(results_path(path).parent)
    else:
        raise InputError(f"No summary or results at {path}; give a run folder or its {SUMMARY_FILE}.")
    config = summary.get("config") or {}
    if not config.get("benchmark") or not config.get("split"):
        raise InputError(f"{path} does not say which benchmark and split it ran; its run.json is missing.")
    return run_summary(summary, name)


@dataclass(frozen=True)
class ReportRow:
    """One line of the report; metrics in percent, None where not available.

    Attributes:
        source: ``"paper"`` or ``"run"``.
        name: the paper's method name, or the run's label.
        protocol: a run's protocol, or the evaluation behind a published figure (reference, LISA,
            own paper).
        data: ``""`` for the benchmark's own data, :data:`SHAPEWORLD_DATA` for a ShapeWorld export.
        delta_giou, delta_ciou: run minus the published figure of the same checkpoint and protocol.
        vs: the paper method the deltas compare with.
    """

    benchmark: str
    split: str
    subset: str
    source: str
    name: str
    giou: float | None
    ciou: float | None
    n: int | None = None
    box_accuracy: float | None = None
    parse_failure_rate: float | None = None
    delta_giou: float | None = None
    delta_ciou: float | None = None
    vs: str | None = None
    note: str = ""
    protocol: str = ""
    data: str = ""


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _run_note(run: RunSummary, m: Mapping[str, Any], compared: bool, published: Sequence[PaperResult]) -> str:
    notes = []
    if run.complete is False:
        notes.append("incomplete run")
    if m.get("left_out"):
        notes.append(f"{m['left_out']} samples left out (segmented answer, empty union), as the reference does")
    if not compared and not run.data and any(p.reasoners for p in published):
        same = [p for p in published if p.compares_with(run.reasoner, REFERENCE)]
        if same and run.protocol != REFERENCE:
            notes.append("the paper's figures for this checkpoint follow the reference protocol: "
                         "evaluate with --protocol reference to compare")  # fmt: skip
    return "; ".join(notes)


def _run_rows(run: RunSummary, subset: str, published: Sequence[PaperResult]) -> list[ReportRow]:
    """The run's row (deltas against the same checkpoint under the same protocol) and, beneath it, its
    masks scored by each other protocol's rules."""
    m = run.metrics[subset]
    giou, ciou = _pct(m.get("giou")), _pct(m.get("ciou"))
    same = next((p for p in published if p.compares_with(run.reasoner, run.protocol)), None)
    key = (run.benchmark, run.split, subset)
    rows = [
        ReportRow(
            *key, "run", run.name, giou, ciou,
            n=m.get("n"),
            box_accuracy=_pct(m.get("box_accuracy")),
            parse_failure_rate=_pct(m.get("parse_failure_rate")),
            delta_giou=_minus(giou, same.giou) if same else None,
            delta_ciou=_minus(ciou, same.ciou) if same else None,
            vs=same.method if same else None,
            note=_run_note(run, m, same is not None, published),
            protocol=run.protocol,
            data=run.data,
        )
    ]  # fmt: skip
    for protocol, metrics in run.other.items():
        o = metrics.get(subset)
        if o is not None:
            rows.append(ReportRow(
                *key, "run", f"{run.name} ({IGNORE_WORDS.get(protocol, protocol)})",
                _pct(o.get("giou")), _pct(o.get("ciou")), n=o.get("n"),
                note=f"the same masks scored by the {protocol} protocol's rules", protocol=protocol, data=run.data,
            ))  # fmt: skip
    return rows


def report_rows(runs: Sequence[RunSummary], paper: Sequence[PaperResult] = PAPER_RESULTS) -> list[ReportRow]:
    """The report's rows, grouped by (benchmark, split, subset): the paper's numbers, then the runs'.

    With runs, only the groups the runs measured are shown; without, every published number. Runs on a
    ShapeWorld export form groups of their own, without published numbers.
    """
    keys: set[tuple[str, str, str, str]] = {(r.benchmark, r.split, s, r.data) for r in runs for s in r.metrics}
    if not runs:
        keys = {(p.benchmark, p.split, p.subset, "") for p in paper}
    rows: list[ReportRow] = []
    for key in sorted(keys, key=_sort_key):
        benchmark, split, subset, data = key
        published = [] if data else [p for p in paper if (p.benchmark, p.split, p.subset) == key[:3]]
        rows += [
            ReportRow(*key[:3], "paper", p.method, p.giou, p.ciou, note=p.note,
                      protocol=_EVALUATION_WORDS[p.evaluation])
            for p in published
        ]  # fmt: skip
        for run in runs:
            if (run.benchmark, run.split, run.data) == (benchmark, split, data) and subset in run.metrics:
                rows += _run_rows(run, subset, published)
    return rows


def reproducing_doc() -> Path | None:
    """``docs/reproducing.md`` of a source checkout, or None where segzero was installed without it."""
    path = Path(__file__).resolve().parents[3] / "docs" / "reproducing.md"
    return path if path.is_file() else None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _delta(row: ReportRow, with_vs: bool = True) -> str:
    if row.vs is None:
        return ""
    numbers = f"{_fmt(row.delta_giou, True)} / {_fmt(row.delta_ciou, True)}"
    return f"{numbers} vs {row.vs}" if with_vs else numbers


_COLUMNS = (
    "Benchmark", "Split", "Subset", "Method / run", "Protocol", "gIoU", "cIoU",
    "Δ gIoU / cIoU", "n", "Box acc", "Unparsed", "Note",
)  # fmt: skip


def _cells(row: ReportRow) -> list[str]:
    return [
        row.benchmark + (f" ({row.data})" if row.data else ""),
        row.split,
        row.subset,
        row.name,
        row.protocol,
        _fmt(row.giou),
        _fmt(row.ciou),
        _delta(row),
        "" if row.n is None else str(row.n),
        _fmt(row.box_accuracy) if row.source == "run" else "",
        _fmt(row.parse_failure_rate) if row.source == "run" else "",
        row.note,
    ]


def render_report(rows: Sequence[ReportRow], doc: Path | None = None):
    """A :class:`rich.table.Table` of the rows: one titled section per (benchmark, split, subset, data),
    paper rows dim, run rows bold (their deltas against the published figure of the same checkpoint
    under the same protocol), notes as numbered footnotes in the caption, and ``doc`` (where the
    protocols' differences are listed) named in the caption when given."""
    from rich.table import Table

    notes = list(dict.fromkeys(row.note for row in rows if row.note))
    caption = [f"[{i + 1}] {note}" for i, note in enumerate(notes)]
    if doc is not None:
        caption.append(f"Protocols, their differences and the commands for each of the paper's rows: {doc}")
    table = Table(
        title="Segmentation results (%); each published figure beside the evaluation that measured it",
        caption="\n".join(caption) or None,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("Method / run", overflow="fold")
    for column in _COLUMNS[4:11]:
        table.add_column("Δ vs paper" if column.startswith("Δ") else column, justify="right", no_wrap=True)
    previous = None
    for row in rows:
        key = (row.benchmark, row.split, row.subset, row.data)
        if key != previous:
            if previous is not None:
                table.add_section()
            title = f"{row.benchmark} {row.split}" + ("" if row.subset == ALL else f" ({row.subset})")
            table.add_row(title + (f" - {row.data}, not the paper's data" if row.data else ""), style="bold cyan")
            previous = key
        name = row.name + (f" [{notes.index(row.note) + 1}]" if row.note else "")
        cells = _cells(row)[4:11]
        cells[3] = _delta(row, with_vs=False)
        table.add_row(name, *cells, style="dim" if row.source == "paper" else "bold")
    return table


def render_differences(runs: Sequence[RunSummary]):
    """A :class:`rich.table.Table`: per run, how many samples each protocol difference touched
    (:data:`segzero.evaluation.differences.DIFFERENCES`); None when no run recorded them."""
    from rich.table import Table

    from segzero.evaluation.differences import DIFFERENCES

    counted = [run for run in runs if run.differences]
    if not counted:
        return None
    table = Table(title="Samples each protocol difference touches", title_justify="left")
    table.add_column("Difference")
    for run in counted:
        table.add_column(f"{run.name} ({run.protocol})", justify="right", overflow="fold")
    table.add_column("What differs", overflow="fold")
    for name, what in DIFFERENCES.items():
        table.add_row(name, *(str(run.differences.get(name, 0)) for run in counted), what)
    return table


def rows_to_markdown(rows: Sequence[ReportRow]) -> str:
    """The rows as a GitHub Markdown table."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rows_to_json(rows: Sequence[ReportRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
