"""The published numbers (SPEC section 8), once, as data: what evaluation runs are compared with.

:data:`PAPER_RESULTS` lists every published gIoU / cIoU by (benchmark, split, subset), each tagged
with the evaluation that measured it: Seg-Zero's own figures come from the reference release's
evaluation (``segzero eval --protocol reference`` reproduces it), LISA's from LISA's (whose scoring
``--protocol segzero`` follows), the newer peers' from their own papers. :func:`paper_numbers` picks
those of one benchmark split and protocol for a run's ``summary.json``
(:func:`segzero.evaluation.results.summarize_dir`), and :mod:`segzero.evaluation.report` lines runs
up with them in the report table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segzero.defaults import DEFAULT_REASONER, MULTI_OBJECT_REASONER
from segzero.protocols import REFERENCE, SEGZERO

#: Subset name of the whole split.
ALL = "all"

_SEG_ZERO = "Seg-Zero paper (arXiv 2503.06520)"

#: The released checkpoint the reference's README names as its best on ReasonSeg test.
BEST_ON_REASONSEG_TEST = "Ricky06662/Seg-Zero-7B-Best-on-ReasonSegTest"

#: The evaluations published figures come from: the reference release's, LISA's, or the peer's own.
EVALUATIONS = {REFERENCE: REFERENCE, "lisa": SEGZERO, "own": None}


def checkpoint_name(reasoner: str) -> str:
    """A reasoner's name without its owner or folder, lower-cased: a hub id and a local copy of it in a
    folder of the same name (``Ricky06662/Seg-Zero-7B``, ``/models/Seg-Zero-7B``) compare as one."""
    return reasoner.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()


@dataclass(frozen=True)
class PaperResult:
    """One published result, in percent.

    Attributes:
        method: as the paper names it.
        benchmark, split, subset: where it was measured (``subset="all"`` for the whole split).
        giou, ciou: the published gIoU and cIoU; None where not published.
        reasoners: hub ids of the released reasoners a run is compared with it for (the first is the
            one the figure comes from, where known); empty when no released checkpoint corresponds.
        evaluation: whose evaluation measured it (a key of :data:`EVALUATIONS`).
        source: where the number comes from.
        note: caveats.
    """

    method: str
    benchmark: str
    split: str
    giou: float | None
    ciou: float | None
    subset: str = ALL
    reasoners: tuple[str, ...] = ()
    evaluation: str = REFERENCE
    source: str = _SEG_ZERO
    note: str = ""

    @property
    def protocol(self) -> str | None:
        """The segzero protocol whose runs compare with this figure; None for a peer's own evaluation."""
        return EVALUATIONS[self.evaluation]

    def compares_with(self, reasoner: str | None, protocol: str) -> bool:
        """Whether a run of ``reasoner`` under ``protocol`` measures what this figure measured."""
        names = {checkpoint_name(r) for r in self.reasoners}
        return protocol == self.protocol and reasoner is not None and checkpoint_name(reasoner) in names


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
_SEG_ZERO_7B = (DEFAULT_REASONER, BEST_ON_REASONSEG_TEST)
_README = "reference README at tag 77f9ea5 (assets/evaluation_results.png)"

#: The published numbers: ReasonSeg zero-shot (gIoU, cIoU), referring segmentation (cIoU), newer peers.
PAPER_RESULTS: tuple[PaperResult, ...] = (
    *_pair("LISA-7B-LLaVA1.5", "reasonseg", (53.6, 52.3), (48.7, 48.8), evaluation="lisa"),
    *_pair("Qwen2.5-VL-3B + SAM2 (no RL)", "reasonseg", (53.8, 44.1), (47.6, 37.4),
           reasoners=("Qwen/Qwen2.5-VL-3B-Instruct",)),
    *_pair("Seg-Zero-3B", "reasonseg", (62.6, 58.5), (56.1, 48.6),
           note="no released checkpoint: train recipes/seg_zero_3b.yaml"),
    PaperResult("Seg-Zero-7B", "reasonseg", "val", 62.6, 62.0, reasoners=_SEG_ZERO_7B,
                note="the reference's README: its best val figure came from a checkpoint it did not release"),
    PaperResult("Seg-Zero-7B", "reasonseg", "test", 57.5, 52.0, reasoners=_SEG_ZERO_7B[::-1],
                note=f"the reference's README: {BEST_ON_REASONSEG_TEST} is its best on ReasonSeg test"),
    PaperResult("Seg-Zero-7B-Best-on-ReasonSegTest (authors' run)", "reasonseg", "test", 58.52, 52.93,
                reasoners=(BEST_ON_REASONSEG_TEST,), source=_README,
                note="the same checkpoint evaluated by its authors with evaluation_scripts/eval_reasonseg.sh"),
    *_ref("Seg-Zero-7B", 80.3, 76.2, 72.6, reasoners=_SEG_ZERO_7B),
    *_ref("Seg-Zero-3B", 79.3, 73.7, 71.5),
    *_pair("VisionReasoner-7B", "reasonseg", (66.3, None), (63.6, None), reasoners=(MULTI_OBJECT_REASONER,),
           evaluation="own", source="VisionReasoner paper", note=_CLAIM),
    *_pair("LENS-3B (end-to-end RL)", "reasonseg", (62.1, 64.9), (57.2, 58.0),
           evaluation="own", source="LENS paper", note=_CLAIM),
    PaperResult("GenSeg-R1-4B", "reasonseg", "test", 68.4, None, evaluation="own", source="GenSeg-R1 paper",
                note=f"{_CLAIM}; SPEC does not name the metric, listed as gIoU"),
    *_pair("SAM 3 Agent (closed MLLM)", "reasonseg", (76.0, None), (73.8, None), evaluation="own",
           source="SAM 3 paper", note=f"{_CLAIM}; SPEC gives '76.0 / 73.8', read as val / test gIoU"),
)  # fmt: skip


def paper_numbers(benchmark: str, split: str, subset: str = ALL, protocol: str | None = None) -> list[dict[str, Any]]:
    """The published numbers (percent) for a benchmark split, or for one subset of it; with ``protocol``
    only those a run under that protocol compares with (:attr:`PaperResult.protocol`)."""
    return [
        {"method": p.method, "giou": p.giou, "ciou": p.ciou, "evaluation": p.evaluation,
         "reasoners": list(p.reasoners), "source": p.source, "note": p.note}
        for p in PAPER_RESULTS
        if (p.benchmark, p.split, p.subset) == (benchmark, split, subset) and protocol in (None, p.protocol)
    ]  # fmt: skip


__all__ = [
    "ALL", "BEST_ON_REASONSEG_TEST", "EVALUATIONS", "PAPER_RESULTS", "PaperResult", "checkpoint_name",
    "paper_numbers",
]  # fmt: skip
