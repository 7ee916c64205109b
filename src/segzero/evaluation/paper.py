"""The published numbers (SPEC section 8), once, as data: what evaluation runs are compared with.

:data:`PAPER_RESULTS` lists every published gIoU / cIoU by (benchmark, split, subset);
:func:`paper_numbers` picks those of one benchmark split for a run's ``summary.json``
(:func:`segzero.evaluation.results.summarize_dir`), and :mod:`segzero.evaluation.report` lines
runs up with them in the report table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segzero.defaults import DEFAULT_REASONER, MULTI_OBJECT_REASONER

#: Subset name of the whole split.
ALL = "all"

_SEG_ZERO = "Seg-Zero paper (arXiv 2503.06520)"


@dataclass(frozen=True)
class PaperResult:
    """One published result, in percent.

    Attributes:
        method: as the paper names it.
        benchmark, split, subset: where it was measured (``subset="all"`` for the whole split).
        giou, ciou: the published gIoU and cIoU; None where not published.
        reasoner: hub id of the released reasoner it corresponds to, so a run of that checkpoint
            is compared with it; None when there is no released checkpoint.
        source: where the number comes from.
        note: caveats.
    """

    method: str
    benchmark: str
    split: str
    giou: float | None
    ciou: float | None
    subset: str = ALL
    reasoner: str | None = None
    source: str = _SEG_ZERO
    note: str = ""


def _pair(method: str, benchmark: str, val: tuple, test: tuple, **kw: Any) -> tuple[PaperResult, PaperResult]:
    """val and test results, each ``(giou, ciou)``."""
    return (
        PaperResult(method, benchmark, "val", *val, **kw),
        PaperResult(method, benchmark, "test", *test, **kw),
    )


def _ref(
    method: str, refcoco: float, refcoco_plus: float, refcocog: float, **kw: Any
) -> tuple[PaperResult, ...]:
    """Referring segmentation cIoU: RefCOCO testA, RefCOCO+ testA, RefCOCOg test."""
    return (
        PaperResult(method, "refcoco", "testA", None, refcoco, **kw),
        PaperResult(method, "refcoco+", "testA", None, refcoco_plus, **kw),
        PaperResult(method, "refcocog", "test", None, refcocog, **kw),
    )


_CLAIM = "claimed by its own paper"

#: The published numbers: ReasonSeg zero-shot (gIoU, cIoU), referring segmentation (cIoU), newer peers.
PAPER_RESULTS: tuple[PaperResult, ...] = (
    *_pair("LISA-7B-LLaVA1.5", "reasonseg", (53.6, 52.3), (48.7, 48.8)),
    *_pair("Qwen2.5-VL-3B + SAM2 (no RL)", "reasonseg", (53.8, 44.1), (47.6, 37.4),
           reasoner="Qwen/Qwen2.5-VL-3B-Instruct"),
    *_pair("Seg-Zero-3B", "reasonseg", (62.6, 58.5), (56.1, 48.6)),
    *_pair("Seg-Zero-7B", "reasonseg", (62.6, 62.0), (57.5, 52.0), reasoner=DEFAULT_REASONER),
    *_ref("Seg-Zero-7B", 80.3, 76.2, 72.6, reasoner=DEFAULT_REASONER),
    *_ref("Seg-Zero-3B", 79.3, 73.7, 71.5),
    *_pair("VisionReasoner-7B", "reasonseg", (66.3, None), (63.6, None), reasoner=MULTI_OBJECT_REASONER,
           source="VisionReasoner paper", note=_CLAIM),
    *_pair("LENS-3B (end-to-end RL)", "reasonseg", (62.1, 64.9), (57.2, 58.0),
           source="LENS paper", note=_CLAIM),
    PaperResult("GenSeg-R1-4B", "reasonseg", "test", 68.4, None, source="GenSeg-R1 paper",
                note=f"{_CLAIM}; SPEC does not name the metric, listed as gIoU"),
    *_pair("SAM 3 Agent (closed MLLM)", "reasonseg", (76.0, None), (73.8, None), source="SAM 3 paper",
           note=f"{_CLAIM}; SPEC gives '76.0 / 73.8', read as val / test gIoU"),
)  # fmt: skip


def paper_numbers(benchmark: str, split: str, subset: str = ALL) -> list[dict[str, Any]]:
    """The published numbers (percent) for a benchmark split, or for one subset of it."""
    return [
        {"method": p.method, "giou": p.giou, "ciou": p.ciou, "source": p.source, "note": p.note}
        for p in PAPER_RESULTS
        if p.benchmark == benchmark and p.split == split and p.subset == subset
    ]


__all__ = ["ALL", "PAPER_RESULTS", "PaperResult", "paper_numbers"]
