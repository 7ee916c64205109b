"""Evaluation runs side by side with the published numbers (SPEC section 8).

The published numbers are :data:`segzero.evaluation.paper.PAPER_RESULTS`. :func:`report_rows`
lines runs up with them by (benchmark, split, subset); :func:`render_report` draws the rows as a
rich table and :func:`rows_to_markdown` as Markdown. All metrics in rows are percentages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segzero.errors import DatasetError, InputError
from segzero.evaluation.paper import ALL, PAPER_RESULTS, PaperResult
from segzero.evaluation.results import SUMMARY_FILE, RunConfig, results_path, summarize_run

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


def _sort_key(key: tuple[str, str, str]) -> tuple:
    benchmark, split, subset = key
    return _rank(benchmark, _BENCHMARK_ORDER), _rank(split, _SPLIT_ORDER), _rank(subset, _SUBSET_ORDER)


@dataclass(frozen=True)
class RunSummary:
    """One evaluation run's summary, as the report reads it.

    Attributes:
        name: how the run is labelled (the path it was given as).
        benchmark, split: from its configuration, canonically spelled.
        reasoner: the reasoner it ran, or None if unknown.
        metrics: subset name (``"all"`` for the whole split) -> :meth:`IoUAccumulator.summary` dict.
        complete: whether every benchmark sample was scored; None when unknown.
    """

    name: str
    benchmark: str
    split: str
    reasoner: str | None
    metrics: dict[str, dict[str, Any]]
    complete: bool | None = None


def run_summary(summary: Mapping[str, Any], name: str) -> RunSummary:
    """The :class:`RunSummary` of a ``summary.json`` dict (:func:`segzero.evaluation.results.summarize_run`).

    A run of the whole split reports its ``overall`` figures as subset ``"all"`` and each of its
    ``subsets`` beside them. A run of one ReasonSeg subset (``segzero eval --subset short|long``)
    measured only that subset: its ``overall`` figures are that subset's, reported under its name
    and never as the whole split's (they are not comparable with the paper's whole-split numbers).
    """
    config = summary.get("config") or {}
    subset = (config.get("extra") or {}).get("subset") or ALL  # what make_config records
    overall = summary["overall"]
    metrics = {ALL: overall, **summary.get("subsets", {})} if subset == ALL else {subset: overall}
    return RunSummary(
        name=name,
        benchmark=_benchmark(config.get("benchmark", "")),
        split=_split(config.get("split", "")),
        reasoner=RunConfig.from_json(config).pipeline.get("reasoner") if config else None,
        metrics=metrics,
        complete=summary.get("complete"),
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
        delta_giou, delta_ciou: run minus the paper's number for the same released reasoner.
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


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _run_row(run: RunSummary, subset: str, paper: Sequence[PaperResult]) -> ReportRow:
    m = run.metrics[subset]
    giou, ciou = _pct(m.get("giou")), _pct(m.get("ciou"))
    same = next((p for p in paper if run.reasoner and p.reasoner == run.reasoner), None)
    return ReportRow(
        run.benchmark,
        run.split,
        subset,
        "run",
        run.name,
        giou,
        ciou,
        n=m.get("n"),
        box_accuracy=_pct(m.get("box_accuracy")),
        parse_failure_rate=_pct(m.get("parse_failure_rate")),
        delta_giou=_minus(giou, same.giou) if same else None,
        delta_ciou=_minus(ciou, same.ciou) if same else None,
        vs=same.method if same else None,
        note="" if run.complete in (None, True) else "incomplete run",
    )


def report_rows(runs: Sequence[RunSummary], paper: Sequence[PaperResult] = PAPER_RESULTS) -> list[ReportRow]:
    """The report's rows, grouped by (benchmark, split, subset): the paper's numbers, then the runs'.

    With runs, only the groups the runs measured are shown; without, every published number.
    """
    keys: set[tuple[str, str, str]] = {(r.benchmark, r.split, s) for r in runs for s in r.metrics}
    if not runs:
        keys = {(p.benchmark, p.split, p.subset) for p in paper}
    rows: list[ReportRow] = []
    for key in sorted(keys, key=_sort_key):
        published = [p for p in paper if (p.benchmark, p.split, p.subset) == key]
        rows += [ReportRow(*key, "paper", p.method, p.giou, p.ciou, note=p.note) for p in published]
        rows += [
            _run_row(r, key[2], published)
            for r in runs
            if (r.benchmark, r.split) == key[:2] and key[2] in r.metrics
        ]
    return rows


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
    "Benchmark", "Split", "Subset", "Method / run", "gIoU", "cIoU",
    "Δ gIoU / cIoU", "n", "Box acc", "Unparsed", "Note",
)  # fmt: skip


def _cells(row: ReportRow) -> list[str]:
    return [
        row.benchmark,
        row.split,
        row.subset,
        row.name,
        _fmt(row.giou),
        _fmt(row.ciou),
        _delta(row),
        "" if row.n is None else str(row.n),
        _fmt(row.box_accuracy) if row.source == "run" else "",
        _fmt(row.parse_failure_rate) if row.source == "run" else "",
        row.note,
    ]


def render_report(rows: Sequence[ReportRow]):
    """A :class:`rich.table.Table` of the rows: one titled section per (benchmark, split, subset),
    paper rows dim, run rows bold (their deltas against the paper's row for the same reasoner),
    notes as numbered footnotes in the caption."""
    from rich.table import Table

    notes = list(dict.fromkeys(row.note for row in rows if row.note))
    table = Table(
        title="Segmentation results (%); paper numbers from SPEC section 8",
        caption="\n".join(f"[{i + 1}] {note}" for i, note in enumerate(notes)) or None,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("Method / run", overflow="fold")
    for column in _COLUMNS[4:10]:
        table.add_column("Δ vs paper" if column.startswith("Δ") else column, justify="right", no_wrap=True)
    previous = None
    for row in rows:
        key = (row.benchmark, row.split, row.subset)
        if key != previous:
            if previous is not None:
                table.add_section()
            table.add_row(f"{row.benchmark} {row.split}" + ("" if row.subset == ALL else f" ({row.subset})"),
                          style="bold cyan")
            previous = key
        name = row.name + (f" [{notes.index(row.note) + 1}]" if row.note else "")
        cells = _cells(row)[4:10]
        cells[2] = _delta(row, with_vs=False)
        table.add_row(name, *cells, style="dim" if row.source == "paper" else "bold")
    return table


def rows_to_markdown(rows: Sequence[ReportRow]) -> str:
    """The rows as a GitHub Markdown table."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rows_to_json(rows: Sequence[ReportRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
