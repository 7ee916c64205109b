"""The evaluation runner: every sample of a benchmark split through the pipeline, resumable and shardable.

Every sample goes through :meth:`segzero.pipeline.ReasoningSegmenter.segment_chunks`, batch by batch (a
streaming engine, vllm or openai, is handed the next batches while one is scored); nothing here
re-implements a pipeline step. What it builds on is in three modules beside it: what to evaluate
and reading it (:mod:`segzero.evaluation.benchmarks`), the run folder, its records and summaries
(:mod:`segzero.evaluation.results`), and shards and their merging (:mod:`segzero.evaluation.shards`).
:func:`make_config` says what a run computes; :func:`evaluate` is the loop.

Resume: a run writes one record per sample and fsyncs after every batch, so a killed run loses at
most the batch in flight; running the same command again skips the ids already in
``results.jsonl``. Batches are cut at fixed positions of the (shard's) sample list, so a resumed
run gives the model the same batches as an uninterrupted one, except the batch that was cut.

Failures: a batch that raises is run again one sample at a time; a sample that still fails is
recorded with :func:`~segzero.evaluation.results.error_record` (intersection 0, union = target
area), so no sample is ever dropped. Many failures in a row that are not about the data (a broken
model or device) stop the run instead of scoring the rest of the benchmark as errors.

Sharding: ``shard=(I, N)`` evaluates shard I of N into ``RUN_DIR/shards/I-of-N``
(:func:`~segzero.evaluation.shards.shard_dir`); the last shard to finish merges the run.

Example::

    spec = BenchmarkSpec("reasonseg", "val", "data/ReasonSeg")
    config = make_config(spec, PipelineConfig(reasoner="Ricky06662/Seg-Zero-7B"))
    outcome = evaluate(spec, "runs/reasonseg-val", config, load_pipeline=lambda: pipe)
    outcome.summary["overall"]["giou"]
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segzero.data.common import SkipLog
from segzero.data.records import Sample
from segzero.config import PipelineConfig
from segzero.defaults import NO_TARGET_KEY
from segzero.errors import DatasetError, InputError, SegZeroError
from segzero.protocols import SEGZERO
from segzero.evaluation.benchmarks import (
    GREFCOCO,
    BenchmarkIndex,
    BenchmarkSpec,
    data_origin,
    index_benchmark,
    iter_benchmark,
    resolve_format,
    sample_subset,
)
from segzero.evaluation.results import (
    IDS_FILE,
    SKIPPED_FILE,
    SUBSET_KEY,
    ResultsWriter,
    RunConfig,
    SampleRecord,
    error_record,
    finished_ids,
    read_config,
    record_from_result,
    shard_ids,
    summarize_dir,
    write_json_atomic,
)
from segzero.evaluation.shards import MERGED_FILE, merge_when_complete, shard_dir

#: Errors that say a sample's data is bad (an unreadable image, a mask of the wrong size): they
#: are recorded and the run goes on however many there are.
DATA_ERRORS = (InputError, DatasetError)


def make_config(spec: BenchmarkSpec, pipeline: PipelineConfig | None = None) -> RunConfig:
    """The :class:`RunConfig` of an evaluation: what must agree for results to be resumed or merged.

    ``pipeline``'s settings that shape results (:meth:`~segzero.config.PipelineConfig.run_settings`)
    are recorded with the model's defaults resolved (:meth:`~segzero.config.PipelineConfig.resolved`:
    the reasoner's ``segzero.json``, else the project defaults), as the pipeline will run. ``extra``
    holds the data format (the reference format scores ReasonSeg differently), the subset, the limit,
    the refer split scheme and the split name inside a Hugging Face dataset when one was given, whether
    samples without target pixels are kept, and ``origin`` (``shapeworld`` for a ShapeWorld export,
    never compared with the paper). Where the data and the refer images are is recorded too, so that
    :func:`~segzero.evaluation.benchmarks.samples_for` finds the samples again.

    Raises:
        InputError: a pipeline setting contradicts its protocol (before any model loads).
    """
    pipeline = (pipeline or PipelineConfig()).resolved()
    fmt = resolve_format(spec)
    extra: dict[str, Any] = {"format": fmt, "subset": spec.subset, "limit": spec.limit}
    origin = data_origin(spec, fmt)
    if origin != spec.benchmark:
        extra["origin"] = origin
    if spec.keep_empty:
        extra["keep_empty"] = True
    if fmt == "refer":
        from segzero.data.refer import DEFAULT_SPLIT_BY

        extra["split_by"] = spec.split_by or DEFAULT_SPLIT_BY[spec.benchmark]
    if spec.data_split:
        extra["data_split"] = spec.data_split
    return RunConfig(
        benchmark=spec.benchmark,
        split=spec.split,
        pipeline=pipeline.run_settings(),
        dataset=str(Path(spec.data).expanduser().resolve()),
        images=str(Path(spec.images).expanduser().resolve()) if spec.images else "",
        extra=extra,
    )


@dataclass
class EvalOutcome:
    """What :func:`evaluate` did.

    Attributes:
        run_dir: the run folder; ``out_dir`` is where this process wrote (a shard folder when sharded).
        summary: ``out_dir``'s summary (see :func:`~segzero.evaluation.results.summarize_dir`).
        expected: how many samples ``out_dir`` covers; ``skipped_before``: how many were already done.
        evaluated: samples run now; ``errors``: of those, how many the pipeline failed on.
        reader_skipped: records the dataset reader could not use (not in any figure).
        merged: the merged run's summary when this process completed a sharded run, else None.
        merge_problem: why a finished sharded run could not be merged yet, else None.
    """

    run_dir: Path
    out_dir: Path
    summary: dict[str, Any]
    expected: int
    skipped_before: int
    evaluated: int
    errors: int
    reader_skipped: SkipLog
    merged: dict[str, Any] | None = None
    merge_problem: str | None = None


class EvaluationAborted(SegZeroError):
    """The pipeline failed on many samples in a row for reasons that are not the data."""


#: ``progress(done, total, last_records)``: once with ``done`` 0 when the models are loaded and the first
#: batch starts, then after each batch; ``done`` and ``total`` count this run's samples.
Progress = Callable[[int, int, Sequence[SampleRecord]], None]


def _check_saved_config(out_dir: Path, config: RunConfig) -> None:
    """Refuse early (before loading models) a run folder made with other settings."""
    if read_config(out_dir) is not None:
        ResultsWriter(out_dir, config).close()  # compares, and repairs a torn line; writes nothing new


def _check_pipeline(pipe: Any, config: RunConfig) -> None:
    """Refuse a loaded pipeline whose settings differ from the ones the run records."""
    loaded = getattr(pipe, "config", None)
    if loaded is None:
        return
    settings = loaded.run_settings()
    diff = [k for k in config.pipeline if settings.get(k) != config.pipeline[k]]
    if diff:
        raise InputError(
            "The loaded pipeline runs with "
            + ", ".join(f"{k}={settings.get(k)!r}" for k in diff)
            + " but the run records "
            + ", ".join(f"{k}={config.pipeline[k]!r}" for k in diff)
            + "; build both from the same PipelineConfig."
        )


def _prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Produce ``items`` in a background thread, ``depth`` ahead, so reading and building ground
    truth for the next batch overlaps the models' work on this one. Exceptions are re-raised here."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((done, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            box.put((done, exc))

    thread = threading.Thread(target=work, name="segzero-eval-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = box.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()


def _aligned_batches(
    samples: Iterable[Sample], position: dict[str, int], done: set[str], size: int
) -> Iterator[list[Sample]]:
    """The samples still to do, grouped by the fixed batch (``position // size``) they belong to."""
    batch: list[Sample] = []
    key = None
    for sample in samples:
        pos = position.get(sample.id)
        if pos is None or sample.id in done:
            continue
        if batch and pos // size != key:
            yield batch
            batch = []
        key = pos // size
        batch.append(sample)
    if batch:
        yield batch


def _extra(sample: Sample, benchmark: str) -> dict[str, Any]:
    """The record's ``extra``: the sample's subset, and whether it matches nothing wherever the data says
    (gRefCOCO always does; a sample that does not say is a target sample there)."""
    extra: dict[str, Any] = {}
    subset = sample_subset(sample, benchmark)
    if subset is not None:
        extra[SUBSET_KEY] = subset
    if NO_TARGET_KEY in sample.extra or benchmark == GREFCOCO:
        extra[NO_TARGET_KEY] = bool(sample.extra.get(NO_TARGET_KEY))
    return extra


def _failed(sample: Sample, benchmark: str, exc: BaseException | str, protocol: str) -> tuple[SampleRecord, bool]:
    record = error_record(
        sample.id, sample.request, sample.mask, exc, sample.boxes or None, protocol=protocol,
        extra=_extra(sample, benchmark),
    )  # fmt: skip
    return record, not isinstance(exc, DATA_ERRORS)


def _score(sample: Sample, result: Any, benchmark: str, keep_masks: bool, pipe: Any) -> tuple[SampleRecord, bool]:
    protocol = _protocol(pipe)
    if getattr(result, "error", None):  # the reasoner engine gave up on this request after its retries
        return _failed(sample, benchmark, result.error, protocol)
    try:
        record = record_from_result(
            sample.id,
            result,
            sample.mask,
            sample.boxes or None,
            protocol=protocol,
            frame=getattr(pipe, "answer_frame", None) or getattr(pipe, "frame", None),
            keep_mask=keep_masks,
            extra=_extra(sample, benchmark),
        )
    except Exception as exc:  # noqa: BLE001 - scoring a bad sample must not drop the others
        return _failed(sample, benchmark, exc, protocol)
    return record, False


def _protocol(pipe: Any) -> str:
    config = getattr(pipe, "config", None)
    return getattr(config, "protocol", SEGZERO)


def run_batch(
    pipe: Any, batch: Sequence[Sample], benchmark: str, keep_masks: bool = True
) -> list[tuple[SampleRecord, bool]]:
    """Score a batch through ``pipe.segment_batch``: one record per sample, in order, by the rules of the
    pipeline's protocol (both protocols' scores are kept in each record).

    If the batch raises, its samples are run one at a time so only the bad one fails; a sample
    that fails alone gets an error record.

    Returns:
        ``(record, systemic)`` per sample; ``systemic`` is True for a failure not explained by
        the sample's data (see :data:`DATA_ERRORS`).
    """
    try:
        results = pipe.segment_batch([s.image for s in batch], [s.request for s in batch])
    except Exception as exc:  # noqa: BLE001 - every sample keeps a record, whatever failed
        if len(batch) == 1:
            return [_failed(batch[0], benchmark, exc, _protocol(pipe))]
        return [pair for sample in batch for pair in run_batch(pipe, [sample], benchmark, keep_masks)]
    return [_score(s, r, benchmark, keep_masks, pipe) for s, r in zip(batch, results)]


def _scored_batches(
    pipe: Any, batches: Iterator[list[Sample]], benchmark: str, keep_masks: bool
) -> Iterator[list[tuple[SampleRecord, bool]]]:
    """:func:`run_batch` of each batch, in order; a pipeline with ``segment_chunks`` hands a streaming engine
    the next batches while this one is scored. A batch that raised is run again one sample at a time, as
    :func:`run_batch` does."""
    if not hasattr(pipe, "segment_chunks"):
        for batch in batches:
            yield run_batch(pipe, batch, benchmark, keep_masks)
        return
    handed: deque[list[Sample]] = deque()

    def chunks() -> Iterator[tuple[list[Any], list[str]]]:
        for batch in batches:
            handed.append(batch)
            yield [s.image for s in batch], [s.request for s in batch]

    for results in pipe.segment_chunks(chunks()):
        batch = handed.popleft()
        if isinstance(results, Exception) and len(batch) == 1:
            yield [_failed(batch[0], benchmark, results, _protocol(pipe))]
        elif isinstance(results, Exception):  # one sample at a time, so only the bad one fails
            yield [pair for sample in batch for pair in run_batch(pipe, [sample], benchmark, keep_masks)]
        else:
            yield [_score(s, r, benchmark, keep_masks, pipe) for s, r in zip(batch, results)]


def evaluate(
    spec: BenchmarkSpec,
    run_dir: str | os.PathLike[str],
    config: RunConfig,
    load_pipeline: Callable[[], Any],
    *,
    shard: tuple[int, int] | None = None,
    batch_size: int | None = None,
    retry_errors: bool = False,
    keep_masks: bool = True,
    progress: Progress | None = None,
    index: BenchmarkIndex | None = None,
    max_failures_in_row: int | None = None,
) -> EvalOutcome:
    """Evaluate a benchmark split (or one shard of it) into ``run_dir``, resuming what is there.

    Args:
        spec: the benchmark split and its data.
        run_dir: the run folder (a shard writes to ``run_dir/shards/I-of-N``).
        config: from :func:`make_config`.
        load_pipeline: builds the :class:`~segzero.pipeline.ReasoningSegmenter`; not called when
            nothing is left to do.
        shard: ``(I, N)`` to run shard I of N.
        batch_size: samples per ``segment_batch`` call (default: the pipeline's ``batch_size``).
        retry_errors: run again the samples a previous attempt recorded as errors.
        keep_masks: keep predicted masks as RLE in the records (``segzero visualize`` draws them).
        progress: called when the first batch starts (``done`` 0, ``total`` known) and after each batch.
        index: the benchmark's ids if already read (:func:`~segzero.evaluation.benchmarks.index_benchmark`).
        max_failures_in_row: stop after this many consecutive non-data failures (default
            ``max(16, 2 * batch_size)``).

    Returns:
        An :class:`EvalOutcome`; with ``shard`` and every shard complete, the run is merged too.

    Raises:
        InputError: ``run_dir`` holds a run with other settings, or another process writes it.
        DatasetError: the data is missing or malformed.
        EvaluationAborted: the pipeline kept failing on samples whatever their data.
    """
    run_dir = Path(run_dir)
    index = index or index_benchmark(spec)
    if shard is not None:
        config = RunConfig.from_json({**config.to_json(), "shard": f"{shard[0]}/{shard[1]}"})
        out_dir = shard_dir(run_dir, *shard)
        mine = shard_ids(index.ids, *shard)
    else:
        if (run_dir / MERGED_FILE).is_file():
            raise InputError(
                f"{run_dir} holds a merged sharded run; resume it with the same --shard, "
                "or choose another output folder."
            )
        out_dir, mine = run_dir, shard_ids(index.ids, 0, 1)
    _check_saved_config(out_dir, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids_file = {"benchmark": spec.benchmark, "split": spec.split, "ids": index.ids}
    write_json_atomic(out_dir / IDS_FILE, ids_file)
    index.skipped.write_jsonl(out_dir / SKIPPED_FILE)

    done = finished_ids(out_dir, retry_errors=retry_errors) & set(mine)
    todo = [i for i in mine if i not in done]
    evaluated = errors = 0
    if not todo:
        ResultsWriter(out_dir, config).close()  # an empty shard records its run.json like the others
    else:
        pipe = load_pipeline()
        _check_pipeline(pipe, config)
        size = batch_size or int(getattr(pipe, "batch_size", 8))
        limit = max_failures_in_row or max(16, 2 * size)
        position = {sample_id: n for n, sample_id in enumerate(mine)}
        in_row = 0
        batches = _prefetch(_aligned_batches(iter_benchmark(spec, SkipLog()), position, done, size))
        if progress is not None:
            progress(0, len(todo), [])
        with ResultsWriter(out_dir, config) as writer, contextlib.closing(batches):
            for scored in _scored_batches(pipe, batches, spec.benchmark, keep_masks):
                for record, systemic in scored:
                    writer.write(record)
                    in_row = in_row + 1 if systemic else 0
                writer.flush_batch()
                evaluated += len(scored)
                errors += sum(1 for record, _ in scored if record.error)
                if progress is not None:
                    progress(evaluated, len(todo), [record for record, _ in scored])
                if in_row >= limit:
                    last = next(r.error for r, s in reversed(scored) if s)
                    raise EvaluationAborted(
                        f"The pipeline failed on {in_row} samples in a row ({last}); fix the cause and "
                        "run the same command with --retry-errors to redo them."
                    )

    summary = summarize_dir(out_dir, mine, index.skipped)
    outcome = EvalOutcome(
        run_dir=run_dir,
        out_dir=out_dir,
        summary=summary,
        expected=len(mine),
        skipped_before=len(done),
        evaluated=evaluated,
        errors=errors,
        reader_skipped=index.skipped,
    )
    if shard is not None and summary.get("complete"):
        try:
            outcome.merged = merge_when_complete(run_dir, shard[1], index.ids)
        except SegZeroError as exc:
            outcome.merge_problem = str(exc)
    return outcome


__all__ = [
    "DATA_ERRORS",
    "EvalOutcome",
    "EvaluationAborted",
    "Progress",
    "evaluate",
    "make_config",
    "run_batch",
]
