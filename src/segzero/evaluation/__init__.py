"""Evaluation: metrics, per-sample results on disk, reports against the paper, contact sheets.

The pure, model-free half lives here; the runner that drives the pipeline over a benchmark
builds on it::

    config = RunConfig(benchmark="reasonseg", split="val", dataset="data/reasonseg")
    with ResultsWriter(out_dir, config) as writer:
        todo = [s for s in samples if s.id not in finished_ids(out_dir)]
        for batch in batches(todo):
            for sample, result in zip(batch, pipe.segment_batch(...)):
                writer.write(record_from_result(sample.id, result, sample.mask, sample.boxes))
            writer.flush_batch()
    summarize_run(out_dir, expected_ids=[s.id for s in samples])
"""

from __future__ import annotations

from segzero.evaluation.contact_sheet import render_contact_sheet, sample_loader
from segzero.evaluation.metrics import IoUAccumulator, box_scores, iou_from_terms, sample_iou_terms
from segzero.evaluation.report import (
    PAPER_RESULTS,
    PaperResult,
    ReportRow,
    RunSummary,
    load_run_summary,
    render_report,
    report_rows,
    rows_to_markdown,
    run_summary,
)
from segzero.evaluation.results import (
    ResultsWriter,
    RunConfig,
    SampleRecord,
    error_record,
    finished_ids,
    load_results,
    merge_shards,
    parse_shard,
    read_config,
    record_from_result,
    shard_ids,
    summarize,
    summarize_run,
)

__all__ = [
    "IoUAccumulator",
    "PAPER_RESULTS",
    "PaperResult",
    "ReportRow",
    "ResultsWriter",
    "RunConfig",
    "RunSummary",
    "SampleRecord",
    "box_scores",
    "error_record",
    "finished_ids",
    "iou_from_terms",
    "load_results",
    "load_run_summary",
    "merge_shards",
    "parse_shard",
    "read_config",
    "record_from_result",
    "render_contact_sheet",
    "render_report",
    "report_rows",
    "rows_to_markdown",
    "run_summary",
    "sample_iou_terms",
    "sample_loader",
    "shard_ids",
    "summarize",
    "summarize_run",
]
