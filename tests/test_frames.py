from segzero.answer import ObjectPrompt
from segzero.frames import scale, to_image_frame, to_reasoner_frame


def test_reasoner_to_image_exact_values():
    # 840 frame -> 640x480 image: x * 640/840, y * 480/840, rounded half up.
    obj = ObjectPrompt((10, 100, 200, 210), ((30, 110), (35, 180)))
    got = to_image_frame(obj, (640, 480))
    assert got.box == (8, 57, 152, 120)  # 7.62->8, 57.14->57, 152.38->152, 120.0->120
    assert got.points == ((23, 63), (27, 103))  # 22.86->23, 62.86->63, 26.67->27, 102.86->103


def test_half_rounds_up_and_clamps_inside_the_image():
    assert scale(1, 840, 420) == 1  # 0.5 -> 1
    got = to_image_frame(ObjectPrompt((0, 0, 840, 840), ((840, 0),)), (100, 50))
    assert got.box == (0, 0, 99, 49)
    assert got.points == ((99, 0),)


def test_image_to_reasoner_frame_matches_spec_formula():
    obj = ObjectPrompt((0, 0, 639, 479), ((320, 240),))
    got = to_reasoner_frame(obj, (640, 480))
    assert got.box == (0, 0, int(639 * 840 / 640 + 0.5), int(479 * 840 / 480 + 0.5))
    assert got.points == ((420, 420),)


def test_configurable_frame():
    got = to_image_frame(ObjectPrompt((56, 56, 112, 112), ()), (224, 448), frame=112)
    assert got.box == (112, 224, 223, 447)
