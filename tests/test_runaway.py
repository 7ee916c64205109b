"""Runaway completions: recognised on plain text, reported as a status, stopped early on request."""

import pytest

from segzero.errors import InputError
from segzero.runaway import runaway_reason


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<think>the cup" + "\n" * 1024, "1024 whitespace characters"),
        ("<think>" + " \n\t" * 30, "whitespace characters"),
        ("<think>I look at the image. " + "the cup is red. " * 12, "12 repeats of 'the cup is red.'"),
        ("ab" * 40, "40 repeats of 'ab'"),
        ("0" * 70, "70 repeats of '0'"),
    ],
)
def test_a_runaway_ending_is_recognised(text, words):
    assert words in runaway_reason(text)


@pytest.mark.parametrize(
    "text",
    [
        '<think>The cup is on the left.</think><answer>{"bbox": [1, 2, 3, 4], "points_1": [2, 3]}</answer>',
        "\n" * 63,  # too short to be a runaway
        "the cup. " * 7,  # 7 repeats: below the count
        "<think>"
        + "ha" * 40
        + " but then it recovered and answered.</think><answer>{}</answer>",  # left behind
        "",
    ],
)
def test_ordinary_completions_are_not_runaways(text):
    assert runaway_reason(text) is None


def test_the_status_says_runaway_and_the_option_stops_early(tiny_models):
    """The tiny random reasoner writes a newline a token until its budget is spent."""
    import numpy as np

    from segzero.pipeline import ReasoningSegmenter

    image = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    results = {}
    for stop in (False, True):
        pipe = ReasoningSegmenter.from_pretrained(
            str(tiny_models.reasoner), str(tiny_models.segmenter), frame=tiny_models.frame, device="cpu",
            max_new_tokens=96, stop_runaway=stop,
        )  # fmt: skip
        results[stop] = pipe.segment_batch([image, image], ["the cup", "the dog on the left"])
    for stop, batch in results.items():
        for result in batch:
            assert result.status.value == "runaway" and "ran away: it ends in" in result.reason
            assert not result.mask.any() and not result.usable
    assert [len(r.completion) for r in results[False]] == [96, 96]
    assert all(64 <= len(r.completion) < 96 for r in results[True])  # stopped where it was seen


def test_the_reference_protocol_refuses_the_early_stop(tmp_path):
    from segzero.config import PipelineConfig
    from segzero.hub import write_model_meta

    (tmp_path / "toy").mkdir()
    write_model_meta(tmp_path / "toy", frame=112, prompt="seg_zero")
    PipelineConfig(reasoner=str(tmp_path / "toy"), protocol="reference").resolved()
    with pytest.raises(
        InputError,
        match=r"^--stop-runaway contradicts --protocol reference, where every "
        r"completion runs to its end .*; drop --stop-runaway\.$",
    ):
        PipelineConfig(reasoner=str(tmp_path / "toy"), protocol="reference", stop_runaway=True).resolved()
    assert PipelineConfig(reasoner=str(tmp_path / "toy"), stop_runaway=True).resolved().stop_runaway


def test_the_cli_says_so_in_one_sentence_and_exits_2(tiny_models, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    proc = subprocess.run(
        [sys.executable, "-m", "segzero.cli", "segment", str(tmp_path / "a.png"), "the cup", "--reasoner",
         str(tiny_models.reasoner), "--segmenter", str(tiny_models.segmenter), "--protocol", "reference",
         "--stop-runaway"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "--stop-runaway contradicts --protocol reference" in proc.stderr
    assert "Traceback" not in proc.stderr
