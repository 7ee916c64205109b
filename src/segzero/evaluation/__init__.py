"""Evaluation: benchmark splits through the pipeline, per-sample results on disk, reports against the paper.

One module per job:

- ``metrics``: gIoU, cIoU and box accuracy by each protocol's rules; pure functions on numpy arrays.
- ``differences``: which differences between the protocols touch a sample; pure.
- ``results``: the run folder (``run.json``, ``results.jsonl``, ``summary.json``, ...), its
  records, shard ids and summaries; resumable and mergeable.
- ``benchmarks``: what to evaluate (:class:`BenchmarkSpec`), the dataset formats and their
  detection, reading a split's samples.
- ``runner``: :func:`make_config` and :func:`evaluate`, the loop that drives the pipeline.
- ``shards``: launched processes' shards, shard folders, merging a sharded run.
- ``paper``: the published numbers; ``report``: runs side by side with them.
- ``contact_sheet``: a run's worst and best samples drawn (PIL).

Importing the package is cheap: names load from their module on first use, so the pure half
(metrics, results, paper, report) imports without PIL or torch. A run::

    spec = BenchmarkSpec("reasonseg", "val", "data/ReasonSeg")
    outcome = evaluate(spec, "runs/reasonseg-val", make_config(spec), load_pipeline=lambda: pipe)
    report_rows([load_run_summary("runs/reasonseg-val")])
"""

from __future__ import annotations

from typing import Any

#: Each public name, by the module that defines it.
_EXPORTS = {
    "metrics": ("IoUAccumulator", "box_scores", "counted", "iou_from_terms", "sample_iou", "sample_iou_terms"),
    "differences": ("DIFFERENCES", "sample_differences"),
    "results": (
        "ResultsWriter", "RunConfig", "SampleRecord", "error_record", "finished_ids", "load_results",
        "merge_shards", "parse_shard", "protocol_scores", "read_config", "record_from_result", "shard_ids", "summarize",
        "summarize_dir", "summarize_run",
    ),
    "benchmarks": ("BenchmarkSpec", "detect_format", "index_benchmark", "iter_benchmark", "samples_for"),
    "runner": ("EvalOutcome", "evaluate", "make_config", "run_batch"),
    "shards": ("launched_shard", "merge_run"),
    "paper": ("PAPER_RESULTS", "PaperResult", "paper_numbers"),
    "report": (
        "ReportRow", "RunSummary", "load_run_summary", "render_differences", "render_report", "report_rows",
        "reproducing_doc", "rows_to_markdown", "run_summary",
    ),
    "contact_sheet": ("render_contact_sheet", "sample_loader"),
}  # fmt: skip
_LAZY = {name: f"{__name__}.{module}" for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segzero.evaluation' has no attribute {name!r}")


__all__ = sorted(_LAZY)
