"""Per-sample evaluation results on disk: written as the run goes, resumable, shardable, mergeable.

A run (or one shard of a run) is a folder::

    run.json        the run's configuration (RunConfig), written once; a resume must match it
    results.jsonl   one JSON record per finished sample (SampleRecord), appended as samples finish
    summary.json    gIoU / cIoU / box accuracy / parse failures, overall and per subset, beside
                    the paper's numbers (:func:`summarize_dir`)
    ids.json        every sample id of the benchmark split, in reader order (what "complete"
                    means; a shard's folder holds the whole split's too)
    skipped.jsonl   records the dataset reader could not use, with why (in no figure)

A sharded run keeps one such folder per shard under ``shards/`` (:mod:`segzero.evaluation.shards`).

Durability: :class:`ResultsWriter` appends whole lines and fsyncs at each :meth:`~ResultsWriter.flush_batch`,
so a killed process loses at most the batch in flight. A kill can leave a torn last line (no
newline, or not valid JSON); reading ignores it and reopening for writing truncates it away,
so the file is never left corrupt. A damaged line anywhere else is an error, never skipped.

Duplicates: a sample id written more than once (a sample re-run after a failure) is read back
once, the LAST record winning, so nothing counts twice.

Sharding: ``--shard I/N`` runs shard I (0-based, ``0 <= I < N``) of N; :func:`shard_ids` deals the
benchmark's ids out round-robin in sorted id order, so the split does not depend on the order
a reader yields samples. :func:`merge_shards` refuses overlapping shards and missing samples.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from segzero.answer import ParseStatus
from segzero.errors import DatasetError, InputError
from segzero.defaults import NO_TARGET_KEY
from segzero.evaluation.metrics import (
    GeneralizedAccumulator,
    IoUAccumulator,
    box_scores,
    counted,
    predicted_empty,
    sample_iou,
    sample_iou_terms,
)
from segzero.evaluation.paper import ALL, paper_numbers
from segzero.protocols import PROTOCOLS, SEGZERO

if TYPE_CHECKING:
    from segzero.data.common import SkipLog

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
IDS_FILE = "ids.json"
SKIPPED_FILE = "skipped.jsonl"

#: ``parse_status`` of a sample on which the pipeline itself failed (not the answer parser).
ERROR_STATUS = "error"

#: Record ``extra`` key naming the subset a sample belongs to (ReasonSeg: "short" / "long" query).
SUBSET_KEY = "subset"

#: Statuses of an answer that was read (``nothing matches`` included): :attr:`ParseStatus.usable`.
_PARSED = frozenset(status.value for status in ParseStatus if status.usable)

# Configuration fields that say where things are, not what is computed: not compared on resume/merge.
_LOCATION_FIELDS = ("dataset", "images")


#: Settings older run folders recorded at the top level of ``run.json``, now under ``pipeline``.
_LEGACY_PIPELINE_KEYS = ("reasoner", "segmenter", "prompt", "frame", "segmenter_mode", "max_new_tokens")

#: ``extra["origin"]`` of a run whose data is a ShapeWorld export (:mod:`segzero.shapeworld`), not the
#: benchmark the paper measured: such runs are never compared with the paper's figures.
SHAPEWORLD_ORIGIN = "shapeworld"


@dataclass
class RunConfig:
    """What an evaluation run computes; stored in ``run.json`` and compared when a run is resumed."""

    benchmark: str = field(metadata={"help": "Benchmark: reasonseg, refcoco, refcoco+, refcocog, ..."})
    split: str = field(metadata={"help": "Split: val, test, testA, testB."})
    pipeline: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "The pipeline settings that shape results (segzero.config.PipelineConfig fields marked "
            "'run': models, prompt, frame, segmenter mode, budget, dtype), model defaults resolved."
        },
    )
    shard: str | None = field(default=None, metadata={"help": "This run's shard 'I/N' (0-based), or None."})
    dataset: str = field(
        default="", metadata={"help": "Where the dataset was read from (to reload samples later)."}
    )
    images: str = field(
        default="",
        metadata={"help": "refer: the COCO images folder given with --images, or '' (found near the data)."},
    )
    extra: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Anything else that shapes results."}
    )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from a dict; keys this version does not know are kept in ``extra``, and an older
        ``run.json``'s top-level pipeline settings are read into ``pipeline``."""
        data = dict(data)
        pipeline = dict(data.pop("pipeline", None) or {})
        for key in _LEGACY_PIPELINE_KEYS:
            if key in data:
                pipeline.setdefault(key, data.pop(key))
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        known["extra"] = {**known.get("extra", {}), **unknown}
        if "dtype" in known["extra"]:
            pipeline.setdefault("dtype", known["extra"].pop("dtype"))
        if pipeline:  # runs from before protocols followed segzero's, and ran every completion to its end
            pipeline.setdefault("protocol", SEGZERO)
            pipeline.setdefault("stop_runaway", False)
        return cls(**known, pipeline=pipeline)

    @property
    def protocol(self) -> str:
        """The protocol the run followed (``segzero`` for runs from before protocols)."""
        return self.pipeline.get("protocol", SEGZERO)

    def identity(self, *, ignore: Sequence[str] = ()) -> dict[str, Any]:
        """The settings that must agree for two runs' results to belong together, pipeline ones by name."""
        skip = set(_LOCATION_FIELDS) | set(ignore)
        flat = {**self.pipeline, **{k: v for k, v in self.to_json().items() if k != "pipeline"}}
        return {k: v for k, v in flat.items() if k not in skip}


@dataclass
class SampleRecord:
    """One finished sample, as one line of ``results.jsonl``.

    Attributes:
        id: the sample id (unique within the benchmark split).
        request: the request as sent.
        intersection, union, iou: the pixel counts and IoU by the rules of the run's protocol (see
            :mod:`segzero.evaluation.metrics`).
        counted: False when the run's protocol leaves the sample out of every figure (the reference, on
            a segmented answer whose union is 0).
        scores: per protocol, ``{"intersection", "union", "iou", "counted"}`` of the same mask (the other
            protocol's ignore convention from the same pass); empty in runs from before protocols.
        differences: the protocol differences that touch this sample
            (:data:`segzero.evaluation.differences.DIFFERENCES`).
        image_size: ``[width, height]`` of the image, or None when unknown.
        parse_status: a :class:`~segzero.answer.ParseStatus` value, or ``"error"`` when the pipeline failed.
        thinking: the reasoning inside ``<think>``, or None.
        answer: the raw completion text.
        objects: per object ``{"box": [x1, y1, x2, y2] | None, "points": [[x, y], ...]}`` in the
            ORIGINAL image's pixel frame (what the segmenter was given).
        box_iou, box_hit: see :func:`~segzero.evaluation.metrics.box_scores`; None when not applicable.
        pred_rle: the predicted mask as COCO RLE ``{"size": [H, W], "counts": str}``, or None.
        timings: seconds per stage.
        error: why the pipeline failed on this sample, or None.
        pred_empty: whether the answer said "nothing matches" (:func:`~segzero.evaluation.metrics.predicted_empty`:
            a read answer with an empty mask); None for a failed answer.
        extra: anything else (``extra["subset"]`` groups samples in the summary; ``extra["no_target"]``,
            the sample's ground truth matching nothing, gives the summary its gRefCOCO figures).
    """

    id: str
    request: str
    intersection: int
    union: int
    iou: float
    parse_status: str
    counted: bool = True
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)
    image_size: list[int] | None = None
    thinking: str | None = None
    answer: str = ""
    objects: list[dict[str, Any]] = field(default_factory=list)
    box_iou: float | None = None
    box_hit: bool | None = None
    pred_rle: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    pred_empty: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def protocol_scores(pred: np.ndarray | None, gt: np.ndarray, parsed: bool) -> dict[str, dict[str, Any]]:
    """One mask scored by every protocol's rules: ``{protocol: {"intersection", "union", "iou", "counted"}}``.

    Args:
        pred: bool ``(H, W)`` prediction, or None when nothing was segmented.
        gt: uint8 ``(H, W)`` ground truth (0 / 1 / 255 ignore).
        parsed: whether the answer was read and segmented (False: a failed answer).
    """
    out = {}
    for protocol in PROTOCOLS:
        inter, union = sample_iou_terms(pred if parsed else None, gt, protocol)
        out[protocol] = {
            "intersection": inter,
            "union": union,
            "iou": sample_iou(inter, union, protocol),
            "counted": counted(union, parsed, protocol),
        }
    return out


def _scored(scores: dict[str, dict[str, Any]], protocol: str) -> dict[str, Any]:
    """The record fields of the run's own protocol, from :func:`protocol_scores`."""
    own = scores[protocol]
    return {"intersection": own["intersection"], "union": own["union"], "iou": own["iou"], "counted": own["counted"]}


def record_from_result(
    sample_id: str,
    result: Any,
    gt: np.ndarray,
    gt_boxes: Sequence[Sequence[float]] | None = None,
    *,
    protocol: str = SEGZERO,
    frame: int | None = None,
    keep_mask: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> SampleRecord:
    """Score one :class:`~segzero.pipeline.SegmentationResult` against its ground truth.

    Args:
        sample_id: the sample's id.
        result: the pipeline's result for it (mask, objects in the image frame, status, ...).
        gt: uint8 ``(H, W)`` ground truth (0 / 1 / 255 ignore).
        gt_boxes: the target boxes in the image frame; None leaves box IoU and box hit unset.
        protocol: the run's protocol: its rules give the record's own figures; the record keeps both.
        frame: the reasoner frame the answer is in, to name the differences that touch the sample
            (:func:`segzero.evaluation.differences.sample_differences`); None leaves them unnamed.
        keep_mask: store the predicted mask as COCO RLE (``pred_rle``), needed by ``segzero visualize``;
            an unparsed answer has no prediction to keep.
        extra: copied into the record's ``extra``.
    """
    from segzero.evaluation.differences import sample_differences

    status = getattr(result.status, "value", result.status)
    parsed = status in _PARSED
    scores = protocol_scores(result.mask, gt, parsed)
    box_iou = box_hit = None
    if gt_boxes is not None:
        box_iou, box_hit = box_scores([o.box for o in result.objects] if parsed else [], gt_boxes)
    pred_rle = None
    if keep_mask and parsed:
        from segzero.masks import encode_rle

        pred_rle = encode_rle(result.mask)
    size = (int(gt.shape[1]), int(gt.shape[0]))  # the ground truth is in the image's frame
    return SampleRecord(
        id=sample_id,
        request=result.request,
        **_scored(scores, protocol),
        scores=scores,
        differences=[] if frame is None else sample_differences(result.completion, size, frame, scores),
        image_size=list(size),
        parse_status=status,
        thinking=result.thinking,
        answer=result.completion,
        objects=[o.to_json() for o in result.objects],
        box_iou=box_iou,
        box_hit=box_hit,
        pred_rle=pred_rle,
        timings=dict(result.timings),
        pred_empty=predicted_empty(result.mask, parsed),
        extra=dict(extra or {}),
    )


def error_record(
    sample_id: str,
    request: str,
    gt: np.ndarray,
    error: BaseException | str,
    gt_boxes: Sequence[Sequence[float]] | None = None,
    *,
    protocol: str = SEGZERO,
    extra: Mapping[str, Any] | None = None,
) -> SampleRecord:
    """The record of a sample the pipeline failed on: scored like an unparseable answer, never dropped."""
    scores = protocol_scores(None, gt, parsed=False)
    box_iou, box_hit = box_scores([], gt_boxes) if gt_boxes is not None else (None, None)
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return SampleRecord(
        id=sample_id,
        request=request,
        **_scored(scores, protocol),
        scores=scores,
        image_size=[int(gt.shape[1]), int(gt.shape[0])],
        parse_status=ERROR_STATUS,
        box_iou=box_iou,
        box_hit=box_hit,
        error=message,
        extra=dict(extra or {}),
    )


# ---------------------------------------------------------------------------------------------
# Files and the run configuration


def results_path(path: str | os.PathLike[str]) -> Path:
    """``results.jsonl`` of a run folder; a path ending in ``.jsonl`` is taken as the file itself."""
    path = Path(path)
    return path if path.suffix == ".jsonl" else path / RESULTS_FILE


def _run_dir(path: str | os.PathLike[str]) -> Path:
    return results_path(path).parent


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, **kwargs)


def _fsync_dir(path: Path) -> None:
    """Make a new or renamed directory entry durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(_dumps(value, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_config(path: str | os.PathLike[str]) -> RunConfig | None:
    """The configuration in a run folder's ``run.json`` (or beside a ``.jsonl`` file), None if there is none.

    Raises:
        DatasetError: ``run.json`` exists but cannot be read.
    """
    file = _run_dir(path) / RUN_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return RunConfig.from_json(data["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{file} is not a valid run configuration ({exc}); restore it or use a new folder."
        ) from None


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def _describe(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={config.get(k)!r}" for k in keys)


def ensure_config(path: str | os.PathLike[str], config: RunConfig) -> None:
    """Record ``config`` in the run folder, or check it against the one recorded there.

    Raises:
        InputError: the folder holds a run with a different configuration (one sentence naming
            the differing settings).
    """
    run_dir = _run_dir(path)
    saved = read_config(run_dir)
    if saved is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        from segzero import __version__

        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(
            run_dir / RUN_FILE, {"config": config.to_json(), "created": stamp, "segzero_version": __version__}
        )
        return
    old, new = saved.identity(), config.identity()
    diff = _differences(old, new)
    if diff:
        raise InputError(
            f"{run_dir} holds a run with {_describe(old, diff)} but this run asks for "
            f"{_describe(new, diff)}; resume with the same settings or choose another output folder."
        )


# ---------------------------------------------------------------------------------------------
# Reading and writing results.jsonl


def _parse_record(raw: bytes) -> dict[str, Any]:
    record = json.loads(raw.decode("utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise ValueError("not a JSON object with a string 'id'")
    return record


def _scan(data: bytes, source: str) -> tuple[list[dict[str, Any]], int]:
    """Parse JSONL bytes; return the records and the byte offset where the intact part ends.

    The bytes after the last newline, and the last line if it is not a valid record, are a torn
    write from a killed run and are left out. Any other bad line raises DatasetError.
    """
    lines = data.split(b"\n")[:-1]  # the last piece follows the final newline: empty, or torn
    records: list[dict[str, Any]] = []
    end = 0
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            try:
                records.append(_parse_record(raw))
            except ValueError as exc:
                if number == len(lines):
                    break
                raise DatasetError(
                    f"{source} line {number} is not a valid result record ({exc}); "
                    "the file was edited or damaged: fix or delete that line."
                ) from None
        end += len(raw) + 1
    return records, end


class ResultsWriter:
    """Appends sample records to a run's ``results.jsonl``; one writer per file at a time.

    Opening repairs a torn last line left by a killed run (``dropped_bytes`` says how much was cut)
    and, when ``config`` is given, records it in ``run.json`` or refuses a different one.

    Example::

        with ResultsWriter(out_dir, config) as writer:
            done = finished_ids(out_dir)
            for batch in batches:
                for record in score(batch):
                    writer.write(record)
                writer.flush_batch()  # durable from here on

    Raises:
        InputError: another process holds the file, or the configuration differs from ``run.json``.
        DatasetError: the existing file is damaged before its last line.
    """

    def __init__(self, path: str | os.PathLike[str], config: RunConfig | None = None) -> None:
        self.path = results_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists()
        self._file: IO[bytes] = open(self.path, "a+b")
        try:
            _lock(self._file, self.path)
            if config is not None:
                ensure_config(self.path, config)
            self.dropped_bytes = self._repair()
        except BaseException:
            self._file.close()
            raise
        if is_new:
            _fsync_dir(self.path.parent)

    def _repair(self) -> int:
        self._file.seek(0)
        data = self._file.read()
        _, end = _scan(data, str(self.path))
        if end < len(data):
            self._file.truncate(end)
            self._file.flush()
            os.fsync(self._file.fileno())
        return len(data) - end

    def write(self, record: SampleRecord | Mapping[str, Any]) -> None:
        """Append one finished sample (durable after the next :meth:`flush_batch`)."""
        data = record.to_json() if isinstance(record, SampleRecord) else dict(record)
        if not isinstance(data.get("id"), str):
            raise ValueError("a result record needs a string 'id'")
        self._file.write((_dumps(data) + "\n").encode("utf-8"))

    def flush_batch(self) -> None:
        """Push the records written so far to disk (flush + fsync)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush_batch()
            self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(file: IO[bytes], path: Path) -> None:
    """Refuse a second writer on the same file (two processes appending would interleave lines)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(
            f"Another process is writing {path}; wait for it to finish or use another output folder."
        ) from None


def load_results(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Records of a run folder (or ``.jsonl`` file) by id; the last record of a repeated id wins.

    A torn last line from a killed run is ignored (not removed: reading never writes).

    Raises:
        InputError: there is no results file.
        DatasetError: a line other than the last is damaged.
    """
    file = results_path(path)
    if not file.is_file():
        raise InputError(f"No results at {file}; give a run folder written by the evaluation.")
    records, _ = _scan(file.read_bytes(), str(file))
    return {r["id"]: r for r in records}


def finished_ids(path: str | os.PathLike[str], *, retry_errors: bool = False) -> set[str]:
    """Ids already done in a run folder (empty for a new one); what a resumed run skips.

    Args:
        retry_errors: leave out samples the pipeline failed on, so a resume runs them again.
    """
    if not results_path(path).is_file():
        return set()
    records = load_results(path)
    return {i for i, r in records.items() if not (retry_errors and r.get("error"))}


# ---------------------------------------------------------------------------------------------
# Shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: shard index I (0-based) of N shards.

    Raises:
        InputError: not of the form I/N with ``0 <= I < N``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise InputError(f"A shard must be I/N with 0 <= I < N (e.g. 0/8 ... 7/8), got {text!r}.")
    return int(match[1]), int(match[2])


def shard_ids(ids: Sequence[str], index: int, count: int) -> list[str]:
    """The ids shard ``index`` of ``count`` runs, in their given order.

    Ids are dealt out round-robin in sorted order, so every id lands in exactly one shard, shard
    sizes differ by at most one, and the split is the same whatever order ``ids`` come in.

    Raises:
        InputError: bad index/count. DatasetError: an id is listed twice.
    """
    if not 0 <= index < count:
        raise InputError(f"A shard must be I/N with 0 <= I < N, got {index}/{count}.")
    twice = [i for i, n in Counter(ids).items() if n > 1]
    if twice:
        raise DatasetError(f"The benchmark lists {len(twice)} sample ids more than once, e.g. {_few(twice)}.")
    chosen = set(sorted(ids)[index::count])
    return [i for i in ids if i in chosen]


def _few(items: Iterable[Any], k: int = 3) -> str:
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:k])
    return shown + (", ..." if len(items) > k else "")


def merge_shards(
    paths: Sequence[str | os.PathLike[str]], expected_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Merge shard folders into one ``{id: record}``, in the order of ``expected_ids``.

    Args:
        paths: the shards' run folders (or ``.jsonl`` files).
        expected_ids: every sample id of the benchmark split.

    Raises:
        InputError: the shards' configurations differ (apart from ``shard``), a sample is in more
            than one shard, a benchmark sample is in none, or a shard holds ids the benchmark lacks.
    """
    if not paths:
        raise InputError("No shards to merge; give the shards' run folders.")
    first_config: tuple[Path, dict[str, Any]] | None = None
    owner: dict[str, Path] = {}
    merged: dict[str, dict[str, Any]] = {}
    overlaps: list[str] = []
    for path in paths:
        run_dir = _run_dir(path)
        config = read_config(run_dir)
        if config is not None:
            identity = config.identity(ignore=("shard",))
            if first_config is None:
                first_config = (run_dir, identity)
            elif diff := _differences(first_config[1], identity):
                raise InputError(
                    f"Shard {first_config[0]} has {_describe(first_config[1], diff)} but shard {run_dir} has "
                    f"{_describe(identity, diff)}; only shards of the same run can be merged."
                )
        for sample_id, record in load_results(path).items():
            if sample_id in owner:
                overlaps.append(f"{sample_id!r} in {owner[sample_id]} and {run_dir}")
                continue
            owner[sample_id] = run_dir
            merged[sample_id] = record
    if overlaps:
        shown = "; ".join(overlaps[:3]) + ("; ..." if len(overlaps) > 3 else "")
        raise InputError(
            f"{len(overlaps)} samples appear in more than one shard ({shown}); "
            "merge shards of one --shard I/N split, each once."
        )
    expected = dict.fromkeys(expected_ids)
    missing = [i for i in expected if i not in merged]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(expected)} samples are in no shard, e.g. {_few(missing)}; "
            "run or resume the shards that hold them before merging."
        )
    unexpected = [i for i in merged if i not in expected]
    if unexpected:
        raise InputError(
            f"{len(unexpected)} samples in the shards are not in the benchmark, e.g. {_few(unexpected)}; "
            "were the shards run on another benchmark or split?"
        )
    return {i: merged[i] for i in expected}


# ---------------------------------------------------------------------------------------------
# Summaries


def _terms(record: Mapping[str, Any], protocol: str, own: str) -> tuple[int, int, bool] | None:
    """A record's ``(intersection, union, counted)`` under ``protocol``; None when the record lacks them
    (runs from before protocols scored by their own protocol only)."""
    scores = record.get("scores") or {}
    if protocol in scores:
        terms = scores[protocol]
        return terms["intersection"], terms["union"], terms.get("counted", True)
    if protocol == own:
        return record["intersection"], record["union"], record.get("counted", True)
    return None


def _add(acc: IoUAccumulator, record: Mapping[str, Any], terms: tuple[int, int, bool]) -> None:
    inter, union, include = terms
    acc.add(
        record["id"],
        inter,
        union,
        record.get("box_hit"),
        record["parse_status"] in _PARSED,
        error=bool(record.get("error")) or record["parse_status"] == ERROR_STATUS,
        include=include,
    )


def _figures(records: Sequence[Mapping[str, Any]], protocol: str, own: str) -> dict[str, Any] | None:
    """``{"overall", "subsets"}`` of the records under ``protocol``'s rules; None if some record lacks them."""
    overall = IoUAccumulator(protocol)
    subsets: dict[str, IoUAccumulator] = {}
    for record in records:
        try:
            terms = _terms(record, protocol, own)
            if terms is None:
                return None
            _add(overall, record, terms)
            subset = (record.get("extra") or {}).get(SUBSET_KEY)
            if subset is not None:
                _add(subsets.setdefault(str(subset), IoUAccumulator(protocol)), record, terms)
        except KeyError as exc:
            raise DatasetError(f"The result record {record.get('id')!r} lacks the field {exc}.") from None
    return {"overall": overall.summary(), "subsets": {k: subsets[k].summary() for k in sorted(subsets)}}


def _generalized(records: Sequence[Mapping[str, Any]], own: str) -> dict[str, Any] | None:
    """gRefCOCO's figures (:class:`~segzero.evaluation.metrics.GeneralizedAccumulator`) when some record says
    whether its request matches anything (one that does not say is a target sample); None when none does.
    Pixels are counted plainly (the ``segzero`` protocol's terms: gRefCOCO has no ignore regions)."""
    if not any(NO_TARGET_KEY in (r.get("extra") or {}) for r in records):
        return None
    acc = GeneralizedAccumulator()
    for record in records:
        terms = _terms(record, SEGZERO, own) or _terms(record, own, own)
        assert terms is not None  # a record always holds its own protocol's terms
        extra = record.get("extra") or {}
        acc.add(
            record["id"], terms[0], terms[1], no_target=bool(extra.get(NO_TARGET_KEY)),
            pred_empty=record.get("pred_empty"),
        )
    return acc.summary()


def summarize(
    records: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], protocol: str = SEGZERO
) -> dict[str, Any]:
    """Metrics over records, overall and per ``extra["subset"]``, by the rules of the run's ``protocol``.

    Args:
        records: records (dicts or ``load_results`` output); each id must occur once.
        protocol: the protocol the run followed.

    Returns:
        ``{"protocol", "overall": {...}, "subsets": {name: {...}}, "other_protocols": {name: {"overall",
        "subsets"}}, "differences": {name: samples}}``: the figures have the keys of
        :meth:`IoUAccumulator.summary` (fractions in [0, 1]); ``other_protocols`` scores the same masks by
        the other protocol's rules (its ignore convention), and ``differences`` counts the samples each
        protocol difference touches (:data:`segzero.evaluation.differences.DIFFERENCES`). Runs from
        before protocols have neither. Records that say whether their request matches anything (gRefCOCO)
        add ``"generalized"``: gRefCOCO's gIoU, cIoU, N-acc and T-acc
        (:meth:`~segzero.evaluation.metrics.GeneralizedAccumulator.summary`).
    """
    from segzero.evaluation.differences import DIFFERENCES

    if isinstance(records, Mapping):
        records = records.values()
    rows = [r.to_json() if isinstance(r, SampleRecord) else r for r in records]
    own = _figures(rows, protocol, protocol)
    assert own is not None  # a record always holds its own protocol's terms
    others = {p: _figures(rows, p, protocol) for p in PROTOCOLS if p != protocol}
    differences: dict[str, int] = {}
    if rows and all("scores" in r for r in rows):
        touched = Counter(name for r in rows for name in r.get("differences") or ())
        differences = {name: touched[name] for name in DIFFERENCES}
    summary = {
        "protocol": protocol,
        **own,
        "other_protocols": {p: figures for p, figures in others.items() if figures is not None},
        "differences": differences,
    }
    generalized = _generalized(rows, protocol)
    if generalized is not None:
        summary["generalized"] = generalized
    return summary


def summarize_run(
    path: str | os.PathLike[str], expected_ids: Sequence[str] | None = None, *, write: bool = True
) -> dict[str, Any]:
    """Summarise a run folder and (by default) save it as ``summary.json`` beside the results.

    Args:
        path: the run folder.
        expected_ids: the benchmark split's ids; adds ``n_expected`` and ``complete`` to the summary.
        write: save ``summary.json``.

    Returns:
        ``{"config": {...} | None, "overall": ..., "subsets": ..., ["n_expected", "complete"]}``.
    """
    config = read_config(path)
    records = load_results(path)
    protocol = config.protocol if config else SEGZERO
    summary: dict[str, Any] = {"config": config.to_json() if config else None, **summarize(records, protocol)}
    if expected_ids is not None:
        expected = set(expected_ids)
        summary["n_expected"] = len(expected)
        summary["complete"] = expected <= records.keys()
    if write:
        write_json_atomic(_run_dir(path) / SUMMARY_FILE, summary)
    return summary


def summarize_dir(
    out_dir: str | os.PathLike[str], expected_ids: Sequence[str], skipped: SkipLog | None = None
) -> dict[str, Any]:
    """Summarise a run folder into ``summary.json``: :func:`summarize_run`'s figures plus
    ``reader_skipped`` (records the reader could not use: in no figure), ``subset`` (what the
    ``overall`` figures cover: ``all`` of the split, or the one ReasonSeg subset the run was
    limited to), ``origin`` (``shapeworld`` for a ShapeWorld export, else the benchmark) and ``paper``
    (the published numbers for the same benchmark, split, subset and protocol; none for a ShapeWorld
    export, which is not the benchmark the paper measured)."""
    out_dir = Path(out_dir)
    summary = summarize_run(out_dir, expected_ids, write=False)
    if skipped is not None:
        summary["reader_skipped"] = {
            "n": skipped.n_skipped,
            "kinds": dict(skipped.kinds),
            "ids": [record_id for record_id, _ in skipped.skipped[:20]],
        }
    config = summary.get("config") or {}
    extra = config.get("extra") or {}
    summary["subset"] = extra.get("subset") or ALL
    summary["origin"] = extra.get("origin") or config.get("benchmark", "")
    summary["paper"] = (
        []
        if summary["origin"] == SHAPEWORLD_ORIGIN
        else paper_numbers(config.get("benchmark", ""), config.get("split", ""), summary["subset"], summary["protocol"])
    )
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary
