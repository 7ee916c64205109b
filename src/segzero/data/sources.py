"""One entry point over every reader: ``iter_samples(kind, path, split, ...)``."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from segzero.data.common import SkipLog, resolve_report
from segzero.data.records import Sample
from segzero.defaults import SEGMENTER_AGREEMENT_IOU

#: Source kinds :func:`iter_samples` understands.
SOURCE_KINDS = ("refcoco", "refcoco+", "refcocog", "reasonseg", "reference-hf", "prepared")


def iter_samples(
    source_kind: str,
    path: str | Path,
    split: str | None = None,
    *,
    report: SkipLog | None = None,
    limit: int | None = None,
    segmenter: Any = None,
    filter_threshold: float = SEGMENTER_AGREEMENT_IOU,
    **options: Any,
) -> Iterator[Sample]:
    """Yield Samples from any supported source, optionally filtered by segmenter agreement.

    Args:
        source_kind: one of :data:`SOURCE_KINDS`.
        path: the dataset root (refer folder, ReasonSeg folder) or dataset path (reference / prepared).
        split: the split; default ``val`` for refer and ReasonSeg, the only split otherwise.
        report: receives every skipped record; ``report.kept`` counts the samples yielded here.
        limit: stop after this many kept samples.
        segmenter: if given, keep only samples it reproduces (see :mod:`segzero.data.filter`).
        filter_threshold: the IoU the segmenter must reach.
        **options: passed to the reader: ``split_by``, ``images`` (refer); ``subset``, ``all_texts``, ``keep_empty``
            (ReasonSeg); ``frame``, ``source``, ``keep_empty`` (reference); ``second_point``, ``objects``, ``protocol`` (all but
            prepared).

    Raises:
        ValueError: unknown ``source_kind`` or an option the reader does not take.
        segzero.errors.DatasetError: the source is missing or malformed as a whole.
    """
    from segzero.data.prepared import read_prepared
    from segzero.data.reasonseg import read_reasonseg
    from segzero.data.refer import read_refer
    from segzero.data.reference_hf import read_reference_hf

    report = resolve_report(report)
    if source_kind in ("refcoco", "refcoco+", "refcocog"):
        samples = read_refer(path, source_kind, split or "val", report=report, **options)
    elif source_kind == "reasonseg":
        samples = read_reasonseg(path, split or "val", report=report, **options)
    elif source_kind == "reference-hf":
        samples = read_reference_hf(path, split, report=report, **options)
    elif source_kind == "prepared":
        samples = read_prepared(path, split, report=report, **options)
    else:
        raise ValueError(f"unknown source {source_kind!r}; choose one of {', '.join(SOURCE_KINDS)}")
    if segmenter is not None:
        from segzero.data.filter import filter_by_segmenter

        samples = filter_by_segmenter(samples, segmenter, threshold=filter_threshold, report=report)
    for sample in islice(samples, limit):
        report.kept += 1
        yield sample
