"""The evaluation runner: every sample of a benchmark split through the pipeline, resumable and shardable.

Every sample goes through :meth:`segzero.pipeline.ReasoningSegmenter.segment_batch`; nothing here
re-implements a pipeline step. The pieces it builds on (records, ``results.jsonl``, ``run.json``,
shards, summaries) are in :mod:`segzero.evaluation.results`.

A run folder ``RUN_DIR``::

    run.json  results.jsonl  summary.json   see segzero.evaluation.results
    ids.json        every sample id of the benchmark split, in reader order (what "complete" means)
    skipped.jsonl   records the dataset reader could not use, with why (not in the figures)
    shards/I-of-N/  a sharded run: one such folder per shard; merge_run writes the merged run into
                    RUN_DIR and names its shards in merged.json

Resume: a run writes one record per sample and fsyncs after every batch, so a killed run loses at
most the batch in flight; running the same command again skips the ids already in
``results.jsonl``. Batches are cut at fixed positions of the (shard's) sample list, so a resumed
run gives the model the same batches as an uninterrupted one, except the batch that was cut.

Failures: a batch that raises is run again one sample at a time; a sample that still fails is
recorded with :func:`~segzero.evaluation.results.error_record` (intersection 0, union = target
area), so no sample is ever dropped. Many failures in a row that are not about the data (a broken
model or device) stop the run instead of scoring the rest of the benchmark as errors.

Sharding: ``shard=(I, N)`` evaluates :func:`~segzero.evaluation.results.shard_ids` ``I`` of ``N``
into ``RUN_DIR/shards/I-of-N``; under ``accelerate launch`` (or ``torchrun``) each process takes
shard ``RANK/WORLD_SIZE`` (:func:`launched_shard`). The last shard to finish merges the run.

Example::

    spec = BenchmarkSpec("reasonseg", "val", "data/ReasonSeg")
    config = make_config(spec, PipelineConfig(reasoner="Ricky06662/Seg-Zero-7B"))
    outcome = evaluate(spec, "runs/reasonseg-val", config, load_pipeline=lambda: pipe)
    outcome.summary["overall"]["giou"]
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from segzero.data.common import SkipLog
from segzero.data.records import Sample
from segzero.config import PipelineConfig
from segzero.errors import DatasetError, InputError, SegZeroError
from segzero.evaluation.results import (
    RESULTS_FILE,
    RUN_FILE,
    SUBSET_KEY,
    SUMMARY_FILE,
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
    summarize_run,
    write_json_atomic,
)

#: Benchmarks and the splits they are evaluated on (SPEC section 7).
BENCHMARK_SPLITS: dict[str, tuple[str, ...]] = {
    "reasonseg": ("val", "test"),
    "refcoco": ("val", "testA", "testB"),
    "refcoco+": ("val", "testA", "testB"),
    "refcocog": ("val", "test"),
}

#: Dataset formats ``--data`` can hold; ``auto`` tells them apart by their files.
DATA_FORMATS = ("auto", "reasonseg", "refer", "prepared", "reference-hf")

#: ReasonSeg subsets: all requests, short queries (``is_sentence`` false), long queries (true).
SUBSETS = ("all", "short", "long")

IDS_FILE = "ids.json"
SKIPPED_FILE = "skipped.jsonl"
MERGED_FILE = "merged.json"
SHARDS_DIR = "shards"

#: Errors that say a sample's data is bad (an unreadable image, a mask of the wrong size): they
#: are recorded and the run goes on however many there are.
DATA_ERRORS = (InputError, DatasetError)


# ---------------------------------------------------------------------------------------------
# What to evaluate


@dataclass
class BenchmarkSpec:
    """A benchmark split and where its data is.

    Attributes:
        benchmark: ``reasonseg``, ``refcoco``, ``refcoco+`` or ``refcocog``.
        split: one of :data:`BENCHMARK_SPLITS` for the benchmark (``testa`` is read as ``testA``).
        data: LISA's ReasonSeg folder, a ``refer`` data folder, a prepared dataset
            (``segzero prepare``) or a dataset in the reference release's Hugging Face format.
        format: one of :data:`DATA_FORMATS`; ``auto`` decides from the files in ``data``.
        subset: ReasonSeg only: ``all``, ``short`` or ``long``.
        limit: evaluate only the first ``limit`` samples (for quick checks).
        split_by / images: ``refer`` only: the split scheme (umd, unc, google) and the COCO images folder.
        data_split: the split's name inside a Hugging Face dataset, when it differs from ``split``.
    """

    benchmark: str
    split: str
    data: str | os.PathLike[str]
    format: str = "auto"
    subset: str = "all"
    limit: int | None = None
    split_by: str | None = None
    images: str | os.PathLike[str] | None = None
    data_split: str | None = None

    def __post_init__(self) -> None:
        self.benchmark = self.benchmark.strip().lower()
        if self.benchmark not in BENCHMARK_SPLITS:
            raise InputError(
                f"Unknown benchmark {self.benchmark!r}; choose one of {', '.join(BENCHMARK_SPLITS)}."
            )
        splits = BENCHMARK_SPLITS[self.benchmark]
        canonical = {s.lower(): s for s in splits}.get(self.split.strip().lower())
        if canonical is None:
            raise InputError(
                f"{self.benchmark} has no split {self.split!r}; it is evaluated on {', '.join(splits)}."
            )
        self.split = canonical
        if self.format not in DATA_FORMATS:
            raise InputError(f"Unknown data format {self.format!r}; choose one of {', '.join(DATA_FORMATS)}.")
        if self.subset not in SUBSETS:
            raise InputError(f"Unknown subset {self.subset!r}; choose one of {', '.join(SUBSETS)}.")
        if self.subset != "all" and self.benchmark != "reasonseg":
            raise InputError(f"--subset {self.subset} applies to ReasonSeg only, not to {self.benchmark}.")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1, got {self.limit}.")

    @property
    def name(self) -> str:
        """``benchmark-split`` (plus ``-subset`` for a ReasonSeg subset), e.g. for a default run folder."""
        return f"{self.benchmark}-{self.split}" + ("" if self.subset == "all" else f"-{self.subset}")


def make_config(spec: BenchmarkSpec, pipeline: PipelineConfig | None = None) -> RunConfig:
    """The :class:`RunConfig` of an evaluation: what must agree for results to be resumed or merged.

    ``pipeline``'s settings that shape results (:meth:`~segzero.config.PipelineConfig.run_settings`)
    are recorded with the model's defaults resolved (:meth:`~segzero.config.PipelineConfig.resolved`:
    the reasoner's ``segzero.json``, else the project defaults), as the pipeline will run. ``extra``
    holds the data format (the reference format scores ReasonSeg differently), the subset, the limit,
    the refer split scheme and the split name inside a Hugging Face dataset when one was given. Where
    the data and the refer images are is recorded too, so that :func:`samples_for` finds the samples
    again.
    """
    pipeline = (pipeline or PipelineConfig()).resolved()
    fmt = resolve_format(spec)
    extra: dict[str, Any] = {"format": fmt, "subset": spec.subset, "limit": spec.limit}
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


def _hf_columns(path: Path) -> list[str] | None:
    """Column names of a ``save_to_disk`` dataset folder (Dataset or DatasetDict), None if it is not one."""
    info = None
    if (path / "state.json").is_file():
        info = path / "dataset_info.json"
    elif (path / "dataset_dict.json").is_file():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
            info = path / splits[0] / "dataset_info.json"
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return []
    if info is None:
        return None
    try:
        return list(json.loads(info.read_text())["features"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def detect_format(data: str | os.PathLike[str], benchmark: str) -> str:
    """Which of :data:`DATA_FORMATS` (other than auto) the files at ``data`` are in.

    Raises:
        DatasetError: ``data`` is missing or holds none of them.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetError(f"--data {path} does not exist; point it at the {benchmark} data.")
    if path.is_file():
        if path.suffix in (".parquet", ".arrow"):
            return "reference-hf"
        raise DatasetError(f"--data {path} is a file; give a dataset folder, or a .parquet / .arrow file.")
    if any(path.glob("refs(*).p")) or any((path / benchmark).glob("refs(*).p")):
        return "refer"
    columns = _hf_columns(path)
    if columns is not None:
        return "prepared" if "reasoner_boxes" in columns else "reference-hf"
    if any(path.glob("*.json")) or any(any((path / s).glob("*.json")) for s in ("val", "test", "train")):
        return "reasonseg"
    if any(path.rglob("*.parquet")):
        return "reference-hf"
    raise DatasetError(
        f"--data {path} holds no dataset segzero can read: a ReasonSeg folder (NAME.jpg + NAME.json), "
        "a refer folder (refs(...).p + instances.json), a prepared dataset or a Hugging Face dataset."
    )


def resolve_format(spec: BenchmarkSpec) -> str:
    """``spec.format``, detected when ``auto``, checked against the benchmark.

    Raises:
        DatasetError: the format cannot be detected. InputError: it does not fit the benchmark.
    """
    fmt = detect_format(spec.data, spec.benchmark) if spec.format == "auto" else spec.format
    if fmt == "refer" and spec.benchmark == "reasonseg":
        raise InputError(f"{spec.data} holds refer files (RefCOCO/+/g), not ReasonSeg; check --benchmark.")
    if fmt == "reasonseg" and spec.benchmark != "reasonseg":
        raise InputError(f"{spec.data} is a ReasonSeg folder, not {spec.benchmark}; check --benchmark.")
    return fmt


def _dataset_split(spec: BenchmarkSpec) -> str | None:
    """The split name to ask a Hugging Face dataset for: ``data_split``, else ``split`` where the
    dataset lists it, else None (the dataset's only split)."""
    if spec.data_split:
        return spec.data_split
    listing = Path(spec.data) / "dataset_dict.json"
    if listing.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if spec.split in json.loads(listing.read_text())["splits"]:
                return spec.split
    return None


def sample_subset(sample: Sample, benchmark: str) -> str | None:
    """A ReasonSeg sample's subset: ``long`` for sentence queries, ``short`` otherwise; None if unknown."""
    if benchmark != "reasonseg" or sample.is_sentence is None:
        return None
    return "long" if sample.is_sentence else "short"


def iter_benchmark(spec: BenchmarkSpec, report: SkipLog | None = None) -> Iterator[Sample]:
    """The samples of the benchmark split, in reader order, subset and limit applied.

    Reading goes through :func:`segzero.data.iter_samples`; records a reader cannot use are
    passed to ``report``.

    Raises:
        DatasetError: the data is missing or malformed, a sample has no ground-truth mask, or a
            subset was asked of a dataset that does not mark long queries.
    """
    from segzero.data import iter_samples

    fmt = resolve_format(spec)
    report = report if report is not None else SkipLog()
    if fmt == "refer":
        samples = iter_samples(
            spec.benchmark, spec.data, spec.split, report=report, split_by=spec.split_by, images=spec.images
        )
    elif fmt == "reasonseg":
        samples = iter_samples("reasonseg", spec.data, spec.split, report=report)
    else:
        samples = iter_samples(fmt, spec.data, _dataset_split(spec), report=report)

    def checked() -> Iterator[Sample]:
        for sample in samples:
            if sample.mask is None:
                raise DatasetError(
                    f"Sample {sample.id} of {spec.data} has no ground-truth mask, so it cannot be evaluated."
                )
            if spec.subset != "all":
                subset = sample_subset(sample, spec.benchmark)
                if subset is None:
                    raise DatasetError(
                        f"{spec.data} does not say which requests are long (is_sentence), so the "
                        f"{spec.subset} subset cannot be chosen; use --subset all."
                    )
                if subset != spec.subset:
                    continue
            yield sample

    return islice(checked(), spec.limit)


def spec_from_config(config: RunConfig) -> BenchmarkSpec:
    """The :class:`BenchmarkSpec` a run was made with, from its ``run.json`` configuration."""
    extra = config.extra or {}
    return BenchmarkSpec(
        benchmark=config.benchmark,
        split=config.split,
        data=config.dataset,
        format=extra.get("format", "auto"),
        subset=extra.get("subset", "all"),
        limit=extra.get("limit"),
        split_by=extra.get("split_by"),
        images=config.images or None,
        data_split=extra.get("data_split"),
    )


def samples_for(config: RunConfig, ids: Iterable[str]) -> dict[str, Sample]:
    """Reload some samples of a run (e.g. for a contact sheet) from the dataset it was made on,
    whatever its format, in one pass that keeps only those.

    Raises:
        InputError: the run does not record where its dataset is.
        DatasetError: the dataset is gone, or some ids are not in it any more.
    """
    if not config.dataset:
        raise InputError(
            "The run does not record where its dataset is (run.json 'dataset'), "
            "so its samples cannot be reloaded."
        )
    wanted = set(ids)
    found = {s.id: s for s in iter_benchmark(spec_from_config(config)) if s.id in wanted}
    missing = wanted - found.keys()
    if missing:
        raise DatasetError(
            f"{len(missing)} samples of the run are not in {config.dataset} any more, "
            f"e.g. {sorted(missing)[0]!r}; was the dataset moved or changed?"
        )
    return found


@dataclass
class BenchmarkIndex:
    """The first pass over a benchmark: its sample ids (reader order) and what the reader skipped."""

    ids: list[str]
    skipped: SkipLog


def index_benchmark(spec: BenchmarkSpec) -> BenchmarkIndex:
    """Read the benchmark once for its ids (sharding and completeness need them all).

    Raises:
        DatasetError: no usable sample, a repeated id, or what :func:`iter_benchmark` raises.
    """
    report = SkipLog()
    ids = [sample.id for sample in iter_benchmark(spec, report)]
    if not ids:
        why = f" ({report.n_skipped} records skipped: {_kinds(report)})" if report.n_skipped else ""
        raise DatasetError(
            f"{spec.data} gave no {spec.name} sample to evaluate{why}; check --data and --split."
        )
    shard_ids(ids, 0, 1)  # refuses repeated ids, which would make "each sample once" meaningless
    return BenchmarkIndex(ids, report)


def _kinds(report: SkipLog) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in report.kinds.most_common())


# ---------------------------------------------------------------------------------------------
# Shards and launchers


@dataclass(frozen=True)
class Launch:
    """Where this process stands under a multi-process launcher.

    Attributes:
        index, count: this process's rank and the number of processes (its shard is index/count).
        local_rank: its rank on this machine (which local GPU it takes).
    """

    index: int
    count: int
    local_rank: int


def launched_shard(environ: dict[str, str] | None = None) -> Launch | None:
    """This process's place under ``accelerate launch`` / ``torchrun`` (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), or None for a single process.

    The environment is read directly rather than through ``accelerate.PartialState`` so that no
    process group is started: the shards never talk to each other, and a collective barrier would
    time out while the slowest shard is still evaluating.
    """
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("WORLD_SIZE", "1"))
        index = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(index)))
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; check the launcher.") from None
    if count <= 1:
        return None
    if not 0 <= index < count:
        raise InputError(f"RANK={index} is not below WORLD_SIZE={count}; check the launcher.")
    return Launch(index, count, local_rank)


def launch_device(device: str | None, launch: Launch | None) -> str | None:
    """The device a launched process uses: its local GPU unless told otherwise.

    ``None`` or ``"cuda"`` under a launcher become ``cuda:LOCAL_RANK`` when CUDA is available;
    anything else (``cpu``, ``cuda:3``) is kept as given.
    """
    if launch is None or device not in (None, "cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{launch.local_rank % max(torch.cuda.device_count(), 1)}"
    return device


def shard_dir(run_dir: str | os.PathLike[str], index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of a run is written: ``RUN_DIR/shards/I-of-N``."""
    return Path(run_dir) / SHARDS_DIR / f"{index}-of-{count}"


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class EvalOutcome:
    """What :func:`evaluate` did.

    Attributes:
        run_dir: the run folder; ``out_dir`` is where this process wrote (a shard folder when sharded).
        summary: ``out_dir``'s summary (see :func:`summarize_dir`).
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


#: ``progress(done, total, last_records)`` after each batch; ``done`` counts this run's samples.
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
    subset = sample_subset(sample, benchmark)
    return {} if subset is None else {SUBSET_KEY: subset}


def _failed(sample: Sample, benchmark: str, exc: BaseException) -> tuple[SampleRecord, bool]:
    record = error_record(
        sample.id, sample.request, sample.mask, exc, sample.boxes or None, extra=_extra(sample, benchmark)
    )
    return record, not isinstance(exc, DATA_ERRORS)


def _score(sample: Sample, result: Any, benchmark: str, keep_masks: bool) -> tuple[SampleRecord, bool]:
    try:
        record = record_from_result(
            sample.id,
            result,
            sample.mask,
            sample.boxes or None,
            keep_mask=keep_masks,
            extra=_extra(sample, benchmark),
        )
    except Exception as exc:  # noqa: BLE001 - scoring a bad sample must not drop the others
        return _failed(sample, benchmark, exc)
    return record, False


def run_batch(
    pipe: Any, batch: Sequence[Sample], benchmark: str, keep_masks: bool = True
) -> list[tuple[SampleRecord, bool]]:
    """Score a batch through ``pipe.segment_batch``: one record per sample, in order.

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
            return [_failed(batch[0], benchmark, exc)]
        return [pair for sample in batch for pair in run_batch(pipe, [sample], benchmark, keep_masks)]
    return [_score(s, r, benchmark, keep_masks) for s, r in zip(batch, results)]


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
        progress: called after each batch.
        index: the benchmark's ids if already read (:func:`index_benchmark`).
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
        with ResultsWriter(out_dir, config) as writer, contextlib.closing(batches):
            for batch in batches:
                scored = run_batch(pipe, batch, spec.benchmark, keep_masks)
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


# ---------------------------------------------------------------------------------------------
# Summaries and merging


def paper_numbers(benchmark: str, split: str, subset: str = "all") -> list[dict[str, Any]]:
    """The published numbers (percent) for a benchmark split, or for one subset of it."""
    from segzero.evaluation.report import PAPER_RESULTS

    return [
        {"method": p.method, "giou": p.giou, "ciou": p.ciou, "source": p.source, "note": p.note}
        for p in PAPER_RESULTS
        if p.benchmark == benchmark and p.split == split and p.subset == subset
    ]


def summarize_dir(
    out_dir: str | os.PathLike[str], expected_ids: Sequence[str], skipped: SkipLog | None = None
) -> dict[str, Any]:
    """Summarise a run folder into ``summary.json``: :func:`summarize_run`'s figures plus
    ``reader_skipped`` (records the reader could not use: in no figure), ``subset`` (what the
    ``overall`` figures cover: ``all`` of the split, or the one ReasonSeg subset the run was
    limited to) and ``paper`` (the published numbers for the same benchmark, split and subset)."""
    out_dir = Path(out_dir)
    summary = summarize_run(out_dir, expected_ids, write=False)
    if skipped is not None:
        summary["reader_skipped"] = {
            "n": skipped.n_skipped,
            "kinds": dict(skipped.kinds),
            "ids": [record_id for record_id, _ in skipped.skipped[:20]],
        }
    config = summary.get("config") or {}
    summary["subset"] = (config.get("extra") or {}).get("subset") or "all"
    summary["paper"] = paper_numbers(config.get("benchmark", ""), config.get("split", ""), summary["subset"])
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def _read_ids(folder: Path) -> list[str]:
    try:
        return list(json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))["ids"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{folder} has no readable {IDS_FILE}; it was not written by `segzero eval`."
        ) from None


def find_shards(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The shard folders of a run (``RUN_DIR/shards/*`` holding a ``run.json``), sorted by shard index."""
    folder = Path(run_dir) / SHARDS_DIR
    found = [p for p in folder.iterdir() if (p / RUN_FILE).is_file()] if folder.is_dir() else []

    def key(p: Path) -> tuple[int, str]:
        shard = (read_config(p) or RunConfig("", "")).shard
        return (parse_shard(shard)[0] if shard else -1, p.name)

    return sorted(found, key=key)


def merge_run(
    run_dir: str | os.PathLike[str], shards: Sequence[str | os.PathLike[str]] | None = None
) -> dict[str, Any]:
    """Merge a sharded run's shards into ``run_dir`` and summarise it.

    Args:
        run_dir: where the merged ``run.json``, ``results.jsonl``, ``summary.json`` go.
        shards: the shard folders; default every folder under ``run_dir/shards``.

    Returns:
        The merged summary (also in ``run_dir/summary.json``).

    Raises:
        InputError: no shards; shards of different runs, splits or datasets; a shard missing or
            given twice; a sample in two shards or in none (see :func:`merge_shards`); or
            ``run_dir`` holding an unsharded run.
    """
    run_dir = Path(run_dir)
    folders = [Path(p) for p in shards] if shards else find_shards(run_dir)
    if not folders:
        raise InputError(f"No shards found in {run_dir / SHARDS_DIR}; give the shard folders to merge.")
    seen: dict[int, Path] = {}
    counts: set[int] = set()
    for folder in folders:
        config = read_config(folder)
        if config is None or not config.shard:
            raise InputError(f"{folder} is not a shard of an evaluation (its run.json names no shard).")
        i, n = parse_shard(config.shard)
        counts.add(n)
        if i in seen:
            raise InputError(f"{seen[i]} and {folder} are both shard {i}/{n}; merge each shard once.")
        seen[i] = folder
    if len(counts) > 1:
        raise InputError(
            f"The shards come from splits into {' and '.join(map(str, sorted(counts)))} shards; "
            "merge the shards of one --shard I/N split."
        )
    count = counts.pop()
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if missing:
        which = f"Shard {missing[0]} is" if len(missing) == 1 else f"Shards {', '.join(missing)} are"
        raise InputError(f"{which} missing; run them with the same command and --shard before merging.")
    ids = _read_ids(folders[0])
    for folder in folders[1:]:
        if _read_ids(folder) != ids:
            raise InputError(
                f"{folders[0]} and {folder} were run on different sample lists (another dataset, "
                "subset or limit); only shards of the same run can be merged."
            )
    merged = merge_shards(folders, ids)

    results = run_dir / RESULTS_FILE
    if results.exists() and not (run_dir / MERGED_FILE).is_file():
        raise InputError(
            f"{run_dir} already holds an unsharded run; merge into another folder (eval-merge --out)."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    config = read_config(folders[0])
    assert config is not None
    merged_config = RunConfig.from_json({**config.to_json(), "shard": None})
    # The marker first: a merge cut short is then redone, not mistaken for an unsharded run.
    write_json_atomic(
        run_dir / MERGED_FILE, {"shards": [str(p) for p in sorted(seen.values())], "count": count}
    )
    ResultsWriter(run_dir, merged_config).close()  # writes run.json, or checks the one there
    tmp = results.with_name(f".{RESULTS_FILE}.merging")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in merged.values():
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, results)
    write_json_atomic(run_dir / IDS_FILE, {"benchmark": config.benchmark, "split": config.split, "ids": ids})
    skipped_file = folders[0] / SKIPPED_FILE
    if skipped_file.is_file():
        (run_dir / SKIPPED_FILE).write_bytes(skipped_file.read_bytes())
    return summarize_dir(run_dir, ids, _skiplog(run_dir / SKIPPED_FILE))


def _skiplog(path: Path) -> SkipLog | None:
    """A SkipLog back from ``skipped.jsonl`` (skips only; kinds are not kept there)."""
    if not path.is_file():
        return None
    log = SkipLog()
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, KeyError):
            item = json.loads(line)
            if not item.get("warning"):
                log.skip(item["id"], item["reason"], "skipped by the reader")
    return log


def merge_when_complete(run_dir: Path, count: int, ids: Sequence[str]) -> dict[str, Any] | None:
    """Merge the run if all ``count`` shards are complete (the last one to finish does it).

    Returns:
        The merged summary, or None while some shard is unfinished.
    """
    for i in range(count):
        folder = shard_dir(run_dir, i, count)
        if not (folder / RESULTS_FILE).is_file():
            return None
        if not set(shard_ids(ids, i, count)) <= load_results(folder).keys():
            return None
    run_dir.mkdir(parents=True, exist_ok=True)
    with _merge_lock(run_dir):
        return merge_run(run_dir, [shard_dir(run_dir, i, count) for i in range(count)])


@contextlib.contextmanager
def _merge_lock(run_dir: Path) -> Iterator[None]:
    """One merger at a time: shards that finish together would otherwise write the same files."""
    with open(run_dir / ".merge.lock", "a+b") as f:
        try:
            import fcntl
        except ImportError:  # not POSIX: merges are idempotent, a race writes the same files
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


__all__ = [
    "BENCHMARK_SPLITS",
    "BenchmarkIndex",
    "BenchmarkSpec",
    "DATA_FORMATS",
    "EvalOutcome",
    "EvaluationAborted",
    "Launch",
    "SUBSETS",
    "detect_format",
    "evaluate",
    "find_shards",
    "index_benchmark",
    "iter_benchmark",
    "launch_device",
    "launched_shard",
    "make_config",
    "merge_run",
    "merge_when_complete",
    "paper_numbers",
    "resolve_format",
    "run_batch",
    "sample_subset",
    "samples_for",
    "shard_dir",
    "spec_from_config",
    "summarize_dir",
]
