"""`segzero prepare --protocol reference`: the reference's points, rounding and stored images (SPEC 9.3),
and one sentence, exit 2, for a protocol that is unknown or contradicted."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from segzero.cli import app
from segzero.data import SkipLog, iter_samples, load_prepared, save_prepared
from segzero.data.reference_prep import reference_training_samples
from segzero.errors import InputError
from segzero.frames import Frame, ObjectPrompt, map_object, scale
from segzero.geometry import distance_to_background, mask_prompts, reference_points
from segzero.protocols import PROTOCOLS, check_protocol, prepare_settings
from tests.test_data_filter import OracleSegmenter
from tests.test_data_fixtures import make_refer, random_rect_masks, rect

runner = CliRunner()


def brute_reference_points(mask: np.ndarray):
    """The reference's rules written the slow way (unpadded: only background pixels are boundary)."""
    by, bx = np.nonzero(~mask)
    pixels = [(int(x), int(y)) for y, x in zip(*np.nonzero(mask))]  # row-major
    dist = {p: math.sqrt(min((bx - p[0]) ** 2 + (by - p[1]) ** 2)) for p in pixels}
    top = max(dist.values())
    p1 = next(p for p in pixels if dist[p] == top)
    from_first = [((x - p1[0]) ** 2 + (y - p1[1]) ** 2) ** 0.5 for x, y in pixels]
    median = statistics.median(from_first)
    far = [p for p, d in zip(pixels, from_first) if d > median]
    best = max(dist[p] for p in far)
    return p1, next(p for p in far if dist[p] == best)


def test_reference_points_hand_values():
    # A 20 x 10 rectangle away from the border: distance 5 on rows 9-10, columns 14..25. The reference
    # takes the plateau's first pixel in row-major order; ours its middle.
    mask = rect((50, 100), 10, 5, 29, 14)
    p1, p2 = reference_points(mask)
    assert p1 == (14, 9) and mask_prompts(mask)[1][0] == (19, 9)
    assert (p1, p2) == brute_reference_points(mask)
    # A band along the top border: unpadded, row 0 is 4 px from the background below it.
    band = rect((6, 10), 0, 0, 9, 3)
    assert distance_to_background(band, border_is_boundary=False)[0, 0] == 4.0
    assert distance_to_background(band)[0, 0] == 1.0
    assert reference_points(band)[0] == (0, 0) and mask_prompts(band)[1][0][1] in (1, 2)
    # One pixel: no pixel is farther than the median, so point 2 is the window maximum: the pixel.
    one = rect((5, 5), 3, 2, 3, 2)
    assert reference_points(one) == ((3, 2), (3, 2))
    assert mask_prompts(one, "reference", exact_reference=True) == ((3, 2, 3, 2), ((3, 2), (3, 2)))
    assert reference_points(np.zeros((4, 4), dtype=bool)) is None
    with pytest.raises(ValueError):
        mask_prompts(mask, "inscribed", exact_reference=True)


def test_reference_points_match_brute_force_on_random_masks():
    for mask in random_rect_masks(seed=1, count=15, min_extent=1):  # two or more pixels each
        points = reference_points(mask)
        assert points == brute_reference_points(mask)
        assert all(mask[y, x] for x, y in points)


def into_840(value: float, size: int) -> int:
    """The reference's rounding into the 840 frame, through the one mapping between frames."""
    image, reasoner = Frame.image((size, size)), Frame.reasoner(840)
    return map_object(ObjectPrompt(box=None, points=((value, value),), frame=image), reasoner,
                      rounding="reference").points[0][0]  # fmt: skip


def test_reference_rounding_of_the_840_frame():
    # 840 / 752 is rounded before multiplying: 47 columns of 752 land on 52, not 52.5 -> 53.
    assert into_840(47, 752) == 52 and scale(47, 752, 840) == 53
    assert into_840(10, 100) == scale(10, 100, 840) == 84


def test_prepare_settings_resolve_and_refuse():
    assert check_protocol("reference") == "reference" and PROTOCOLS[0] == "segzero"
    with pytest.raises(InputError, match="Unknown protocol 'lisa'; choose one of: segzero, reference"):
        check_protocol("lisa")
    ours = prepare_settings("segzero", source="refcocog")
    assert (ours.second_point, ours.segmenter, ours.multimask, ours.reference_images) == (
        "inscribed",
        None,
        True,
        False,
    )
    ref = prepare_settings("reference", source="refcocog", second_point="reference", frame=840)
    assert (ref.second_point, ref.objects, ref.frame, ref.filter_iou) == ("reference", "single", 840, 0.6)
    assert ref.segmenter == "facebook/sam2.1-hiera-large" and not ref.multimask and ref.reference_images
    assert prepare_settings("reference", source="reasonseg", segmenter="/sam").segmenter == "/sam"
    for option, value in [
        ("second_point", "inscribed"),
        ("objects", "components"),
        ("frame", 112),
        ("filter_iou", 0.5),
    ]:
        with pytest.raises(InputError, match="contradicts --protocol reference"):
            prepare_settings("reference", source="refcocog", **{option: value})
    for source in ("prepared", "reference-hf"):
        with pytest.raises(InputError, match="prepares samples from their masks"):
            prepare_settings("reference", source=source)


def test_reference_samples_stored_in_the_840_frame(tmp_path):
    root = make_refer(tmp_path / "src")
    report = SkipLog()
    samples = iter_samples(
        "refcocog",
        root,
        "val",
        report=report,
        segmenter=OracleSegmenter(),
        second_point="reference",
        protocol="reference",
    )
    out = tmp_path / "out"
    written = save_prepared(reference_training_samples(samples, report=report), out, report=report)
    assert written == report.kept == 4
    data = load_prepared(out)
    row = data[0]  # ref 1: pixels x 5..24, y 5..14 (its polygon's raster) in a 40 x 30 image
    assert (row["width"], row["height"], row["image"].size) == (840, 840, (840, 840))
    # Point 1 is the first pixel of the distance-5 plateau (x 9..20, y 9..10): (9, 9) -> (189, 252).
    p1, p2 = reference_points(rect((30, 40), 5, 5, 24, 14))
    assert p1 == (9, 9)
    expected = [[into_840(x, 40), into_840(y, 30)] for x, y in (p1, p2)]
    assert expected[0] == [189, 252]
    assert row["reasoner_boxes"] == [[105, 140, 504, 392]] and row["reasoner_points"] == [expected]
    extra = json.loads(row["extra"])
    assert (extra["protocol"], extra["original_width"], extra["original_height"]) == ("reference", 40, 30)
    # The stored pixels are cv2's INTER_AREA resize of cv2's decoding of the file.
    path = root / "images" / "COCO_train2014_000000000001.jpg"
    expected_pixels = cv2.resize(
        cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (840, 840), interpolation=cv2.INTER_AREA
    )
    assert np.array_equal(np.asarray(row["image"]), expected_pixels)


def test_cli_reference_protocol_with_tiny_sam2(tiny_models, tmp_path):
    out = tmp_path / "out"
    args = ["prepare", "refcocog", "--root", str(make_refer(tmp_path / "src")), "--out", str(out)]
    result = runner.invoke(
        app, [*args, "--protocol", "reference", "--filter-with-segmenter", str(tiny_models.segmenter)]
    )
    assert result.exit_code == 0, result.output
    data = load_prepared(out)
    lines = (out / "skipped.jsonl").read_text().splitlines()
    by_segmenter = sum('"segmenter agreement IoU' in line for line in lines)
    assert data.num_rows + by_segmenter == 5  # refs 1 (2 sentences), 2, 3, 5 were readable
    assert all(w == h == 840 for w, h in zip(data["width"], data["height"]))


def test_cli_refuses_contradictions_before_loading_a_model(tmp_path):
    args = ["prepare", "refcocog", "--root", str(tmp_path), "--out", str(tmp_path / "o")]
    missing = ["--filter-with-segmenter", str(tmp_path / "no-such-sam")]
    for extra, words in [
        (["--protocol", "lisa"], "Unknown protocol 'lisa'"),
        (["--protocol", "reference", "--second-point", "inscribed"], "--second-point inscribed contradicts"),
        (["--protocol", "reference", "--objects", "components"], "--objects components contradicts"),
        (["--protocol", "reference", "--frame", "112"], "--frame 112 contradicts"),
    ]:
        result = runner.invoke(app, [*args, *extra, *missing])
        assert isinstance(result.exception, InputError), result.output
        assert words in str(result.exception)
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", *args, "--protocol", "reference", "--filter-iou", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())  # the console wraps long lines
    assert message == (
        "error: --filter-iou 0.5 contradicts --protocol reference, where samples need IoU >= 0.6; "
        "drop --filter-iou."
    )


def test_single_mask_segmenter_asks_sam2_for_one_output(tiny_models):
    from PIL import Image

    from segzero.frames import Frame, ObjectPrompt
    from segzero.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(str(tiny_models.segmenter), device="cpu", multimask_output=False)
    asked, forward = [], segmenter.model.forward

    def recording_forward(*args, **kwargs):
        asked.append(kwargs["multimask_output"])
        return forward(*args, **kwargs)

    segmenter.model.forward = recording_forward
    image = Image.new("RGB", (48, 32), (90, 120, 30))
    prompt = ObjectPrompt(box=(4, 4, 30, 20), points=((10, 10),), frame=Frame.image(image.size))
    out = segmenter.segment_many([image], [[prompt]])
    assert asked == [False]
    assert out[0].mask.shape == (32, 48) and len(out[0].object_scores) == 1
