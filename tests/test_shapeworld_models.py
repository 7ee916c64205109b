"""The shipped ShapeWorld models: they load the way users load models, fit the size budget, and work.

Thresholds sit below what the shipped checkpoints reach on held-out (test/val split) scenes, with a
margin; docs/shapeworld.md has the figures.
"""

from __future__ import annotations

import json

import pytest

from segzero.shapeworld.shipped import SHIPPED_MODELS, SIZE_BUDGET

#: Least mean mask IoU of the shipped SAM2 on held-out shapes from their gt box and two inscribed points.
SEGMENTER_MIN_IOU = 0.85
#: Least gIoU of the whole pipeline (reasoner + SAM2) on 16 held-out referring requests; an image-blind
#: reasoner stays far below it.
PIPELINE_MIN_GIOU = 0.3

@pytest.fixture(scope="module")
def pipe():
    from segzero.shapeworld.demo import load_pipeline

    return load_pipeline()


def test_shipped_models_fit_the_size_budget():
    from segzero.tiny import folder_size

    folders = [p for p in SHIPPED_MODELS.iterdir() if p.is_dir()]
    assert {"reasoner", "segmenter"} <= {p.name for p in folders}
    total = sum(folder_size(p) for p in folders)
    assert total < SIZE_BUDGET, f"shipped models take {total / 1e6:.1f} MB"


def test_shipped_reasoner_records_its_frame():
    meta = json.loads((SHIPPED_MODELS / "reasoner" / "segzero.json").read_text())
    assert meta["reasoner_frame"] == 112


def test_train_models_defaults_describe_the_shipped_reasoner():
    """What `segzero shapeworld train-models` builds by default is the shipped reasoner's architecture."""
    from segzero.shapeworld.training.run import ShapeWorldTrainConfig

    built = ShapeWorldTrainConfig().reasoner
    for name in ("reasoner-warmup", "reasoner"):
        config = json.loads((SHIPPED_MODELS / name / "config.json").read_text())
        vision, text = config["vision_config"], config["text_config"]
        assert (vision["depth"], vision["hidden_size"], vision["num_heads"]) == (
            built.vision_depth,
            built.vision_hidden,
            built.vision_heads,
        )
        assert (text["hidden_size"], text["num_attention_heads"]) == (built.hidden_size, built.num_heads)


def test_pipeline_loads_shipped_models_through_from_pretrained(pipe):
    from segzero.pipeline import ReasoningSegmenter

    assert isinstance(pipe, ReasoningSegmenter)
    assert pipe.frame == 112
    assert type(pipe.reasoner.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(pipe.segmenter.model).__name__ == "Sam2Model"


def test_shipped_segmenter_segments_held_out_shapes():
    from benchmarks.shapeworld_probes import evaluate_segmenter

    iou = evaluate_segmenter(SHIPPED_MODELS / "segmenter", n_scenes=20, split="val", modes=("both",))
    assert iou["both"] > SEGMENTER_MIN_IOU


def test_pipeline_on_held_out_referring_scenes(pipe):
    from segzero.shapeworld.demo import evaluate_family

    summary = evaluate_family(pipe, "referring", 16)
    assert summary["n"] == 16
    assert summary["parse_failures"] <= 2
    assert summary["giou"] > PIPELINE_MIN_GIOU


def test_demo_command_writes_the_overlay(tmp_path):
    from typer.testing import CliRunner

    from segzero.cli import shapeworld as _shapeworld  # noqa: F401  (registers demo)
    from segzero.cli.app import app

    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--n-eval", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo.png").is_file()
    assert "Reasoning:" in result.output
    assert "referring" in result.output and "reasoning" in result.output


def test_demo_with_a_missing_models_folder_says_what_to_do(tmp_path):
    from typer.testing import CliRunner

    from segzero.cli import shapeworld as _shapeworld  # noqa: F401
    from segzero.cli.app import app

    result = CliRunner().invoke(app, ["demo", "--models", str(tmp_path), "--n-eval", "0"])
    assert result.exit_code != 0
    assert "reasoner/ and segmenter/" in str(result.exception)


def test_warmup_reasoner_reads_the_image_and_the_request():
    """The warm-up reasoner's listing starts from the image (the leftmost shape), and after the listing
    what it writes depends on the request: it repeats it before choosing (docs/shapeworld-log.md has the
    measured distances). The same image under every request (or one request under every image) gives
    exactly no dependence on it."""
    from benchmarks.shapeworld_probes import answer_image_dependence
    from segzero.reasoner import Reasoner
    from segzero.shapeworld.generator import make_split
    from segzero.shapeworld.training.examples import scene_thinking

    reasoner = Reasoner.from_pretrained(
        str(SHIPPED_MODELS / "reasoner-warmup"), device="cpu", dtype="float32", frame=112
    )
    samples = list(make_split("val", 3, "referring"))
    requests = ["the small red triangle", "the large blue circle", "the green shape on the left"]
    # The listing, then the repeat's opening quote and first word ("the", as every request here starts):
    # the next word is the request's own.
    echoed = scene_thinking(samples[0], 112, echo=True)
    repeating = echoed[: echoed.index("'") + len("'the")]
    one_image = answer_image_dependence(reasoner, [samples[0].image] * 3, requests, prefix=repeating)
    assert one_image["image"] < 1e-5
    assert one_image["request"] > 0.5
    one_request = answer_image_dependence(reasoner, [s.image for s in samples], [requests[0]] * 2, "<think>")
    assert one_request["request"] < 1e-5
    assert one_request["image"] > 0.3
    with pytest.raises(ValueError):
        answer_image_dependence(reasoner, [samples[0].image], requests)
