"""gRefCOCO's figures on hand-worked values: gIoU, cIoU, N-acc, T-acc, from records to the report."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from segzero.answer import ParseStatus
from segzero.evaluation.metrics import GeneralizedAccumulator, generalized_iou, predicted_empty
from segzero.evaluation.report import report_rows, rows_to_markdown, run_summary
from segzero.evaluation.results import error_record, record_from_result, summarize


def test_per_sample_iou_by_grefcocos_rules():
    assert generalized_iou(0, 0, no_target=True, pred_empty=True) == 1.0  # empty answer, empty target
    assert generalized_iou(0, 7, no_target=True, pred_empty=False) == 0.0  # a mask where nothing is
    assert generalized_iou(0, 0, no_target=True, pred_empty=None) == 0.0  # a failed answer is not "nothing"
    assert generalized_iou(3, 4, no_target=False, pred_empty=False) == 0.75
    assert generalized_iou(0, 4, no_target=False, pred_empty=True) == 0.0
    assert generalized_iou(0, 0, no_target=False, pred_empty=None) == 0.0


def test_predicted_empty_is_judged_on_a_read_answers_mask():
    mask = np.zeros((3, 4), bool)
    assert predicted_empty(mask, parsed=True) is True
    mask[1, 2] = True
    assert predicted_empty(mask, parsed=True) is False
    assert predicted_empty(mask, parsed=False) is None and predicted_empty(None, parsed=True) is None


# Six samples: (id, intersection, union, no_target, pred_empty) and their hand-worked IoU.
SAMPLES = [
    ("nt-empty", 0, 0, True, True),  # 1
    ("nt-10px", 0, 10, True, False),  # 0, and 10 pixels of union
    ("t-half", 15, 30, False, False),  # 0.5
    ("t-empty", 0, 40, False, True),  # 0: the target (40 px) is missed
    ("t-failed", 0, 10, False, None),  # 0
    ("nt-failed", 0, 0, True, None),  # 0
]


def test_figures_over_zero_one_and_many():
    acc = GeneralizedAccumulator()
    for sample_id, inter, union, no_target, pred_empty in SAMPLES:
        acc.add(sample_id, inter, union, no_target=no_target, pred_empty=pred_empty)
    summary = acc.summary()
    assert summary["giou"] == pytest.approx((1 + 0.5) / 6)
    assert summary["ciou"] == pytest.approx(15 / (10 + 30 + 40 + 10))
    assert summary["n_acc"] == pytest.approx(1 / 3)  # nt-empty of the three no-target samples
    assert summary["t_acc"] == pytest.approx(1 / 3)  # t-half of the three target samples
    assert (summary["n"], summary["n_no_target"], summary["n_target"]) == (6, 3, 3)
    assert (summary["intersection"], summary["union"]) == (15, 90)

    with pytest.raises(ValueError, match="added twice"):
        acc.add("t-half", 1, 2, no_target=False, pred_empty=False)
    with pytest.raises(ValueError, match="matches nothing but has an intersection"):
        acc.add("odd", 1, 2, no_target=True, pred_empty=False)

    only_empty = GeneralizedAccumulator()
    only_empty.add("a", 0, 0, no_target=True, pred_empty=True)
    assert only_empty.summary()["ciou"] == 1.0 and only_empty.summary()["t_acc"] is None
    assert GeneralizedAccumulator().summary()["giou"] is None


def _result(mask: np.ndarray, status: ParseStatus = ParseStatus.OK):
    return SimpleNamespace(
        request="r", thinking=None, completion="<answer>[]</answer>", mask=mask, status=status, objects=[],
        timings={},
    )  # fmt: skip


def test_records_carry_the_flags_and_the_summary_the_figures():
    """Records built from masks the way the runner builds them; the summary's figures as above."""
    h, w = 5, 10
    empty_gt = np.zeros((h, w), np.uint8)
    target = np.zeros((h, w), np.uint8)
    target[:, :4] = 1  # 20 px
    pred_half = np.zeros((h, w), bool)
    pred_half[:, 1:7] = True  # 30 px, 15 of them on the target -> I 15, U 35
    ten = np.zeros((h, w), bool)
    ten[0, :] = True  # 10 px

    records = [
        record_from_result("nt-empty", _result(np.zeros((h, w), bool)), empty_gt, extra={"no_target": True}),
        record_from_result("nt-10px", _result(ten), empty_gt, extra={"no_target": True}),
        record_from_result("t-half", _result(pred_half), target, extra={"no_target": False}),
        record_from_result("t-empty", _result(np.zeros((h, w), bool)), target, extra={"no_target": False}),
        record_from_result(
            "t-failed", _result(np.zeros((h, w), bool), ParseStatus.NO_ANSWER), target, extra={}
        ),
        error_record("nt-failed", "r", empty_gt, RuntimeError("boom"), extra={"no_target": True}),
    ]
    assert [r.pred_empty for r in records] == [True, False, False, True, None, None]
    assert (records[1].intersection, records[1].union) == (0, 10)
    summary = summarize(records)
    gen = summary["generalized"]
    assert gen["giou"] == pytest.approx((1 + 15 / 35) / 6)
    assert gen["ciou"] == pytest.approx(15 / (10 + 35 + 20 + 20))
    assert gen["n_acc"] == pytest.approx(1 / 3) and gen["t_acc"] == pytest.approx(1 / 3)
    assert gen["n_target"] == 3  # t-failed does not say: a target sample
    # The generic figures count an empty union as agreement, the failed no-target answer included.
    assert summary["overall"]["giou"] == pytest.approx((1 + 0 + 15 / 35 + 0 + 0 + 1) / 6)
    assert "generalized" not in summarize([r for r in records if "no_target" not in r.extra])

    config = {
        "benchmark": "grefcoco",
        "split": "val",
        "pipeline": {"reasoner": "x"},
        "extra": {"subset": "all"},
    }
    rows = report_rows([run_summary({**summary, "config": config}, "run")])
    run = next(r for r in rows if r.source == "run" and r.protocol == "segzero")
    assert run.giou == pytest.approx(100 * gen["giou"]) and run.n_acc == pytest.approx(100 / 3)
    rela = next(r for r in rows if r.name == "ReLA (Swin-B)")
    assert (rela.giou, rela.ciou) == (63.60, 62.42)
    assert next(r for r in rows if r.name == "GenSeg-R1-G").n_acc == 82.40
    header = rows_to_markdown(rows).splitlines()[0]
    assert "| cIoU | N-acc | T-acc | Δ gIoU / cIoU |" in header
    plain = summarize([r for r in records if "no_target" not in r.extra])
    reasonseg = report_rows([run_summary({**plain, "config": {**config, "benchmark": "reasonseg"}}, "rs")])
    assert "N-acc" not in rows_to_markdown(reasonseg)  # no accuracies measured, no such columns
