"""The reference protocol's evaluation, point by point of SPEC section 9.1, on hand-worked values.

Each test states what the reference release's ``evaluation_scripts/evaluation.py`` does and checks the
twin against values worked out by hand from that rule, beside what segzero's own protocol does.
"""

from __future__ import annotations

import numpy as np
import pytest

from segzero.answer import ParseStatus, parse_answer, parse_answer_reference
from segzero.config import PipelineConfig
from segzero.defaults import DEFAULT_SEGMENTER, IGNORE, REFERENCE_SEGMENTER
from segzero.errors import InputError
from segzero.evaluation.differences import sample_differences
from segzero.evaluation.metrics import IoUAccumulator, counted, sample_iou, sample_iou_terms
from segzero.evaluation.results import RunConfig, protocol_scores, summarize
from segzero.frames import Frame, ObjectPrompt, map_object

R840 = Frame.reasoner(840)


def _gt() -> np.ndarray:
    """4 x 4: target column 0 (4 px), ignore column 3 rows 0-1 (2 px)."""
    gt = np.zeros((4, 4), np.uint8)
    gt[:, 0] = 1
    gt[0:2, 3] = IGNORE
    return gt


# --- ignore regions ----------------------------------------------------------------------------------


def test_ignore_pixels_are_target_under_the_reference_and_left_out_under_segzero():
    pred = np.zeros((4, 4), bool)
    pred[0, 0:4] = True  # one target pixel, two plain background, one ignore
    assert sample_iou_terms(pred, _gt(), "segzero") == (1, 6)  # target 4 + 2 background; ignore in neither
    assert sample_iou_terms(pred, _gt(), "reference") == (2, 8)  # target 6 (4 + 2 ignore) + 2 background
    # A failed answer: union = the target, which under the reference includes the ignore pixels.
    assert sample_iou_terms(None, _gt(), "segzero") == (0, 4)
    assert sample_iou_terms(None, _gt(), "reference") == (0, 6)


# --- answer extraction -------------------------------------------------------------------------------

GOOD = '{"bbox": [10, 20, 30, 40], "points_1": [12, 22], "points_2": [28, 38]}'


def _read(text: str):
    return parse_answer_reference(text, R840)


def test_the_json_is_the_first_brace_span_anywhere_read_with_json_loads():
    ok = _read(f"<think>left</think><answer>{GOOD}</answer>")
    assert ok.status is ParseStatus.OK and ok.thinking == "left"
    assert ok.objects[0].box == (10, 20, 30, 40) and ok.objects[0].points == ((12, 22), (28, 38))
    # Braces in the thinking come first: the reference reads them and fails; segzero reads the answer.
    quoted = f"<think>a set {{1, 2}} of shapes</think><answer>{GOOD}</answer>"
    assert _read(quoted).status is ParseStatus.INVALID_JSON and parse_answer(quoted).ok
    # The prompt's own example uses single quotes: json.loads refuses them, segzero's parser does not.
    single = "<think>x</think><answer>{'bbox': [1, 2, 3, 4], 'points_1': [1, 2], 'points_2': [2, 3]}</answer>"
    assert _read(single).status is ParseStatus.INVALID_JSON and parse_answer(single).ok
    assert _read("<think>x</think><answer>none</answer>").status is ParseStatus.NO_ANSWER
    # "{}" is no match ([^}]+ needs a character); the next span is.
    assert _read("<think>x</think>{} " + GOOD).status is ParseStatus.OK


def test_the_box_key_is_the_first_containing_bbox_and_the_points_the_first_two_containing_points():
    # The first bbox key decides even if a later one is good; its case does not matter.
    first_bad = '{"BBox_a": [1, 2, 3], "bbox": [1, 2, 3, 4], "points_1": [1, 1], "points_2": [2, 2]}'
    assert _read("<think>x</think>" + first_bad).status is ParseStatus.INVALID_VALUES
    upper = '{"BBOX_2D": [1, 2, 3, 4], "Points_b": [5, 6], "POINTS_a": [7, 8], "points_c": [9, 9]}'
    obj = _read("<think>x</think>" + upper).objects[0]
    assert obj.box == (1, 2, 3, 4) and obj.points == ((5, 6), (7, 8))  # JSON order, not by name; third unread
    # "point_1" holds no "points": fewer than two point keys.
    singular = '{"bbox": [1, 2, 3, 4], "point_1": [1, 1], "point_2": [2, 2]}'
    assert _read("<think>x</think>" + singular).status is ParseStatus.INVALID_VALUES
    assert parse_answer("<think>x</think>" + singular).ok  # segzero reads any key with "point"


def test_each_coordinate_passes_int_and_only_the_first_two_of_a_point_are_read():
    text = '<think>x</think>{"bbox": [10.9, "20", true, 40], "points_1": [1, 2, 99], "points_2": "34"}'
    obj = _read(text).objects[0]
    # Floats stay for the mapping to truncate; "20" -> 20, true -> 1; "34" is the point (3, 4).
    assert obj.box == (10.9, 20, 1, 40) and obj.points == ((1, 2), (3, 4))
    for bad in ('[1, 2, 3, "4.5"]', "[1, 2, 3, null]", "[1, 2, 3, NaN]", "[1, 2, 3, Infinity]", "[1, 2, 3, [4]]"):
        answer = _read('<think>x</think>{"bbox": ' + bad + ', "points_1": [1, 1], "points_2": [2, 2]}')
        assert answer.status is ParseStatus.INVALID_VALUES and answer.objects == (), bad


def test_a_missing_thinking_or_one_with_a_lt_sign_fails_a_valid_answer():
    for text in (GOOD, f"<answer>{GOOD}</answer>", f"<think></think>{GOOD}", f"<think>a < b</think>{GOOD}"):
        answer = _read(text)
        assert answer.status is ParseStatus.NO_THINKING and not answer.ok and answer.objects == ()
        assert parse_answer(text).ok  # segzero does not need the thinking
    # The thinking may come anywhere, even after the answer, and hold newlines.
    assert _read(f"{GOOD} <think>one\ntwo</think>").status is ParseStatus.OK


def test_nothing_is_clamped_or_reordered_when_read():
    obj = _read('<think>x</think>{"bbox": [900, 50, -5, 10], "points_1": [1, 1], "points_2": [2, 2]}').objects[0]
    assert obj.box == (900, 50, -5, 10)
    assert parse_answer('{"bbox": [900, 50, -5, 10]}').objects[0].box == (0, 10, 840, 50)


# --- coordinate mapping ------------------------------------------------------------------------------


def _to_image(box, points, size, rounding):
    obj = ObjectPrompt(box=box, points=points, frame=R840)
    return map_object(obj, Frame.image(size), rounding=rounding)


def test_reference_rounding_truncates_then_rounds_half_to_even_without_clamping():
    # Width 420: the factor is 0.5. int(1.9) = 1 -> 0.5 -> 0 (half to even); segzero: floor(0.95 + 0.5) = 1.
    # 5 -> 2.5 -> 2 (segzero 3); 3 -> 1.5 -> 2; 900 -> 450 (segzero clamps to 419); -4 -> -2 (segzero 0).
    ref = _to_image((1.9, 5, 900, -4), ((3, 3),), (420, 420), "reference")
    ours = _to_image((1.9, 5, 900, -4), ((3, 3),), (420, 420), "segzero")
    assert ref.box == (0, 2, 450, -2) and ref.points == ((2, 2),)
    assert ours.box == (1, 3, 419, 0) and ours.points == ((2, 2),)
    # Corners keep their order under the reference.
    assert _to_image((100, 60, 20, 10), (), (840, 840), "reference").box == (100, 60, 20, 10)


def test_reference_rounding_multiplies_by_the_factor_already_rounded_to_a_float():
    # 420 * (27 / 840) = 13.499999999999998 -> 13, where 420 * 27 / 840 = 13.5 -> 14 (half to even).
    assert _to_image(None, ((420, 420),), (27, 27), "reference").points == ((13, 13),)
    # 525 * (4 / 840) = 2.5000000000000004 -> 3, where the exact 2.5 would round to 2.
    assert _to_image(None, ((525, 525),), (4, 4), "reference").points == ((3, 3),)


def test_a_coordinate_too_large_for_a_pixel_fails_the_reference_mapping():
    with pytest.raises(ValueError, match="cannot be mapped"):
        _to_image((1.7e308, 0, 1, 1), (), (1000, 1000), "reference")  # x 1000 / 840: infinite


# --- empty unions and the figures --------------------------------------------------------------------


def test_an_empty_union_is_left_out_when_segmented_and_scores_0_when_failed():
    assert counted(0, parsed=True, protocol="reference") is False
    assert counted(0, parsed=False, protocol="reference") is True
    assert counted(0, parsed=True, protocol="segzero") is True
    assert sample_iou(0, 0, "reference") == 0.0 and sample_iou(0, 0, "segzero") == 1.0
    acc = IoUAccumulator("reference")
    acc.add("segmented-empty", 0, 0, parsed=True, include=False)
    acc.add("failed-empty", 0, 0, parsed=False)
    acc.add("half", 1, 2)
    summary = acc.summary()
    assert summary["n"] == 2 and summary["left_out"] == 1
    assert summary["giou"] == pytest.approx(0.25) and summary["ciou"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="added twice"):
        acc.add("segmented-empty", 1, 1)
    only_empty = IoUAccumulator("reference")
    only_empty.add("a", 0, 0, parsed=False)
    assert only_empty.summary()["ciou"] == 0.0  # the reference's cIoU with no union at all


def test_protocol_scores_and_the_summary_of_both_conventions():
    empty = np.zeros((4, 4), np.uint8)
    blank = np.zeros((4, 4), bool)
    scores = protocol_scores(blank, empty, parsed=True)
    assert scores["segzero"] == {"intersection": 0, "union": 0, "iou": 1.0, "counted": True}
    assert scores["reference"] == {"intersection": 0, "union": 0, "iou": 0.0, "counted": False}
    pred = np.zeros((4, 4), bool)
    pred[:, 0] = True
    records = [
        {"id": "empty", "request": "r", "parse_status": "ok", **scores["reference"], "scores": scores,
         "differences": ["empty_union"]},
        {"id": "ignore", "request": "r", "parse_status": "ok", "scores": protocol_scores(pred, _gt(), True),
         "differences": ["ignore"], **protocol_scores(pred, _gt(), True)["reference"]},
    ]  # fmt: skip
    summary = summarize(records, "reference")
    assert summary["protocol"] == "reference"
    assert summary["overall"]["n"] == 1 and summary["overall"]["left_out"] == 1
    assert summary["overall"]["giou"] == pytest.approx(4 / 6)  # the ignore pixels are missed target
    segzero = summary["other_protocols"]["segzero"]["overall"]
    assert segzero["n"] == 2 and segzero["giou"] == pytest.approx((1.0 + 1.0) / 2)
    assert summary["differences"] == {"ignore": 1, "reading": 0, "thinking": 0, "prompts": 0, "empty_union": 1}


def test_runs_from_before_protocols_read_as_segzero():
    config = RunConfig.from_json({"benchmark": "reasonseg", "split": "val", "reasoner": "m", "segmenter": "s"})
    assert config.protocol == "segzero" and config.pipeline["protocol"] == "segzero"
    old = [{"id": "a", "request": "r", "intersection": 1, "union": 2, "iou": 0.5, "parse_status": "ok"}]
    summary = summarize(old)
    assert summary["overall"]["giou"] == 0.5 and summary["other_protocols"] == {} and summary["differences"] == {}


# --- which differences touch a sample ----------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, names",
    [
        ("<think>x</think>" + GOOD, []),  # read alike, and 10..40 of 840 map alike onto 840 pixels
        ("<think>x</think>{'bbox': [10, 20, 30, 40], 'points_1': [12, 22], 'points_2': [28, 38]}", ["reading"]),
        (GOOD, ["thinking"]),
        ('<think>x</think>{"bbox": [30, 40, 10, 20], "points_1": [12, 22], "points_2": [28, 38]}', ["prompts"]),
        ("nothing at all", []),
    ],
)
def test_sample_differences_name_what_changed(completion, names):
    scores = protocol_scores(None, np.ones((4, 4), np.uint8), parsed=False)
    assert sample_differences(completion, (840, 840), 840, scores) == names


def test_rounding_is_a_difference_only_where_it_moves_a_pixel():
    scores = protocol_scores(None, np.ones((4, 4), np.uint8), parsed=False)
    # Width 420: 5 -> 2 (reference) vs 3 (segzero); 10 -> 5 either way.
    moved = '<think>x</think>{"bbox": [5, 10, 30, 40], "points_1": [12, 22], "points_2": [28, 38]}'
    same = '<think>x</think>{"bbox": [4, 10, 30, 40], "points_1": [12, 22], "points_2": [28, 38]}'
    assert sample_differences(moved, (420, 420), 840, scores) == ["prompts"]
    assert sample_differences(same, (420, 420), 840, scores) == []


# --- settings ----------------------------------------------------------------------------------------


def test_the_reference_defaults_to_sam_2_0_and_refuses_settings_that_contradict_it():
    assert PipelineConfig(reasoner="r").resolved().segmenter == DEFAULT_SEGMENTER
    assert PipelineConfig(reasoner="r", protocol="reference").resolved().segmenter == REFERENCE_SEGMENTER
    assert PipelineConfig(reasoner="r", protocol="reference", segmenter="sam2.1").resolved().segmenter == "sam2.1"
    for settings, message in [
        ({"frame": 672}, "--frame 672 contradicts --protocol reference, where answers are mapped from the 840"),
        ({"segmenter_mode": "box"}, "--segmenter-mode box contradicts --protocol reference"),
        ({"max_new_tokens": 512}, "--max-new-tokens 512 contradicts --protocol reference"),
        ({"prompt": "no_think"}, "--prompt no_think contradicts --protocol reference"),
    ]:
        with pytest.raises(InputError, match=message):
            PipelineConfig(reasoner="r", protocol="reference", **settings).resolved()
        PipelineConfig(reasoner="r", **settings).resolved()  # free under segzero
    with pytest.raises(InputError, match="--protocol 'lisa' is not known; choose one of: segzero, reference"):
        PipelineConfig(protocol="lisa")


def test_a_reasoner_that_records_its_frame_keeps_it_and_one_recording_another_prompt_is_refused(tmp_path):
    from segzero.hub import write_model_meta

    (tmp_path / "toy").mkdir()
    (tmp_path / "ablation").mkdir()
    write_model_meta(tmp_path / "toy", frame=112, prompt="seg_zero")
    config = PipelineConfig(reasoner=str(tmp_path / "toy"), protocol="reference").resolved()
    assert config.frame == 112
    with pytest.raises(InputError, match="--frame 840 contradicts"):
        PipelineConfig(reasoner=str(tmp_path / "toy"), protocol="reference", frame=840).resolved()
    write_model_meta(tmp_path / "ablation", frame=840, prompt="box_only")
    with pytest.raises(InputError, match="segzero.json asks for the prompt 'box_only'.*--protocol segzero"):
        PipelineConfig(reasoner=str(tmp_path / "ablation"), protocol="reference").resolved()


def test_a_box_with_swapped_corners_is_drawn_as_the_same_rectangle():
    from PIL import Image

    from segzero.drawing import draw_overlay

    image, mask = Image.new("RGB", (60, 40)), np.zeros((40, 60), bool)
    frame = Frame.image((60, 40))
    swapped = draw_overlay(image, mask, [ObjectPrompt(box=(50, 30, 10, 5), frame=frame)])
    ordered = draw_overlay(image, mask, [ObjectPrompt(box=(10, 5, 50, 30), frame=frame)])
    assert np.array_equal(np.asarray(swapped), np.asarray(ordered)) and np.asarray(ordered).any()
