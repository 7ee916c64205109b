import numpy as np
import pytest
from PIL import Image

from segzero.frames import Frame, ObjectPrompt, map_object, scale, to_image_frame, to_reasoner_frame

R840 = Frame.reasoner(840)


def test_reasoner_to_image_exact_values():
    # 840 frame -> 640x480 image: x * 640/840, y * 480/840, rounded half up.
    obj = ObjectPrompt(box=(10, 100, 200, 210), points=((30, 110), (35, 180)), frame=R840)
    got = to_image_frame(obj, (640, 480))
    assert got.box == (8, 57, 152, 120)  # 7.62->8, 57.14->57, 152.38->152, 120.0->120
    assert got.points == ((23, 63), (27, 103))  # 22.86->23, 62.86->63, 26.67->27, 102.86->103
    assert got.frame == Frame.image((640, 480)) and got.frame.kind == "image"


def test_half_rounds_up_and_clamps_inside_the_image():
    assert scale(1, 840, 420) == 1  # 0.5 -> 1
    got = to_image_frame(ObjectPrompt(box=(0, 0, 840, 840), points=((840, 0),), frame=R840), (100, 50))
    assert got.box == (0, 0, 99, 49)
    assert got.points == ((99, 0),)


def test_image_to_reasoner_frame_matches_spec_formula():
    obj = ObjectPrompt(box=(0, 0, 639, 479), points=((320, 240),), frame=Frame.image((640, 480)))
    got = to_reasoner_frame(obj)
    assert got.box == (0, 0, int(639 * 840 / 640 + 0.5), int(479 * 840 / 480 + 0.5))
    assert got.points == ((420, 420),)
    assert got.frame == R840


def test_the_frame_side_comes_from_the_object():
    got = to_image_frame(ObjectPrompt(box=(56, 56, 112, 112), frame=Frame.reasoner(112)), (224, 448))
    assert got.box == (112, 224, 223, 447)


def test_a_mapping_cannot_be_done_twice():
    obj = ObjectPrompt(box=(10, 10, 20, 20), frame=R840)
    once = to_image_frame(obj, (640, 480))
    with pytest.raises(ValueError, match="scale it twice"):
        to_image_frame(once, (640, 480))
    with pytest.raises(ValueError, match="scale it twice"):
        to_reasoner_frame(obj)


def test_a_resized_copy_of_an_image_is_another_image_frame():
    obj = ObjectPrompt(box=(0, 10, 99, 49), points=((50, 25),), frame=Frame.image((100, 50)))
    half = map_object(obj, Frame.image((50, 25)))
    assert half.box == (0, 5, 49, 24) and half.points == ((25, 13),)


def test_the_frame_is_part_of_the_type_and_must_be_named():
    with pytest.raises(TypeError):
        ObjectPrompt(box=(1, 2, 3, 4))  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Frame("pixels", 10, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Frame.image((0, 10))


def test_segmenter_refuses_prompts_that_were_not_mapped(tiny_models):
    from segzero.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(str(tiny_models.segmenter), device="cpu")
    image = Image.fromarray(np.full((48, 64, 3), 128, np.uint8))
    answer = ObjectPrompt(box=(10, 10, 200, 200), frame=R840)
    with pytest.raises(ValueError, match="to_image_frame"):
        segmenter.segment_many([image], [[answer]])
    other_image = ObjectPrompt(box=(1, 1, 5, 5), frame=Frame.image((32, 32)))
    with pytest.raises(ValueError, match="image's pixels"):
        segmenter.segment_many([image], [[other_image]])
    assert segmenter.segment_many([image], [[to_image_frame(answer, image.size)]])[0].mask.shape == (48, 64)
