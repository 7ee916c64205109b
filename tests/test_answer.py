import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from segzero.answer import ParseStatus, parse_answer
from segzero.frames import Frame, ObjectPrompt

SEG_ZERO = "<think>The knife is on the left.</think><answer>{'bbox': [10,100,200,210], 'points_1': [30,110], 'points_2': [35,180]}</answer>"


def test_seg_zero_python_literal_answer():
    a = parse_answer(SEG_ZERO)
    assert a.status is ParseStatus.OK and a.ok
    assert a.thinking == "The knife is on the left."
    assert a.objects == (ObjectPrompt(box=(10, 100, 200, 210), points=((30, 110), (35, 180)), frame=Frame.reasoner(840)),)


def test_json_answer_without_think_and_text_around():
    a = parse_answer('Sure! <answer> here: {"bbox": [1, 2, 3, 4], "points_1": [2, 3], "points_2": [3, 3]} done</answer>')
    assert a.status is ParseStatus.OK
    assert a.thinking is None
    assert a.objects[0].box == (1, 2, 3, 4)


def test_answer_without_any_tags():
    a = parse_answer('{"bbox": [5, 6, 7, 8], "points_1": [6, 7], "points_2": [6, 7]}')
    assert a.objects[0].box == (5, 6, 7, 8)


def test_multi_object_list():
    text = '<think>two cups</think><answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, {"bbox_2d": [225,296,706,786], "point_2d": [302,410]}]</answer>'
    a = parse_answer(text)
    assert a.status is ParseStatus.OK
    assert [o.box for o in a.objects] == [(10, 100, 200, 210), (225, 296, 706, 786)]
    assert [o.points for o in a.objects] == [((30, 110),), ((302, 410),)]


def test_floats_swapped_corners_and_clamping():
    a = parse_answer('{"bbox": [300.5, 900, -20, 10.25], "points_1": [-1, 2000], "points_2": [5.5, 6]}', frame=840)
    assert a.objects[0].box == (0, 10.25, 300.5, 840)
    assert a.objects[0].points == ((0, 840), (5.5, 6))


def test_points_in_key_order_whatever_the_dict_order():
    a = parse_answer('{"points_2": [9, 9], "bbox": [0, 0, 10, 10], "points_1": [1, 1]}')
    assert a.objects[0].points == ((1, 1), (9, 9))


def test_nan_inf_wrong_arity_and_strings_are_rejected_with_reasons():
    cases = {
        '{"bbox": [NaN, 1, 2, 3]}': "finite",
        '{"bbox": [Infinity, 1, 2, 3]}': "finite",
        '{"bbox": [1, 2, 3]}': "4 numbers",
        '{"bbox": [1, 2, 3, 4], "points_1": [1, 2, 3]}': "2 numbers",
        '{"bbox": ["1", 2, 3, 4]}': "not a number",
        '{"bbox": [true, 2, 3, 4]}': "not a number",
        '{"label": "cup"}': "no 'bbox' or 'point'",
    }
    for text, why in cases.items():
        a = parse_answer(text)
        assert a.status is ParseStatus.INVALID_VALUES, text
        assert why in a.reason, (text, a.reason)
        assert a.objects == ()


def test_partial_multi_object_keeps_the_good_ones():
    a = parse_answer('[{"bbox_2d": [1,2,3,4], "point_2d": [2,3]}, {"bbox_2d": [1,2], "point_2d": [2,3]}]')
    assert a.status is ParseStatus.PARTIAL
    assert len(a.objects) == 1 and "object 1" in a.reason


def test_box_only_and_points_only_answers():
    r840 = Frame.reasoner(840)
    assert parse_answer("{'bbox': [1,2,3,4]}").objects == (ObjectPrompt(box=(1, 2, 3, 4), frame=r840),)
    assert parse_answer("{'points_1': [1,2], 'points_2': [3,4]}").objects == (
        ObjectPrompt(box=None, points=((1, 2), (3, 4)), frame=r840),
    )


def test_failures_are_statuses_not_exceptions():
    assert parse_answer("I cannot see it.").status is ParseStatus.NO_ANSWER
    assert parse_answer("<answer>{'bbox': [1, 2,").status is ParseStatus.INVALID_JSON
    assert parse_answer("[1, 2, 3, 4]").status is ParseStatus.INVALID_JSON
    assert parse_answer("<answer>[]</answer>").status is ParseStatus.OK  # "nothing matches"
    assert parse_answer(None).status is ParseStatus.NO_ANSWER  # type: ignore[arg-type]


def test_raw_keeps_the_decoded_value_for_format_rewards():
    assert parse_answer(SEG_ZERO).raw == {"bbox": [10, 100, 200, 210], "points_1": [30, 110], "points_2": [35, 180]}


def _check_invariants(a, frame):
    assert isinstance(a.status, ParseStatus)
    assert a.ok == (a.status in (ParseStatus.OK, ParseStatus.PARTIAL))
    if a.status is not ParseStatus.OK:
        assert a.reason
    for obj in a.objects:
        assert obj.box is not None or obj.points or True
        values = list(obj.box or ()) + [v for p in obj.points for v in p]
        assert all(math.isfinite(v) and 0 <= v <= frame for v in values)
        if obj.box:
            assert obj.box[0] <= obj.box[2] and obj.box[1] <= obj.box[3]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_arbitrary_text(text):
    _check_invariants(parse_answer(text), 840)


alphabet = st.sampled_from(list("{}[]'\",:0123456789.-e bboxpoints_12<>/thinkanswerNaI") + ["bbox", "points_1", "<answer>", "</answer>"])


@settings(max_examples=300, deadline=None)
@given(st.lists(alphabet, max_size=80).map("".join))
def test_never_raises_on_answer_shaped_noise(text):
    _check_invariants(parse_answer(text), 840)


numbers = st.one_of(st.integers(-5000, 5000), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(numbers, min_size=0, max_size=6), st.lists(numbers, max_size=3), st.sampled_from([112, 840]))
def test_generated_answers_are_read_or_rejected(box, point, frame):
    text = "<think>t</think><answer>" + json.dumps({"bbox": box, "points_1": point, "points_2": [1, 1]}) + "</answer>"
    a = parse_answer(text, frame=frame)
    _check_invariants(a, frame)
    valid = len(box) == 4 and len(point) == 2 and all(math.isfinite(float(v)) for v in box + point)
    assert a.ok == valid


def test_an_integer_beyond_the_float_range_is_rejected_not_raised():
    # A model stuck repeating "0" writes this; float() of such an int raises OverflowError.
    answer = '{"bbox":[1' + "0" * 400 + ',0,10,10], "points_1": [1, 1], "points_2": [2, 2]}'
    text = f"<think>t</think><answer>{answer}</answer>"
    a = parse_answer(text)
    assert a.status is ParseStatus.INVALID_VALUES
    assert "about 401 digits" in a.reason and "too large" in a.reason


def test_a_python_hex_integer_too_long_to_print_is_rejected_with_a_short_reason():
    # Python refuses to print ints of over 4,300 digits; the reason must not try.
    a = parse_answer("<answer>{'bbox': [0x" + "f" * 4000 + ", 0, 1, 1]}</answer>")
    assert a.status is ParseStatus.INVALID_VALUES and "too large" in a.reason
    b = parse_answer("<answer>{'bbox': [0x" + "f" * 4000 + "], 'points_1': [1, 2]}</answer>")
    assert b.status is ParseStatus.INVALID_VALUES and "too long to show" in b.reason and len(b.reason) < 200


def test_a_float_sized_big_integer_is_clamped_like_any_out_of_frame_value():
    a = parse_answer('{"bbox": [1' + "0" * 300 + ', 0, 10, 10]}', frame=840)
    assert a.status is ParseStatus.OK and a.objects[0].box == (10, 0, 840, 10)
